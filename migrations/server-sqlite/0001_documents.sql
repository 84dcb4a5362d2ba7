-- Documents as a snapshot plus incremental chunks (automerge `save()` / `save_after()` output).
CREATE TABLE documents (
    document_id TEXT PRIMARY KEY NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE document_chunks (
    chunk_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL REFERENCES documents (document_id),
    kind        INTEGER NOT NULL CHECK (kind IN (0, 1)), -- 0 snapshot, 1 incremental
    data        BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX document_chunks_by_document ON document_chunks (document_id, chunk_id);

-- Automerge sync state per (document, peer storage), so a reconnecting peer resumes cheaply.
CREATE TABLE sync_states (
    document_id TEXT NOT NULL,
    storage_id  TEXT NOT NULL,
    state       BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (document_id, storage_id)
);

CREATE TABLE server_settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
