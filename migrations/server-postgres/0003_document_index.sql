-- One row per application or visit document, recomputed from the merged document on every
-- accepted change; queries and pages read this, never the CRDT.
CREATE TABLE document_index (
    document_id   TEXT PRIMARY KEY NOT NULL REFERENCES documents (document_id),
    kind          TEXT NOT NULL,              -- application | visit
    schema        TEXT NOT NULL,
    region        TEXT NOT NULL,              -- most specific Kemendagri code of the document
    status        TEXT,                       -- applications only
    service       TEXT,
    agency        TEXT,
    officer       TEXT,
    tracking_code TEXT UNIQUE,
    has_conflict  BOOLEAN NOT NULL DEFAULT FALSE,
    heads         TEXT NOT NULL,              -- change hashes, hex, comma separated
    updated_at    BIGINT NOT NULL
);
CREATE INDEX document_index_by_region ON document_index (region);
CREATE INDEX document_index_by_status ON document_index (status, updated_at);
