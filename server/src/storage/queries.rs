//! SQL text shared by both dialects. SQLite and PostgreSQL both accept `$n` placeholders
//! and `ON CONFLICT`, so only statements that really differ live in the dialect modules.

pub const LOAD_CHUNKS: &str =
    "SELECT chunk_id, kind, data FROM document_chunks WHERE document_id = $1 ORDER BY chunk_id";

pub const DOCUMENT_EXISTS: &str = "SELECT 1 FROM documents WHERE document_id = $1";

pub const TOUCH_DOCUMENT: &str = "INSERT INTO documents (document_id, created_at, updated_at) \
     VALUES ($1, $2, $2) ON CONFLICT (document_id) DO UPDATE SET updated_at = excluded.updated_at";

pub const INSERT_CHUNK: &str = "INSERT INTO document_chunks (document_id, kind, data, created_at) \
     VALUES ($1, $2, $3, $4) RETURNING chunk_id";

pub const LOAD_SYNC_STATE: &str =
    "SELECT state FROM sync_states WHERE document_id = $1 AND storage_id = $2";

pub const SAVE_SYNC_STATE: &str = "INSERT INTO sync_states (document_id, storage_id, state, updated_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (document_id, storage_id) \
     DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";

pub const LOAD_SETTING: &str = "SELECT value FROM server_settings WHERE name = $1";

pub const INIT_SETTING: &str =
    "INSERT INTO server_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
