-- Accounts, their regions and agencies, sessions, enrolled devices, Automerge actor bindings
-- and the tamper-evident audit log. Times are Unix milliseconds. Tokens are never stored: only
-- the SHA-256 of each token.

CREATE TABLE users (
    user_id       BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('officer', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,             -- argon2id PHC string
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT                     -- NULL while the account may log in
);

-- Kemendagri codes: an officer's districts or villages, a supervisor's prefix (e.g. a regency).
CREATE TABLE user_regions (
    user_id BIGINT NOT NULL REFERENCES users (user_id),
    region  TEXT NOT NULL,
    PRIMARY KEY (user_id, region)
);

-- The agencies (service catalogue `agency`) a supervisor reviews; none means every agency.
CREATE TABLE user_agencies (
    user_id BIGINT NOT NULL REFERENCES users (user_id),
    agency  TEXT NOT NULL,
    PRIMARY KEY (user_id, agency)
);

CREATE TABLE sessions (
    session_id BIGSERIAL PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE,
    user_id    BIGINT NOT NULL REFERENCES users (user_id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE,
    user_id     BIGINT NOT NULL REFERENCES users (user_id),
    label       TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX devices_by_user ON devices (user_id);

-- Every Automerge actor id belongs to exactly one device, user or the server: registered at
-- enrolment, or bound on first use. The primary key makes binding first-come, once.
CREATE TABLE actor_bindings (
    actor_id   TEXT PRIMARY KEY NOT NULL,    -- lower-case hex
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('device', 'user', 'server')),
    owner_id   TEXT NOT NULL,
    registered BOOLEAN NOT NULL,
    bound_at   BIGINT NOT NULL
);
CREATE INDEX actor_bindings_by_owner ON actor_bindings (owner_kind, owner_id);

-- Append-only; entry_hash = SHA-256 over the canonical encoding of the other columns, which
-- include prev_hash (the previous entry's entry_hash; 32 zero bytes for entry 1). seq counts
-- from 1 without gaps, and the primary key forbids two entries claiming the same place.
-- Appends are serialised by a transaction-level advisory lock (see postgres_audit.rs).
CREATE TABLE audit_log (
    seq            BIGINT PRIMARY KEY NOT NULL,
    at             BIGINT NOT NULL,
    action         TEXT NOT NULL,
    actor_user_id  BIGINT,
    actor_username TEXT,
    device_id      TEXT,
    client_address TEXT,
    subject        TEXT,
    citizen_key    BYTEA,                    -- HMAC-SHA256 of the NIK under a server secret
    detail         TEXT,
    prev_hash      BYTEA NOT NULL,
    entry_hash     BYTEA NOT NULL
);
CREATE INDEX audit_log_by_citizen ON audit_log (citizen_key, seq) WHERE citizen_key IS NOT NULL;
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE INDEX audit_log_by_user ON audit_log (actor_username, seq);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- The log is evidence: the server never changes or removes an entry. (Whoever can drop this
-- trigger can still edit rows; the hash chain is what makes that visible.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
