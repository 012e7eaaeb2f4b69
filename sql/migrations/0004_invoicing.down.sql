DROP TABLE IF EXISTS invoice_lines;
DROP TABLE IF EXISTS invoices;
DROP TABLE IF EXISTS invoice_numbers;
DROP TABLE IF EXISTS invoice_run_accounts;
DROP TABLE IF EXISTS invoice_runs;
DROP TABLE IF EXISTS schedule_firings;
DROP TABLE IF EXISTS schedules;
DROP TABLE IF EXISTS leases;
