-- Core marketplace schema and the outbox/event log.

CREATE TABLE sellers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (name <> ''),
    email       text NOT NULL CHECK (email <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are random secrets; only their SHA-256 is stored. role is one of
-- storefront (no seller), seller or printer (one seller each).
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('storefront', 'seller', 'printer')),
    seller_id   uuid REFERENCES sellers (id),
    name        text NOT NULL DEFAULT '',
    key_hash    bytea NOT NULL UNIQUE,
    key_prefix  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((role = 'storefront') = (seller_id IS NULL))
);
CREATE INDEX api_keys_seller_idx ON api_keys (seller_id);

-- A corporate account is billed bi-weekly for the orders of its users.
CREATE TABLE corporate_accounts (
    id             uuid PRIMARY KEY,
    name           text NOT NULL CHECK (name <> ''),
    billing_email  text NOT NULL CHECK (billing_email <> ''),
    vat_id         text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                    uuid PRIMARY KEY,
    email                 text NOT NULL CHECK (email <> ''),
    name                  text NOT NULL DEFAULT '',
    country               text NOT NULL DEFAULT '',
    marketing_opt_in      boolean NOT NULL DEFAULT false,
    corporate_account_id  uuid REFERENCES corporate_accounts (id),
    last_login_at         timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_corporate_idx ON users (corporate_account_id) WHERE corporate_account_id IS NOT NULL;

-- Products form a two-level tree: a parent holds the shared fields, its
-- children (variants) own sku, attributes, price and stock.
CREATE TABLE products (
    id           uuid PRIMARY KEY,
    seller_id    uuid NOT NULL REFERENCES sellers (id),
    parent_id    uuid REFERENCES products (id),
    sku          text NOT NULL CHECK (sku <> ''),
    name         text NOT NULL CHECK (name <> ''),
    description  text NOT NULL DEFAULT '',
    category     text NOT NULL DEFAULT '',
    attributes   jsonb NOT NULL DEFAULT '{}',
    price_minor  bigint NOT NULL CHECK (price_minor >= 0),
    currency     char(3) NOT NULL,
    stock        integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (seller_id, sku),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX products_seller_idx ON products (seller_id, created_at, id);
CREATE INDEX products_parent_idx ON products (parent_id) WHERE parent_id IS NOT NULL;

-- status follows the order state machine in sql/store/orders.go.
CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    seller_id       uuid NOT NULL REFERENCES sellers (id),
    user_id         uuid NOT NULL REFERENCES users (id),
    status          text NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled', 'shipped', 'delivered')),
    currency        char(3) NOT NULL,
    subtotal_minor  bigint NOT NULL CHECK (subtotal_minor >= 0),
    total_minor     bigint NOT NULL CHECK (total_minor >= 0),
    payment_method  text NOT NULL DEFAULT '',
    scheduled_at    timestamptz,
    cancel_reason   text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    confirmed_at    timestamptz,
    cancelled_at    timestamptz,
    shipped_at      timestamptz,
    delivered_at    timestamptz
);
CREATE INDEX orders_user_idx ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX orders_seller_idx ON orders (seller_id, created_at DESC, id DESC);
CREATE INDEX orders_status_idx ON orders (status, created_at DESC, id DESC);
CREATE INDEX orders_created_idx ON orders (created_at DESC, id DESC);

CREATE TABLE order_items (
    id                uuid PRIMARY KEY,
    order_id          uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id        uuid NOT NULL REFERENCES products (id),
    sku               text NOT NULL,
    name              text NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    unit_price_minor  bigint NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor  bigint NOT NULL CHECK (line_total_minor >= 0)
);
CREATE INDEX order_items_order_idx ON order_items (order_id);

CREATE TABLE returns (
    id             uuid PRIMARY KEY,
    order_id       uuid NOT NULL REFERENCES orders (id),
    order_item_id  uuid NOT NULL REFERENCES order_items (id),
    seller_id      uuid NOT NULL REFERENCES sellers (id),
    user_id        uuid NOT NULL REFERENCES users (id),
    quantity       integer NOT NULL CHECK (quantity > 0),
    reason         text NOT NULL CHECK (reason <> ''),
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'rejected')),
    resolution     text NOT NULL DEFAULT '',
    refund_minor   bigint NOT NULL DEFAULT 0 CHECK (refund_minor >= 0),
    currency       char(3) NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);
CREATE INDEX returns_order_idx ON returns (order_id);
CREATE INDEX returns_seller_idx ON returns (seller_id, created_at DESC, id DESC);

-- Idempotency records replay the first response to a repeated POST. A
-- record is written in the transaction of the change it answers, so the
-- two commit together; requests still running hold an advisory lock instead.
CREATE TABLE idempotency_keys (
    principal     text NOT NULL,
    key           text NOT NULL,
    method        text NOT NULL,
    path          text NOT NULL,
    request_hash  bytea NOT NULL,
    status        integer NOT NULL,
    content_type  text NOT NULL DEFAULT '',
    response      bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- The outbox and the long-term event log in one table. seq orders events as
-- they were committed per subject; the relay publishes rows whose
-- published_at is null and records where they landed.
CREATE TABLE events (
    seq           bigserial UNIQUE,
    id            uuid PRIMARY KEY,
    type          text NOT NULL CHECK (type ~ '^[a-z0-9_]+(\.[a-z0-9_]+)+$'),
    source        text NOT NULL,
    specversion   text NOT NULL DEFAULT '1.0',
    subject       text NOT NULL,
    seller_id     uuid,
    dataschema    text NOT NULL DEFAULT '',
    time          timestamptz NOT NULL DEFAULT now(),
    data          jsonb NOT NULL,
    request_id    text NOT NULL DEFAULT '',
    traceparent   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    stream        text,
    stream_id     text
);
CREATE INDEX events_unpublished_idx ON events (seq) WHERE published_at IS NULL;
CREATE INDEX events_subject_idx ON events (subject, seq);
CREATE INDEX events_type_time_idx ON events (type, time);
CREATE INDEX events_seller_idx ON events (seller_id, seq) WHERE seller_id IS NOT NULL;
