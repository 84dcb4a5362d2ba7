-- Batch sync (`POST /v1/sync`, docs/BATCH-SYNC.md): the change feed, each device's last
-- exchange and what each device is known to hold.

-- The feed head: every stored change of a document takes the next number, in the writing
-- transaction, so numbers become visible in order (SQLite has a single writer).
CREATE TABLE feed_head (
    id  INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO feed_head (id, seq) VALUES (1, 0);

-- The feed position of a document's latest change (0: stored before the feed existed).
ALTER TABLE documents ADD COLUMN feed_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX documents_by_feed_seq ON documents (feed_seq);

-- A document left `region` at `seq` (its region changed): devices covering the old region
-- but not the new one are told to delete it.
CREATE TABLE feed_scope_exits (
    seq         INTEGER NOT NULL,
    document_id TEXT NOT NULL,
    region      TEXT NOT NULL,
    PRIMARY KEY (seq, document_id)
);

-- Per device: its exchanges, the last one (to replay a retry) and the regions it was served
-- for (a change of the officer's regions re-reads the feed from the start).
CREATE TABLE batch_devices (
    device_id     TEXT PRIMARY KEY NOT NULL,
    exchanges     INTEGER NOT NULL,
    last_key      BLOB,
    last_digest   INTEGER,
    last_cursor   BLOB,
    last_response BLOB,
    regions       TEXT NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Per (device, document): heads the device certainly holds, and heads delivered by the last
-- response (hex, comma separated).
CREATE TABLE batch_knowledge (
    device_id   TEXT NOT NULL,
    document_id TEXT NOT NULL,
    confirmed   TEXT NOT NULL,
    pending     TEXT,
    PRIMARY KEY (device_id, document_id)
);
