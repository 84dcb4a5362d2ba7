-- Jemput field-device store (SQLite).

-- The device's enrolment: one row.
CREATE TABLE enrolment (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    server_url    TEXT    NOT NULL,
    device_id     TEXT    NOT NULL,
    device_token  TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    username      TEXT    NOT NULL,
    -- Region codes the officer is assigned, comma separated.
    regions       TEXT    NOT NULL,
    -- Actor ids registered at enrolment, hex, comma separated; local writes use the first.
    actor_ids     TEXT    NOT NULL,
    enrolled_at   INTEGER NOT NULL
);

-- One Automerge document: a snapshot plus incremental chunks, and a small index for listing.
CREATE TABLE documents (
    id            BLOB    PRIMARY KEY,
    snapshot      BLOB    NOT NULL,
    kind          TEXT,
    status        TEXT,
    tracking_code TEXT,
    service       TEXT,
    district      TEXT,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE document_chunks (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id  BLOB    NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    data    BLOB    NOT NULL
);
CREATE INDEX document_chunks_doc ON document_chunks (doc_id, seq);

-- Batch sync state (jemput_sync_protocol::batch::DeviceState), one row.
CREATE TABLE sync_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    actor    BLOB    NOT NULL,
    cursor   BLOB,
    -- The pending request, in the protocol's own CBOR encoding (encode_request).
    pending  BLOB
);

-- DeviceDoc per document. Heads are concatenated 32-byte hashes.
CREATE TABLE sync_docs (
    doc_id         BLOB    PRIMARY KEY,
    heads          BLOB    NOT NULL,
    server_heads   BLOB    NOT NULL,
    refused_at     BLOB,
    repair_round   INTEGER,
    repair_message BLOB,
    repair_state   BLOB
) WITHOUT ROWID;
