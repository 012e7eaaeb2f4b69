-- Receipt printers that poll Bazaar with their own protocols (Star
-- CloudPRNT, Epson Server Direct Print), and the print jobs handed to them.

-- One row per printer token (an API key with role printer). Tokens made
-- before this table have no row and are SSE printers.
CREATE TABLE printers (
    key_id                 uuid PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    seller_id              uuid NOT NULL REFERENCES sellers (id),
    protocol               text NOT NULL DEFAULT 'sse'
                           CHECK (protocol IN ('sse', 'cloudprnt', 'epson-sdp')),
    poll_interval_seconds  integer NOT NULL DEFAULT 5
                           CHECK (poll_interval_seconds BETWEEN 1 AND 3600),
    dot_width              integer NOT NULL DEFAULT 576
                           CHECK (dot_width BETWEEN 96 AND 2400),
    last_seen_at           timestamptz,
    status                 text NOT NULL DEFAULT '',
    mac                    text NOT NULL DEFAULT ''
);

-- A print job is an order handed to one polling printer. One per order: an
-- order offered to a printer stays with it, so two printers of a seller
-- never both print it. The job token the printer echoes is 'bz' || id.
CREATE TABLE print_jobs (
    id              bigserial PRIMARY KEY,
    order_id        uuid NOT NULL UNIQUE REFERENCES orders (id) ON DELETE CASCADE,
    printer_key_id  uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    seller_id       uuid NOT NULL REFERENCES sellers (id),
    offered_at      timestamptz NOT NULL,
    fetched_at      timestamptz,
    confirmed_at    timestamptz,
    failed_at       timestamptz,
    error_code      text NOT NULL DEFAULT '',
    resends         integer NOT NULL DEFAULT 0
);
CREATE INDEX print_jobs_open_idx ON print_jobs (printer_key_id) WHERE confirmed_at IS NULL;
CREATE INDEX print_jobs_seller_idx ON print_jobs (seller_id) WHERE confirmed_at IS NULL;
