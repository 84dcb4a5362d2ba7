//! Prometheus metric names and the recorder, rendered at `/metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS: &str = "jemput_websocket_connections";
pub const DOCUMENTS_IN_MEMORY: &str = "jemput_documents_in_memory";
pub const FRAMES_IN: &str = "jemput_frames_in_total";
pub const FRAMES_OUT: &str = "jemput_frames_out_total";
pub const BYTES_IN: &str = "jemput_bytes_in_total";
pub const BYTES_OUT: &str = "jemput_bytes_out_total";
pub const CHANGES_APPLIED: &str = "jemput_changes_applied_total";
pub const PROTOCOL_ERRORS: &str = "jemput_protocol_errors_total";
pub const STORAGE_WRITE_SECONDS: &str = "jemput_storage_write_seconds";
pub const STORAGE_ERRORS: &str = "jemput_storage_errors_total";
pub const POLICY_REFUSALS: &str = "jemput_policy_refusals_total";
pub const COMPENSATIONS: &str = "jemput_compensations_total";
/// API requests refused for a missing, malformed, unknown, expired or revoked token.
pub const AUTH_REFUSED: &str = "jemput_auth_refused_total";
/// Logins by outcome (`succeeded`, `failed`, `throttled`).
pub const LOGINS: &str = "jemput_logins_total";
/// Batch sync exchanges (`POST /v1/sync`) by outcome (`served`, `replayed`, `failed`).
pub const BATCH_EXCHANGES: &str = "jemput_batch_exchanges_total";

/// Installs the process-wide recorder once and returns a handle that renders it. Later calls
/// (several servers in one test process) share the first recorder.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(STORAGE_WRITE_SECONDS.to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}
