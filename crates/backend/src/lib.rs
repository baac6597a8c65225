//! `vesper serve`: the sync backend. Two listeners: the public API (`/manufacturing/...`,
//! `/ota/...`, `/healthz`, `/openapi.json`) and the broker-facing MQTT auth routes
//! (`/mqtt/auth/...`), which default to loopback.
//!
//! Handlers only translate HTTP; the registry, credentials, ACL and NVS modules do the work.
//! Registry calls run on the blocking pool.
//!
//! Depends on `vesper-core` (model, contracts, wire types), `vesper-store` (the registry) and
//! `vesper-labels` (label PDFs for the API); never on the station, the flasher or the simulator.

mod access;
mod api;
pub mod control;
mod decision;
mod dialects;
mod eol;
mod error;
pub mod heartbeat;
pub mod hooks;
pub mod mail;
mod mqtt;
mod publish;
pub mod releases;
mod serve;
pub mod streams;
pub mod users;
pub use mqtt::BackendGate;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request};
use tokio::net::TcpListener;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use access::Caller;
pub use api::{MAX_DOWNLOADS, document as openapi};
pub use error::ApiError;

use crate::users::UserVerifier;
use vesper_core::config::Config;
use vesper_core::credentials::{MasterSecret, SECRET_ENV, SecretError};
use vesper_store::{Delivery, DeviceEvent, RegistryError, Store};

/// Everything a handler may use.
pub struct AppState {
    /// The registry (SQLite in the data folder, or PostgreSQL shared with other instances).
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub secret: MasterSecret,
    pub users: Option<Arc<UserVerifier>>,
    /// Device changes, for server-sent events and long polls.
    pub events: tokio::sync::broadcast::Sender<DeviceEvent>,
    /// Counters of the broker's auth questions (`/metrics` on the auth listener).
    pub metrics: AuthMetrics,
    /// Raised at shutdown, so that event streams and long polls end and let the server stop.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Whether the heartbeat listener is connected and subscribed (for health checks).
    pub broker_connected: std::sync::atomic::AtomicBool,
    /// Kick/forget commands for the broker plugin, published by the heartbeat listener.
    pub broker_control: control::BrokerControl,
    /// Download slots for firmware files (`/ota/...`, `firmware.bin`).
    pub downloads: Arc<tokio::sync::Semaphore>,
    /// Event streams and long polls each token holds.
    pub streams: streams::StreamSlots,
    /// Wakes the mail worker when a message is queued.
    pub mail_wake: tokio::sync::Notify,
    /// The deploy webhook, when `[deploy]` turns it on.
    pub deployer: Option<Arc<hooks::Deployer>>,
}

/// How many questions the broker asked, per route (a cache that works shows few).
#[derive(Debug, Default)]
pub struct AuthMetrics {
    pub user: AtomicU64,
    pub acl: AtomicU64,
    pub superuser: AtomicU64,
    /// Device messages (data and status) this instance's heartbeat listener took in: across
    /// instances on a shared registry, each message counts on one of them.
    pub device_messages: AtomicU64,
}

pub type SharedState = Arc<AppState>;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot read the MQTT master secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Mail(#[from] mail::MailerError),
    #[error(transparent)]
    Hook(#[from] hooks::HookSecretError),
    #[error(transparent)]
    Lock(#[from] vesper_store::LockError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Resolves when the stop flag is raised (its guard is not kept across awaits, so the future
/// stays `Send`).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Tells every instance's event listeners (long polls, event streams) about device changes:
/// through the database when it is shared, else straight to this instance's listeners.
pub async fn announce(state: &AppState, events: Vec<DeviceEvent>) {
    match state.store.announce(&events).await {
        Ok(Delivery::Shared) => return,
        Ok(Delivery::Local) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot announce device changes to other instances; only this one hears them")
        }
    }
    for event in events {
        let _ = state.events.send(event);
    }
}

/// Request ids: a process-wide counter, or the caller's `x-request-id` when it sends one.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        HeaderValue::from_str(&format!("{n:x}"))
            .ok()
            .map(RequestId::new)
    }
}

/// Request ids and a trace span per request (method, path, id; never bodies).
/// `level` is the span's level: the broker's auth checks are many and short, so their spans are
/// DEBUG (denials are still logged at INFO with their reason).
fn layered(router: Router, ids: Counter, level: tracing::Level) -> Router {
    router
        .layer(TraceLayer::new_for_http().make_span_with(move |req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            if level == tracing::Level::DEBUG {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
            } else {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
            }
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(ids))
}

/// The public API router.
pub fn api_router(state: SharedState) -> Router {
    let ids = Counter::default();
    layered(
        api::routes(Duration::from_secs(60))
            .0
            .with_state(state)
            .layer(DefaultBodyLimit::max(256 * 1024)),
        ids,
        tracing::Level::INFO,
    )
}

/// Most auth questions answered at once on the broker's listener.
const MAX_AUTH_IN_FLIGHT: usize = 256;

/// The broker-facing MQTT auth router.
pub fn auth_router(state: SharedState) -> Router {
    let ids = Counter::default();
    layered(
        mqtt::routes()
            .merge(dialects::routes())
            // The broker asks one question per login or topic; a flood waits its turn here
            // rather than opening unbounded work (and registry reads) at once.
            .layer(tower::limit::ConcurrencyLimitLayer::new(MAX_AUTH_IN_FLIGHT))
            .layer(TimeoutLayer::with_status_code(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(5),
            ))
            .with_state(state)
            .layer(DefaultBodyLimit::max(vesper_core::goauth::MAX_BODY)),
        ids,
        tracing::Level::DEBUG,
    )
}

/// Where to serve, after command-line overrides.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub auth_listen: SocketAddr,
}

/// A running server (both listeners).
pub struct Running {
    pub api_addr: SocketAddr,
    pub auth_addr: SocketAddr,
    pub state: SharedState,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The data folder's lock, released when the server stops.
    _lock: vesper_store::DataLock,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            task.await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
        }
        Ok(())
    }
}

/// The name of the master secret among systemd's credentials (`LoadCredential=mqtt_secret:...`).
pub const SECRET_CREDENTIAL: &str = "mqtt_secret";

/// Loads the secret from the configured file, else `MQTT_SECRET`, else systemd's credential
/// `$CREDENTIALS_DIRECTORY/mqtt_secret` (the shipped unit's `LoadCredential=`).
pub fn load_secret(config: &Config) -> Result<MasterSecret, ServeError> {
    if let Some(path) = &config.serve.secret_file {
        return read_secret_file(path);
    }
    let from_env = std::env::var_os(SECRET_ENV);
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(SECRET_CREDENTIAL))
        .filter(|path| path.exists());
    match (from_env, credential) {
        (None, Some(path)) => read_secret_file(&path),
        (from_env, _) => Ok(MasterSecret::from_env_value(from_env)?),
    }
}

/// Reads the secret from a file (one trailing newline ignored).
pub fn read_secret_file(path: &std::path::Path) -> Result<MasterSecret, ServeError> {
    let bytes = std::fs::read(path).map_err(|source| ServeError::SecretFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(MasterSecret::from_file_contents(
        bytes,
        &path.display().to_string(),
    )?)
}

/// Opens the registry, binds both listeners and serves until [`Running::stop`].
pub async fn start(
    config: Config,
    secret: MasterSecret,
    options: &ServeOptions,
) -> Result<Running, ServeError> {
    let lock = vesper_store::DataLock::acquire(&options.data_dir)?;
    let store = vesper_store::open_store(config.serve.database.as_ref(), &options.data_dir).await?;
    tracing::info!(engine = %store.engine(), "registry open");
    // The data lock makes this the only backend on a SQLite registry: mail it had in hand
    // when it stopped is due again now.
    store.release_mail_leases().await?;
    // A deploy that was going when the backend stopped did not finish: say so.
    for run in store.deploys_interrupted().await? {
        tracing::warn!(
            run = run.id,
            "a deploy run was interrupted by the backend stopping"
        );
    }
    let mailer = Arc::new(mail::Mailer::new(&config.mail, &options.data_dir)?);
    let templates = Arc::new(mail::Templates::new(mail::globals(&config)));
    let deployer = hooks::Deployer::new(&config.deploy, &options.data_dir)?;
    let users = config
        .serve
        .users
        .clone()
        .map(|u| Arc::new(UserVerifier::new(u)));
    let (events, _) = tokio::sync::broadcast::channel(4096);
    let (shutdown, signal) = tokio::sync::watch::channel(false);
    let (broker_control, broker_commands) = control::BrokerControl::channel();
    let state = Arc::new(AppState {
        store,
        config: Arc::new(config),
        secret,
        users,
        events,
        metrics: AuthMetrics::default(),
        stopping: signal.clone(),
        broker_connected: std::sync::atomic::AtomicBool::new(false),
        broker_control,
        downloads: Arc::new(tokio::sync::Semaphore::new(api::MAX_DOWNLOADS)),
        streams: streams::StreamSlots::default(),
        mail_wake: tokio::sync::Notify::new(),
        deployer,
    });
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    };
    let api = bind(options.listen).await?;
    let auth = bind(options.auth_listen).await?;
    let (api_addr, auth_addr) = (api.local_addr()?, auth.local_addr()?);
    // Both listeners bounded (serve.rs): header-read timeout, connection cap, no Nagle.
    let cap = serve::connection_cap();
    let serve = |listener: TcpListener, router: Router, timeout| {
        tokio::spawn(serve::serve(listener, router, cap, timeout, signal.clone()))
    };
    let tasks = vec![
        serve(api, api_router(state.clone()), serve::HEADER_READ_TIMEOUT),
        serve(
            auth,
            auth_router(state.clone()),
            serve::AUTH_HEADER_READ_TIMEOUT,
        ),
    ];
    // Device events of the other instances on a shared database (returns at once on SQLite).
    {
        let (state, stop) = (state.clone(), signal.clone());
        tokio::spawn(async move { state.store.forward_events(state.events.clone(), stop).await });
    }
    let mut tasks = tasks;
    if let Some(broker) = state.config.serve.broker.clone() {
        let (state, stop) = (state.clone(), signal.clone());
        tasks.push(tokio::spawn(async move {
            heartbeat::run(state, broker, broker_commands, stop).await;
            Ok(())
        }));
    }
    {
        let (state, stop) = (state.clone(), signal.clone());
        tasks.push(tokio::spawn(async move {
            mail::run_worker(state, mailer, templates, stop).await;
            Ok(())
        }));
    }
    tokio::spawn(mail::run_alerts(
        state.clone(),
        options.data_dir.clone(),
        signal.clone(),
    ));
    if let Some(users) = state.users.clone() {
        tokio::spawn(refresh_keys(users, signal));
    }
    Ok(Running {
        api_addr,
        auth_addr,
        state,
        shutdown,
        tasks,
        _lock: lock,
    })
}

/// Loads the user-token keys now and every hour until shutdown; failures are logged, not fatal.
async fn refresh_keys(users: Arc<UserVerifier>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        match users.refresh().await {
            Ok(n) => tracing::info!(keys = n, "loaded user token keys"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot load user token keys; user logins fail until they load")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Serves until SIGINT or SIGTERM, printing the bound addresses first.
pub async fn run(
    config: Config,
    secret: MasterSecret,
    options: ServeOptions,
    until: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let running = start(config, secret, &options).await?;
    println!("api listening on http://{}", running.api_addr);
    println!("mqtt auth listening on http://{}", running.auth_addr);
    tracing::info!(api = %running.api_addr, auth = %running.auth_addr, data_dir = %options.data_dir.display(), "vesper serve started");
    until.await;
    tracing::info!("shutting down");
    running.stop().await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
