DROP INDEX IF EXISTS sellers_created_idx;
DROP INDEX IF EXISTS invoices_currency_idx;
DROP INDEX IF EXISTS returns_seller_status_idx;
DROP INDEX IF EXISTS returns_status_idx;
DROP INDEX IF EXISTS returns_user_idx;
DROP INDEX IF EXISTS returns_created_idx;
DROP INDEX IF EXISTS orders_seller_status_idx;
