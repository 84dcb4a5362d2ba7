//! The one place errors become HTTP responses.
//!
//! Each variant says what the caller can do about it (sign in again, ask someone with another
//! role, fix the request, wait, retry later). The body is always
//! `{ "error": code, "message": Indonesian text, "message_en": English text }`; the full cause
//! chain of a server-side failure goes to the log, never to the client, and no message ever
//! carries a token, a password or a NIK.

use std::fmt::Write as _;

use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::throttle::RetryAfter;
use crate::auth::{AuthError, Denied, PasswordError};
use crate::storage::StorageError;
use crate::sync::{BatchSyncError, ReviewError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable token: sign in (again).
    #[error("not authenticated")]
    Unauthenticated(#[source] AuthError),
    /// Wrong username or password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The password was right but the account is disabled: ask an administrator.
    #[error("account disabled")]
    AccountDisabled,
    /// Authenticated, but not allowed: someone else must do it.
    #[error("forbidden")]
    Forbidden(#[from] Denied),
    /// Nothing there (or nothing the caller may know of).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request itself is wrong: fix it.
    #[error("invalid request")]
    Invalid(#[from] Invalid),
    /// Too many failed logins: wait.
    #[error("too many login attempts")]
    Throttled(RetryAfter),
    /// A review decision the workflow does not allow (or a document the caller may not see).
    #[error("review refused: {0}")]
    Review(#[from] ReviewError),
    /// A batch sync exchange (`POST /v1/sync`) was not served.
    #[error("batch sync: {0}")]
    Sync(#[from] BatchSyncError),
    /// The server failed: try again later. Details are logged only.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What is wrong with a request, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// What is wrong with a JSON body, without quoting it (it may hold a password).
    #[error("malformed JSON body: {0}")]
    Json(String),
    #[error("malformed query string")]
    Query(#[from] QueryRejection),
    #[error("malformed NIK")]
    Nik,
    #[error("malformed device id")]
    DeviceId,
    #[error("device label too long")]
    Label,
    #[error("unknown audit action")]
    AuditAction,
    #[error("password too long")]
    Password,
    #[error("malformed username")]
    Username,
    /// A filter or field with an unknown value; names the parameter, not the value.
    #[error("invalid value for `{0}`")]
    Filter(&'static str),
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Storage(storage) => ApiError::internal(storage),
            other => ApiError::Unauthenticated(other),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        ApiError::internal(error)
    }
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::TooLong => ApiError::Invalid(Invalid::Password),
            other => ApiError::internal(other),
        }
    }
}

/// Parses a JSON request body. Errors name the problem and where it is, never the values
/// (serde quotes offending values, and a body may hold a password).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Invalid> {
    serde_json::from_slice(body).map_err(|error| {
        use serde_json::error::Category;
        let what = match error.classify() {
            Category::Data => {
                let text = error.to_string();
                match text.split_once(" at line") {
                    Some((missing, _)) if missing.starts_with("missing field") => {
                        missing.to_owned()
                    }
                    _ => "a field has the wrong type or value".to_owned(),
                }
            }
            Category::Syntax => "not valid JSON".to_owned(),
            Category::Eof => "the body ends too early".to_owned(),
            Category::Io => "the body could not be read".to_owned(),
        };
        Invalid::Json(format!(
            "{what} (line {}, column {})",
            error.line(),
            error.column()
        ))
    })
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Invalid(Invalid::Query(rejection))
    }
}

impl ApiError {
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(error))
    }

    /// Status, machine code, Indonesian and English text.
    fn parts(&self) -> (StatusCode, &'static str, String, String) {
        use ApiError as E;
        match self {
            E::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Sesi tidak berlaku atau sudah berakhir. Silakan masuk kembali.".into(),
                "Missing, invalid, expired or revoked token. Sign in again.".into(),
            ),
            E::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Nama pengguna atau kata sandi salah.".into(),
                "Wrong username or password.".into(),
            ),
            E::AccountDisabled => (
                StatusCode::FORBIDDEN,
                "account_disabled",
                "Akun ini dinonaktifkan. Hubungi administrator.".into(),
                "This account is disabled. Contact an administrator.".into(),
            ),
            E::Forbidden(Denied::Role) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Peran Anda tidak berwenang melakukan tindakan ini.".into(),
                "Your role may not do this.".into(),
            ),
            E::Forbidden(Denied::OutOfScope) => (
                StatusCode::FORBIDDEN,
                "out_of_scope",
                "Tindakan ini di luar wilayah tugas Anda.".into(),
                "This is outside your assigned regions.".into(),
            ),
            E::Forbidden(Denied::NeedsSession) => (
                StatusCode::FORBIDDEN,
                "session_required",
                "Tindakan ini memerlukan masuk dengan kata sandi, bukan token perangkat.".into(),
                "This needs a password login, not a device token.".into(),
            ),
            E::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Data tidak ditemukan.".into(),
                format!("{what} not found."),
            ),
            E::Invalid(invalid) => {
                let (code, id, en): (_, _, String) = match invalid {
                    Invalid::Json(problem) => (
                        "invalid_body",
                        "Isi permintaan tidak sesuai format.",
                        format!("Malformed JSON body: {problem}."),
                    ),
                    Invalid::Query(rejection) => (
                        "invalid_query",
                        "Parameter permintaan tidak sesuai.",
                        format!("Malformed query string: {}", rejection.body_text()),
                    ),
                    Invalid::Nik => ("invalid_nik", "NIK tidak valid.", "Malformed NIK.".into()),
                    Invalid::DeviceId => (
                        "invalid_device_id",
                        "ID perangkat tidak valid.",
                        "Malformed device id.".into(),
                    ),
                    Invalid::Label => (
                        "invalid_label",
                        "Nama perangkat terlalu panjang (paling banyak 100 karakter).",
                        "Device label too long (at most 100 characters).".into(),
                    ),
                    Invalid::AuditAction => (
                        "invalid_action",
                        "Jenis aktivitas tidak dikenal.",
                        "Unknown audit action.".into(),
                    ),
                    Invalid::Password => (
                        "invalid_password",
                        "Kata sandi terlalu panjang.",
                        "Password too long.".into(),
                    ),
                    Invalid::Username => (
                        "invalid_username",
                        "Nama pengguna tidak valid.",
                        "Malformed username.".into(),
                    ),
                    Invalid::Filter(name) => (
                        "invalid_value",
                        "Nilai parameter tidak dikenal.",
                        format!("Invalid value for `{name}`."),
                    ),
                };
                (StatusCode::BAD_REQUEST, code, id.into(), en)
            }
            E::Throttled(retry) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!(
                    "Terlalu banyak percobaan masuk yang gagal. Coba lagi dalam {} detik.",
                    retry.seconds()
                ),
                format!(
                    "Too many failed login attempts. Try again in {} seconds.",
                    retry.seconds()
                ),
            ),
            E::Review(review) => review_parts(review),
            E::Sync(error) => sync_parts(error),
            E::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Terjadi kesalahan pada server. Silakan coba lagi nanti.".into(),
                "The server failed. Try again later.".into(),
            ),
        }
    }
}

fn review_parts(error: &ReviewError) -> (StatusCode, &'static str, String, String) {
    let (status, code, id): (_, _, String) = match error {
        ReviewError::NotFound => (
            StatusCode::NOT_FOUND,
            "not_found",
            "Permohonan tidak ditemukan.".into(),
        ),
        ReviewError::NotAReviewer => (
            StatusCode::FORBIDDEN,
            "forbidden",
            "Hanya verifikator atau administrator yang dapat memutuskan permohonan.".into(),
        ),
        ReviewError::NotYourAgency => (
            StatusCode::FORBIDDEN,
            "not_your_agency",
            "Permohonan ini milik instansi yang bukan wewenang Anda.".into(),
        ),
        ReviewError::NotAllowed { from, to } => (
            StatusCode::CONFLICT,
            "invalid_transition",
            format!("Status tidak dapat diubah dari {from} menjadi {to}."),
        ),
        ReviewError::NoteRequired => (
            StatusCode::BAD_REQUEST,
            "note_required",
            "Keputusan ini wajib disertai catatan.".into(),
        ),
        ReviewError::NoteTooLong => (
            StatusCode::BAD_REQUEST,
            "note_too_long",
            "Catatan terlalu panjang (paling banyak 2000 karakter).".into(),
        ),
        ReviewError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Penyimpanan sedang tidak tersedia. Silakan coba lagi.".into(),
        ),
        ReviewError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Terjadi kesalahan pada server. Silakan coba lagi nanti.".into(),
        ),
    };
    let en = match error {
        ReviewError::Internal(_) => "The server failed. Try again later.".to_owned(),
        other => format!("{other}."),
    };
    (status, code, id, en)
}

/// Seconds a device waits before retrying an exchange the server could not serve.
const SYNC_RETRY_AFTER_SECONDS: u32 = 5;

fn sync_parts(error: &BatchSyncError) -> (StatusCode, &'static str, String, String) {
    match error {
        BatchSyncError::NotADevice => (
            StatusCode::FORBIDDEN,
            "device_required",
            "Sinkronisasi hanya untuk perangkat yang terdaftar; gunakan token perangkat.".into(),
            "Batch sync needs an enrolled device's token, not a login session.".into(),
        ),
        BatchSyncError::Malformed(problem) => (
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "Isi permintaan sinkronisasi tidak sesuai format.".into(),
            format!("Malformed batch sync request: {problem}."),
        ),
        BatchSyncError::KeyReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "key_reused",
            "Kunci permintaan sudah dipakai untuk isi yang berbeda.".into(),
            "This idempotency key was used for a different request.".into(),
        ),
        BatchSyncError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Penyimpanan sedang tidak tersedia. Kirim ulang permintaan yang sama nanti.".into(),
            "Storage is unavailable. Retry the same request later.".into(),
        ),
    }
}

/// `error: cause: cause ...`, for the log.
fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(out, ": {cause}");
        source = cause.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, message_en) = self.parts();
        if status.is_server_error() {
            tracing::error!(code, error = %cause_chain(&self), "request failed");
        } else {
            tracing::info!(code, error = %cause_chain(&self), "request refused");
        }
        let body = serde_json::json!({
            "error": code,
            "message": message,
            "message_en": message_en,
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthenticated(_) | ApiError::InvalidCredentials => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"jemput\""),
                );
            }
            ApiError::Throttled(retry) => {
                if let Ok(value) = HeaderValue::from_str(&retry.seconds().to_string()) {
                    headers.insert(header::RETRY_AFTER, value);
                }
            }
            ApiError::Sync(BatchSyncError::Unavailable(_)) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(SYNC_RETRY_AFTER_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(error: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = error.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"), retry)
    }

    #[tokio::test]
    async fn throttling_says_when_to_retry() {
        let (status, json, retry) = body(ApiError::Throttled(RetryAfter(29_500))).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("30"));
        assert_eq!(json["error"], "too_many_attempts");
        assert!(
            json["message"]
                .as_str()
                .is_some_and(|m| m.contains("30 detik"))
        );
        assert!(
            json["message_en"]
                .as_str()
                .is_some_and(|m| m.contains("30 seconds"))
        );
    }

    #[tokio::test]
    async fn internal_errors_tell_the_client_nothing_more() {
        let error = ApiError::from(StorageError::Corrupt("secret detail".into()));
        let (status, json, _) = body(error).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!json.to_string().contains("secret detail"));
    }

    #[test]
    fn json_errors_never_quote_the_body() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Login {
            username: String,
            password: String,
        }
        let problem = |body: &str| match parse_json::<Login>(body.as_bytes()) {
            Err(Invalid::Json(problem)) => problem,
            other => panic!("expected a JSON problem, got {other:?}"),
        };
        let wrong_type = problem(r#"{"username": "budi", "password": 12345678901}"#);
        assert!(!wrong_type.contains("12345678901"), "{wrong_type}");
        assert!(problem(r#"{"username": "budi"}"#).starts_with("missing field `password`"));
        assert!(problem("{").starts_with("the body ends too early"));
    }

    #[tokio::test]
    async fn every_refusal_has_both_languages() {
        for error in [
            ApiError::Unauthenticated(AuthError::Revoked),
            ApiError::InvalidCredentials,
            ApiError::AccountDisabled,
            ApiError::Forbidden(Denied::OutOfScope),
            ApiError::NotFound("device"),
            ApiError::Invalid(Invalid::Nik),
        ] {
            let (status, json, _) = body(error).await;
            assert!(status.is_client_error());
            for key in ["error", "message", "message_en"] {
                assert!(json[key].as_str().is_some_and(|s| !s.is_empty()), "{json}");
            }
        }
    }
}
