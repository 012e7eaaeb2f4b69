-- Named operators with roles, their console sessions, and the audit log of
-- every mutating admin action.

CREATE TABLE operators (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    -- The credential itself is never stored: only its SHA-256 (it is 256
    -- random bits, like an API key) and a prefix to recognise it by.
    token_hash   bytea NOT NULL UNIQUE,
    token_prefix text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
-- A name stays free for reuse once its operator is revoked.
CREATE UNIQUE INDEX operators_active_name_idx ON operators (name) WHERE revoked_at IS NULL;

-- Console sessions, looked up by the SHA-256 of the cookie's value. A
-- session of an operator lasts while the operator is unrevoked; one of the
-- static admin token (operator_id NULL) while that token is the same.
CREATE TABLE operator_sessions (
    id_hash          bytea PRIMARY KEY,
    operator_id      uuid REFERENCES operators (id) ON DELETE CASCADE,
    admin_token_hash bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    CHECK ((operator_id IS NULL) <> (admin_token_hash IS NULL))
);
CREATE INDEX operator_sessions_operator_idx ON operator_sessions (operator_id);
CREATE INDEX operator_sessions_expires_idx ON operator_sessions (expires_at);

CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    -- actor is an operator's name, "admin-token" or "cli:<user>"; actor_id
    -- the operator's id when there is one.
    actor       text NOT NULL,
    actor_id    uuid,
    role        text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL DEFAULT '',
    reason      text NOT NULL DEFAULT '',
    params      jsonb NOT NULL DEFAULT '{}',
    result      text NOT NULL,
    count       bigint,
    request_id  text NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at_idx ON audit_log (at, id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at, id);
CREATE INDEX audit_log_action_idx ON audit_log (action, at, id);
CREATE INDEX audit_log_target_idx ON audit_log (target, at, id);
