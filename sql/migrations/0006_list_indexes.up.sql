-- Every documented list filter, alone or within a seller's scope, reads its
-- page from an index already in list order (created_at, id), instead of
-- scanning the rows that match and sorting them. Filters whose rows are few
-- by nature (one user's, one order's, one account's) use the index of that
-- column and sort at most those few.
CREATE INDEX orders_seller_status_idx ON orders (seller_id, status, created_at DESC, id DESC);

CREATE INDEX returns_created_idx ON returns (created_at DESC, id DESC);
CREATE INDEX returns_user_idx ON returns (user_id, created_at DESC, id DESC);
CREATE INDEX returns_status_idx ON returns (status, created_at DESC, id DESC);
CREATE INDEX returns_seller_status_idx ON returns (seller_id, status, created_at DESC, id DESC);

CREATE INDEX invoices_currency_idx ON invoices (currency, created_at DESC, id DESC);

CREATE INDEX sellers_created_idx ON sellers (created_at, id);
