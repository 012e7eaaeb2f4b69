-- Periodic jobs and batch invoicing of corporate accounts.

-- A lease names the one process that does a job's work while it holds it.
-- A holder renews it before expires_at; anyone may take it once it has
-- expired. Times come from the database clock so processes on machines with
-- skewed clocks agree.
CREATE TABLE leases (
    name         text PRIMARY KEY,
    holder       text NOT NULL CHECK (holder <> ''),
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

-- The schedules the lease-holding scheduler runs, as it last saw them, so
-- the API can list them with their next run without knowing their config.
CREATE TABLE schedules (
    name         text PRIMARY KEY,
    spec         text NOT NULL,
    timezone     text NOT NULL,
    next_run_at  timestamptz,
    checked_at   timestamptz NOT NULL DEFAULT now(),
    checked_by   text NOT NULL DEFAULT ''
);

-- One row per (schedule, period): the primary key is what makes a firing
-- happen once however many schedulers run. enqueued_at stays null until the
-- job's work was handed over, so a scheduler that died in between is
-- finished by the next lease holder.
CREATE TABLE schedule_firings (
    schedule     text NOT NULL,
    period       text NOT NULL,
    due_at       timestamptz NOT NULL,
    task_id      text NOT NULL,
    fired_by     text NOT NULL,
    fired_at     timestamptz NOT NULL DEFAULT now(),
    enqueued_at  timestamptz,
    PRIMARY KEY (schedule, period)
);
CREATE INDEX schedule_firings_due_idx ON schedule_firings (schedule, due_at DESC);
CREATE INDEX schedule_firings_pending_idx ON schedule_firings (schedule) WHERE enqueued_at IS NULL;

-- An invoicing run bills one period: [period_start, period_end) as calendar
-- days in timezone, i.e. the instants [starts_at, ends_at). Runs never
-- overlap, so an order is in at most one run's period; the same period
-- asked for twice finds the existing run. Discovery walks corporate
-- accounts in id order and remembers where it stopped (cursor). Progress is
-- counted from invoice_run_accounts, not kept here: a counter on this row
-- would serialize every account's transaction on one row lock.
CREATE TABLE invoice_runs (
    id              uuid PRIMARY KEY,
    period_start    date NOT NULL,
    period_end      date NOT NULL,
    timezone        text NOT NULL,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    trigger         text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    status          text NOT NULL DEFAULT 'discovering' CHECK (status IN ('discovering', 'running', 'completed')),
    cursor          uuid,
    completions     integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    discovered_at   timestamptz,
    completed_at    timestamptz,
    CHECK (period_end > period_start),
    CHECK (ends_at > starts_at),
    UNIQUE (period_start, period_end),
    CONSTRAINT invoice_runs_no_overlap EXCLUDE USING gist (daterange(period_start, period_end) WITH &&)
);
CREATE INDEX invoice_runs_created_idx ON invoice_runs (created_at DESC, id DESC);

-- Each account a run bills, with its outcome. attempts counts hand-overs to
-- the workers (1 + each "retry failed"), and is part of the task id.
CREATE TABLE invoice_run_accounts (
    run_id      uuid NOT NULL REFERENCES invoice_runs (id) ON DELETE CASCADE,
    account_id  uuid NOT NULL REFERENCES corporate_accounts (id),
    status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    attempts    integer NOT NULL DEFAULT 1 CHECK (attempts > 0),
    error       text NOT NULL DEFAULT '',
    invoices    integer NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, account_id)
);
CREATE INDEX invoice_run_accounts_status_idx ON invoice_run_accounts (run_id, status, account_id);
CREATE INDEX invoice_run_accounts_account_idx ON invoice_run_accounts (account_id);

-- Invoice numbers are gapless per calendar year: the counter row is taken in
-- the transaction that writes the invoice, as its last statement before the
-- commit (it is the one lock every account's transaction shares), so a
-- rolled-back invoice leaves no hole.
CREATE TABLE invoice_numbers (
    year  integer PRIMARY KEY,
    last  bigint NOT NULL CHECK (last >= 0)
);

-- One invoice per account, period and currency; never updated once written.
-- period_end is exclusive, as in invoice_runs. number is set by the same
-- transaction that inserts the row (numbering comes last, see
-- invoice_numbers), so no committed invoice lacks one.
-- The billing details are copied so a later change of the account does not
-- alter an issued invoice.
CREATE TABLE invoices (
    id              uuid PRIMARY KEY,
    number          text UNIQUE,
    run_id          uuid NOT NULL REFERENCES invoice_runs (id),
    account_id      uuid NOT NULL REFERENCES corporate_accounts (id),
    account_name    text NOT NULL,
    billing_email   text NOT NULL,
    vat_id          text NOT NULL DEFAULT '',
    period_start    date NOT NULL,
    period_end      date NOT NULL,
    timezone        text NOT NULL,
    currency        char(3) NOT NULL,
    orders_minor    bigint NOT NULL,
    credits_minor   bigint NOT NULL CHECK (credits_minor >= 0),
    subtotal_minor  bigint NOT NULL CHECK (subtotal_minor = orders_minor - credits_minor),
    tax_rate_bps    integer NOT NULL CHECK (tax_rate_bps >= 0),
    tax_minor       bigint NOT NULL,
    total_minor     bigint NOT NULL CHECK (total_minor = subtotal_minor + tax_minor),
    issued_at       timestamptz NOT NULL,
    due_on          date NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, period_start, currency)
);
-- Lists page by (created_at, id), newest first.
CREATE INDEX invoices_created_idx ON invoices (created_at DESC, id DESC);
CREATE INDEX invoices_run_idx ON invoices (run_id, created_at DESC, id DESC);
CREATE INDEX invoices_account_idx ON invoices (account_id, created_at DESC, id DESC);
CREATE INDEX invoices_period_idx ON invoices (period_start, created_at DESC, id DESC);

-- A line bills one order or credits one return. The partial unique indexes
-- make sure no order is billed, and no return credited, twice, whatever
-- runs or retries happen. late marks an order or return from the previous
-- period that arrived after that period's invoice was written.
CREATE TABLE invoice_lines (
    invoice_id    uuid NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position      integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('order', 'return')),
    order_id      uuid NOT NULL REFERENCES orders (id),
    return_id     uuid REFERENCES returns (id),
    description   text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    amount_minor  bigint NOT NULL,
    late          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (invoice_id, position),
    CHECK ((kind = 'return') = (return_id IS NOT NULL))
);
CREATE UNIQUE INDEX invoice_lines_order_key ON invoice_lines (order_id) WHERE kind = 'order';
CREATE UNIQUE INDEX invoice_lines_return_key ON invoice_lines (return_id) WHERE kind = 'return';

-- Billing finds an account's accepted returns by buyer and resolution time.
CREATE INDEX returns_user_accepted_idx ON returns (user_id, resolved_at) WHERE status = 'accepted';
