-- Accounts, their regions and agencies, sessions, enrolled devices, Automerge actor bindings
-- and the tamper-evident audit log. Times are Unix milliseconds. Tokens are never stored: only
-- the SHA-256 of each token.

CREATE TABLE users (
    user_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('officer', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,             -- argon2id PHC string
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER                    -- NULL while the account may log in
);

-- Kemendagri codes: an officer's districts or villages, a supervisor's prefix (e.g. a regency).
CREATE TABLE user_regions (
    user_id INTEGER NOT NULL REFERENCES users (user_id),
    region  TEXT NOT NULL,
    PRIMARY KEY (user_id, region)
);

-- The agencies (service catalogue `agency`) a supervisor reviews; none means every agency.
CREATE TABLE user_agencies (
    user_id INTEGER NOT NULL REFERENCES users (user_id),
    agency  TEXT NOT NULL,
    PRIMARY KEY (user_id, agency)
);

CREATE TABLE sessions (
    session_id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB NOT NULL UNIQUE,
    user_id    INTEGER NOT NULL REFERENCES users (user_id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL REFERENCES users (user_id),
    label       TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX devices_by_user ON devices (user_id);

-- Every Automerge actor id belongs to exactly one device, user or the server: registered at
-- enrolment, or bound on first use. The primary key makes binding first-come, once.
CREATE TABLE actor_bindings (
    actor_id   TEXT PRIMARY KEY NOT NULL,    -- lower-case hex
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('device', 'user', 'server')),
    owner_id   TEXT NOT NULL,
    registered INTEGER NOT NULL CHECK (registered IN (0, 1)),
    bound_at   INTEGER NOT NULL
);
CREATE INDEX actor_bindings_by_owner ON actor_bindings (owner_kind, owner_id);

-- Append-only; entry_hash = SHA-256 over the canonical encoding of the other columns, which
-- include prev_hash (the previous entry's entry_hash; 32 zero bytes for entry 1). seq counts
-- from 1 without gaps, and the primary key forbids two entries claiming the same place.
CREATE TABLE audit_log (
    seq            INTEGER PRIMARY KEY NOT NULL,
    at             INTEGER NOT NULL,
    action         TEXT NOT NULL,
    actor_user_id  INTEGER,
    actor_username TEXT,
    device_id      TEXT,
    client_address TEXT,
    subject        TEXT,
    citizen_key    BLOB,                     -- HMAC-SHA256 of the NIK under a server secret
    detail         TEXT,
    prev_hash      BLOB NOT NULL,
    entry_hash     BLOB NOT NULL
);
CREATE INDEX audit_log_by_citizen ON audit_log (citizen_key, seq) WHERE citizen_key IS NOT NULL;
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE INDEX audit_log_by_user ON audit_log (actor_username, seq);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- The log is evidence: the server never changes or removes an entry. (Whoever can drop these
-- triggers can still edit rows; the hash chain is what makes that visible.)
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
