//! Builds and runs the server; shared by `main` and the tests, which hand in a listener bound
//! to port 0 and a shutdown future.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jemput_sync_protocol::{PeerId, StorageId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DatabaseConfig, ServeConfig};
use crate::http::{AppState, router};
use crate::storage::{
    ActorOwner, PostgresStorage, SqliteStorage, SqliteStorageConfig, Storage, StorageError,
};
use crate::sync::{Hub, ServerIdentity};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid server identity: {0}")]
    Identity(#[from] jemput_sync_protocol::IdError),
}

/// Opens the configured database (applying migrations) and serves on `listener` until
/// `shutdown` completes, then stops gracefully: no new connections, WebSocket peers closed,
/// every in-flight write finished, sync states persisted, storage closed.
///
/// `ready` is called once storage is open and migrated and the server accepts requests, so
/// a script or test that waits for it can use the database and the API at once.
pub async fn serve(
    config: ServeConfig,
    listener: std::net::TcpListener,
    ready: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    match &config.database {
        DatabaseConfig::Sqlite { path } => {
            let storage = SqliteStorage::open(SqliteStorageConfig::new(path.clone())).await?;
            serve_with(storage, config, listener, ready, shutdown).await
        }
        DatabaseConfig::Postgres {
            url,
            max_connections,
        } => {
            let storage = PostgresStorage::open(url.expose(), *max_connections).await?;
            serve_with(storage, config, listener, ready, shutdown).await
        }
    }
}

/// Applies pending migrations for the configured database (`jemput migrate`).
pub async fn migrate(database: &DatabaseConfig) -> Result<(), StorageError> {
    match database {
        DatabaseConfig::Sqlite { path } => {
            SqliteStorage::migrate(&SqliteStorageConfig::new(path.clone())).await
        }
        DatabaseConfig::Postgres { url, .. } => PostgresStorage::migrate(url.expose()).await,
    }
}

async fn serve_with<S: Storage>(
    storage: S,
    config: ServeConfig,
    listener: std::net::TcpListener,
    ready: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let storage = Arc::new(storage);
    let result = serve_storage(Arc::clone(&storage), config, listener, ready, shutdown).await;
    storage.close().await;
    result
}

async fn serve_storage<S: Storage>(
    storage: Arc<S>,
    config: ServeConfig,
    listener: std::net::TcpListener,
    ready: impl FnOnce() + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let storage_id = storage
        .init_setting("server_storage_id", &uuid::Uuid::new_v4().to_string())
        .await?;
    let storage_id = StorageId::parse(storage_id)?;
    // One peer id and one Automerge actor per process, so several instances on one database
    // stay distinct peers and never write two changes with the same (actor, seq). The peer id
    // travels in every WebSocket message both ways, so it is short: 64 random bits.
    let peer_id = PeerId::parse(format!("jemput-{:016x}", rand::random::<u64>()))?;
    let actor = automerge::ActorId::random();
    storage
        .bind_actor_if_unbound(&actor, &ActorOwner::Server, crate::auth::now_millis())
        .await?;
    let citizen_secret = crate::audit::citizen_key_secret(&*storage).await?;
    let identity = ServerIdentity {
        peer_id,
        storage_id,
        actor,
        citizen_secret,
    };
    let hub = Hub::new(storage, config.hub.clone(), identity);
    let state = Arc::new(AppState {
        hub: Arc::clone(&hub),
        limits: config.limits.clone(),
        batch: config.batch,
        metrics: crate::metrics::install(),
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
        ready: AtomicBool::new(false),
    });
    // Connect info: the login throttle counts failures per client address. Requests read
    // from TLS early data (or marked so by a proxy) get 425 unless replay-safe.
    let app = router(Arc::clone(&state))
        .layer(tls::too_early::TooEarlyLayer)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let handle = axum_server::Handle::new();
    let server = match &config.tls {
        Some(paths) => {
            let rustls = tls::server_config(&paths.cert, &paths.key)?;
            // Our acceptor, not axum-server's rustls one: it hands early data to HTTP.
            let server = axum_server::from_tcp(listener)?
                .acceptor(tls::early_data::EarlyDataAcceptor::new(rustls))
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
        None => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
    };
    state.ready.store(true, Ordering::Relaxed);
    ready();

    let stopped_early = tokio::select! {
        () = shutdown => None,
        result = server => Some(result),
    };
    if let Some(result) = stopped_early {
        // The listener failed on its own; still flush what documents hold.
        hub.shutdown(config.shutdown_grace).await;
        return match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.into()),
            Err(join) => Err(std::io::Error::other(join).into()),
        };
    }

    tracing::info!("shutting down: closing connections, finishing writes");
    state.ready.store(false, Ordering::Relaxed);
    state.shutdown.cancel();
    handle.graceful_shutdown(Some(config.shutdown_grace));
    state.connections.close();
    if tokio::time::timeout(config.shutdown_grace, state.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close before the shutdown deadline");
    }
    hub.shutdown(config.shutdown_grace).await;
    tracing::info!("shutdown complete");
    Ok(())
}
