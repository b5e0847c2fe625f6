//! The HTTP layer of Stowage: turns requests into registry calls and results into responses.
//!
//! Layout:
//! - `config`: the typed configuration and its validation; `config_check` reports every
//!   problem in a file (`stowage config check`).
//! - `routes`: method + path + query + shaping headers -> one typed `Endpoint` for every
//!   route the server answers, with the exhaustive statement of what each requires.
//! - `handlers`: one arm per endpoint, one module per endpoint group.
//! - `error`: the one place errors (the registry's domain errors included) become responses.
//! - `data_lock`: one `serve` per data directory.
//! - `metrics`: Prometheus counters and histograms, labelled by route template.
//! - `auth`: the HTTP side of authentication (`--auth`): the gate's challenges, the token
//!   endpoint and the admin API; the identity service (`stowage-identity`) decides.
//! - `tls` / `listener`: HTTPS with certificate reload, and the accept loop; `limits`,
//!   `activity` and `drain` are the listener's connection cap, timeouts and unread-body
//!   handling; `request_limits` are the per-request ones (head size, name and tag lengths,
//!   the anonymous request rate).
//! - `serve` (here): building the stores, the request pipeline, the listeners, background
//!   purging of abandoned uploads, and graceful shutdown.
//!
//! This crate never touches SQL or the filesystem layout directly; it only names the backends
//! when it opens them.

mod activity;
pub mod auth;
pub mod config;
pub mod config_check;
mod data_lock;
mod drain;
pub mod error;
mod handlers;
pub mod limits;
pub mod listener;
mod memory;
pub mod metrics;
pub mod request_limits;
pub mod routes;
pub mod startup;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, Response, header};
use stowage_metadata::AuthStore;
use stowage_metadata::sqlite::SqliteStore;
use stowage_oci::ErrorCode;
use stowage_registry::Registry;
use stowage_storage::OpObserver;
use stowage_storage::fs::FsBlobStore;
use tracing::Instrument;

pub use config::Config;
pub use startup::ServeError;

use crate::auth::Auth;
use crate::auth::decide::Principal;
use crate::config::Cidr;
use crate::metrics::Metrics;
use crate::routes::Requirement;
use stowage_identity::Credentials;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Abort a request body that sends nothing for this long.
    pub body_idle_timeout: Duration,
    metrics_enabled: bool,
    metrics_allow: Arc<Vec<Cidr>>,
    /// Authentication, when on.
    pub auth: Option<Arc<Auth>>,
    /// Send Strict-Transport-Security on HTTPS responses.
    hsts: bool,
    /// Bounds the manifest bodies buffered and parsed at once (see `handlers::manifests`).
    manifest_budget: Arc<handlers::ManifestBudget>,
    /// Head size, name and tag lengths.
    request_limits: Arc<request_limits::RequestLimits>,
    /// The request rate of anonymous clients (applied when authentication is on).
    anonymous: Arc<request_limits::AnonymousLimiter>,
}

/// What the server tells its starter once it accepts connections.
pub struct Ready<'a> {
    pub addr: SocketAddr,
    pub https: bool,
    pub data_dir: &'a std::path::Path,
    /// The development CA clients must trust (with `--tls-self-signed`).
    pub ca_cert: Option<std::path::PathBuf>,
    pub auth: bool,
}

/// Open the embedded default stores (filesystem blobs + SQLite metadata) under `data_dir`.
/// `observer`, when given, sees every durability-relevant operation in order (tests).
pub fn open_registry(
    config: &Config,
    observer: Option<OpObserver>,
) -> Result<Registry, ServeError> {
    open_stores(config, observer).map(|(r, _)| r)
}

/// Create the data directory (0700) and keep the metadata database private (0600): it holds
/// the JWT signing keys, the upload-session key and password and token hashes.
fn prepare_data_dir(data: &std::path::Path) -> Result<(), ServeError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if !data.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data)
            .map_err(|source| ServeError::CreateDataDir {
                path: data.to_path_buf(),
                source,
            })?;
    }
    let db = data.join("metadata.db");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&db)
        .map_err(|source| ServeError::OpenDatabaseFile {
            path: db.clone(),
            source,
        })?;
    for name in ["metadata.db", "metadata.db-wal", "metadata.db-shm"] {
        let p = data.join(name);
        if let Ok(m) = std::fs::metadata(&p)
            && m.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| ServeError::MakePrivate { path: p, source })?;
        }
    }
    Ok(())
}

/// Open the auth store of a data directory (for `stowage user`/`token` on the store).
pub fn open_auth_store(data_dir: &std::path::Path) -> Result<Arc<dyn AuthStore>, ServeError> {
    open_sqlite_store(data_dir).map(|s| s as Arc<dyn AuthStore>)
}

/// The embedded SQLite store of a data directory, created private if missing. Commands that
/// change it and exit call [`SqliteStore::checkpoint`] first, so `metadata.db` alone holds
/// their writes.
pub fn open_sqlite_store(data_dir: &std::path::Path) -> Result<Arc<SqliteStore>, ServeError> {
    prepare_data_dir(data_dir)?;
    let meta = SqliteStore::open(&data_dir.join("metadata.db")).map_err(|source| {
        ServeError::MetadataStore {
            dir: data_dir.to_path_buf(),
            source,
        }
    })?;
    Ok(Arc::new(meta))
}

/// Open the registry and the auth store over the same database.
pub fn open_stores(
    config: &Config,
    observer: Option<OpObserver>,
) -> Result<(Registry, Arc<dyn AuthStore>), ServeError> {
    open_sqlite_stores(config, observer).map(|(r, meta)| (r, meta as Arc<dyn AuthStore>))
}

/// [`open_stores`], keeping the concrete SQLite store (for the checkpoint at shutdown).
fn open_sqlite_stores(
    config: &Config,
    observer: Option<OpObserver>,
) -> Result<(Registry, Arc<SqliteStore>), ServeError> {
    let data = config.data_dir();
    prepare_data_dir(&data)?;
    let mut blobs = FsBlobStore::open(&data).map_err(|source| ServeError::BlobStore {
        dir: data.clone(),
        source,
    })?;
    if let Some(o) = &observer {
        blobs = blobs.with_observer(o.clone());
    }
    let meta = Arc::new(
        SqliteStore::open_observed(&data.join("metadata.db"), observer).map_err(|source| {
            ServeError::MetadataStore {
                dir: data.clone(),
                source,
            }
        })?,
    );
    let registry = Registry::new(Arc::new(blobs), meta.clone(), config.registry_settings());
    Ok((registry, meta))
}

/// Build the application state for a registry and configuration.
pub fn app_state(config: &Config, registry: Registry) -> AppState {
    AppState {
        registry: Arc::new(registry),
        metrics: Arc::new(Metrics::default()),
        body_idle_timeout: config.body_idle_timeout,
        metrics_enabled: config.metrics.enabled,
        metrics_allow: Arc::new(config.metrics.allow.clone()),
        auth: None,
        hsts: config.tls.hsts,
        manifest_budget: Arc::new(handlers::ManifestBudget::new(config.manifests.max_size)),
        request_limits: Arc::new(config.request_limits()),
        anonymous: Arc::new(request_limits::AnonymousLimiter::new(
            config.limits.anonymous_rate,
            config.limits.anonymous_burst,
        )),
    }
}

/// The application state over stores the caller built (wrapped for fault injection, or
/// another backend), with the identity service over `auth` when the configuration turns
/// authentication on. No background tasks are started (no purge, no auth reload): the caller
/// drives what it needs.
pub async fn open_with(
    config: &Config,
    blobs: Arc<dyn stowage_storage::BlobStore>,
    meta: Arc<dyn stowage_metadata::MetadataStore>,
    auth: Option<Arc<dyn AuthStore>>,
) -> Result<AppState, ServeError> {
    let registry = Registry::new(blobs, meta, config.registry_settings());
    let mut state = app_state(config, registry);
    if let (true, Some(store)) = (config.auth.enabled, auth) {
        state.auth = Some(Auth::open(&config.auth, store).await?);
    }
    Ok(state)
}

/// The axum application: every request goes through [`dispatch`].
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

impl AppState {
    /// Count an anonymous request against its client address, or refuse it (429).
    fn take_anonymous(
        &self,
        auth: &Auth,
        peer: Option<SocketAddr>,
        parts: &axum::http::request::Parts,
    ) -> Result<(), Error> {
        let ip = auth.client_ip(peer, &parts.headers);
        self.anonymous
            .take(ip)
            .map_err(|retry_after| self.anonymous.refusal(retry_after))
    }
}

/// A fresh request id (or the caller's, when it sent a sane one).
fn request_id(req: &Request) -> String {
    if let Some(v) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return v.to_string();
    }
    // Ids need uniqueness, not secrecy: start time mixed with a process-wide counter.
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    format!(
        "{:08x}{:08x}",
        (start >> 16) as u32,
        NEXT.fetch_add(1, Ordering::Relaxed) as u32
    )
}

async fn dispatch(State(state): State<AppState>, req: Request) -> Response<Body> {
    let started = Instant::now();
    let rid = request_id(&req);
    let method = req.method().clone();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let head = method == Method::HEAD;
    let secure = req
        .extensions()
        .get::<listener::Secure>()
        .is_some_and(|s| s.0);
    let (parts, body) = req.into_parts();
    let parsed = state
        .request_limits
        .check_head(&parts)
        .and_then(|()| routes::parse(&parts));
    let (route, mut resp) = match parsed {
        Err(e) => ("invalid", error::render(&e, head)),
        Ok(None) => (
            "unknown",
            error::render(
                &Error::new(ErrorCode::NameUnknown, "no such endpoint").status(404),
                head,
            ),
        ),
        Ok(Some(ep)) => {
            let route = ep.template();
            let span = tracing::info_span!("request", id = %rid, method = %method, route);
            let result = async {
                state.request_limits.check_lengths(&ep)?;
                // Anonymous clients are held to a request rate per address (authentication on;
                // requests with credentials are the failed-login limiter's business).
                // (A POST to the token endpoint carries its credentials in the body.)
                let token_post = ep == routes::Endpoint::Token && parts.method == Method::POST;
                let anonymous = state
                    .auth
                    .as_ref()
                    .filter(|_| ep.rate_limited() && !token_post);
                let presented = anonymous.map(|_| auth::decide::credentials(&parts));
                if let (Some(auth), Some(Credentials::None)) = (anonymous, &presented) {
                    state.take_anonymous(auth, peer, &parts)?;
                }
                // The gate: what the endpoint requires, checked before its handler runs. The
                // admin API's own gate (scope or password, same-origin JSON) runs first thing
                // in `Auth::admin_api`.
                let who = match (ep.requirement(), &state.auth) {
                    (Requirement::Registry(need), Some(auth)) => {
                        auth.authorize(&state.registry, &parts, peer, secure, &need)
                            .await?
                    }
                    (Requirement::Registry(_) | Requirement::Admin | Requirement::Open, _) => {
                        Principal::open()
                    }
                };
                // A bearer token issued to nobody (public pulls) is anonymous too.
                if let (Some(auth), Some(Credentials::Bearer(_))) = (anonymous, &presented)
                    && who.is_anonymous()
                {
                    state.take_anonymous(auth, peer, &parts)?;
                }
                let call = handlers::Call {
                    parts,
                    body,
                    peer,
                    secure,
                };
                handlers::handle(&state, &who, ep, call).await
            }
            .instrument(span)
            .await;
            (route, result.unwrap_or_else(|e| error::render(&e, head)))
        }
    };
    let status = resp.status().as_u16();
    let took = started.elapsed();
    state.metrics.request(route, method.as_str(), status, took);
    if status >= 500 {
        tracing::error!(id = %rid, %method, route, status, ms = took.as_millis() as u64, "request failed");
    } else {
        tracing::info!(id = %rid, %method, route, status, ms = took.as_millis() as u64, "request");
    }
    let h = resp.headers_mut();
    h.insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    if let Ok(v) = HeaderValue::from_str(&rid) {
        h.insert("X-Request-Id", v);
    }
    if secure && state.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

/// Wait for SIGTERM or SIGINT.
/// SIGTERM and SIGINT handlers, installed before the server says it is ready: a signal sent
/// right after the listening line must drain, not kill, the process.
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<ShutdownSignals, ServeError> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |signal| move |source| ServeError::Signal { signal, source };
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate()).map_err(failed("SIGTERM"))?,
            int: signal(SignalKind::interrupt()).map_err(failed("SIGINT"))?,
        })
    }

    /// Wait for SIGTERM or SIGINT.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received, draining"),
            _ = self.int.recv() => tracing::info!("SIGINT received, draining"),
        }
    }
}

/// Bind `addr` (the address of the setting `what`), saying clearly when it is taken.
async fn bind(
    addr: SocketAddr,
    setting: &'static str,
) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServeError::AddressInUse { addr, setting }
        } else {
            ServeError::Bind {
                addr,
                setting,
                source,
            }
        }
    })
}

/// Run the registry until SIGTERM/SIGINT, then drain in-flight requests for at most
/// `drain_timeout`. `on_ready` is told the bound address once connections are accepted.
///
/// The listeners are bound first, so a taken port fails the start before the data directory
/// or database is created. After the drain, the database's WAL is checkpointed into
/// `metadata.db`, so that file alone holds everything.
pub async fn serve(config: Config, on_ready: impl FnOnce(&Ready)) -> Result<(), ServeError> {
    memory::tune_allocator();
    let addr = config.listen;
    let listener = bind(addr, "--listen").await?;
    let local = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let redirect = match config.tls.redirect_listen {
        Some(raddr) => Some(bind(raddr, "tls.redirect_listen").await?),
        None => None,
    };

    let data = config.data_dir();
    prepare_data_dir(&data)?;
    let _data_lock = data_lock::acquire(&data)?;
    let (registry, meta) = open_sqlite_stores(&config, None)?;
    let mut state = app_state(&config, registry);
    if config.auth.enabled {
        let auth = Auth::open(&config.auth, meta.clone()).await?;
        if auth.snapshot().users.is_empty() {
            tracing::warn!(
                data_dir = %config.data_dir().display(),
                "authentication is on but no user exists: only public repositories can be pulled; create an administrator with `stowage user add NAME --admin --data DIR`"
            );
        }
        auth.spawn_background();
        state.auth = Some(auth);
    }
    let open_files = limits::raise_open_file_limit();
    let conn_settings = config.conn_settings();
    if config.limits.max_connections.is_some() {
        limits::check_headroom(conn_settings.max_connections);
    }
    tracing::debug!(
        open_files,
        max_connections = conn_settings.max_connections,
        "connection limits"
    );
    // One cap for both listeners: they share the process's file descriptors.
    let conn_limits = listener::Limits::new(conn_settings);
    let (acceptor, ca_cert) = start_tls(&config, addr)?;

    // Purge abandoned uploads in the background (also once at start, for crash leftovers).
    let purge_registry = state.registry.clone();
    let interval = config.uploads.purge_interval;
    tokio::spawn(async move {
        loop {
            match purge_registry.purge_uploads().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged abandoned uploads"),
                Err(e) => tracing::warn!(error = %e, "purging uploads failed"),
            }
            tokio::time::sleep(interval).await;
        }
    });

    let (tx, rx) = tokio::sync::watch::channel(false);
    if let Some(rl) = redirect {
        let app = listener::redirect_router(local.port());
        let rx = rx.clone();
        let limits = conn_limits.clone();
        tokio::spawn(async move {
            let _ = listener::serve_connections_with(rl, None, app, rx, limits).await;
        });
    }
    let https = acceptor.is_some();
    let app = router(state);
    let handle = tokio::spawn(listener::serve_connections_with(
        listener,
        acceptor,
        app,
        rx,
        conn_limits,
    ));
    let signals = ShutdownSignals::install()?;
    on_ready(&Ready {
        addr: local,
        https,
        data_dir: &config.data_dir(),
        ca_cert,
        auth: config.auth.enabled,
    });
    signals.recv().await;
    let _ = tx.send(true);
    let drained = match tokio::time::timeout(config.drain_timeout, handle).await {
        Ok(Ok(Ok(()))) => {
            tracing::info!("all requests finished");
            Ok(())
        }
        Ok(Ok(Err(e))) => Err(ServeError::Server(e)),
        Ok(Err(e)) => Err(ServeError::Task(e)),
        Err(_) => {
            tracing::warn!(
                timeout_s = config.drain_timeout.as_secs(),
                "drain timeout reached with requests still running"
            );
            Ok(())
        }
    };
    // Every acknowledged write is committed by now (the checkpoint waits behind any queued
    // one): move the WAL into metadata.db, so a copy of that file alone is complete.
    match meta.checkpoint().await {
        Ok(()) => tracing::info!("metadata checkpointed into metadata.db; exiting"),
        Err(e) => {
            tracing::warn!(error = %e, "metadata checkpoint at shutdown failed; the WAL file keeps the latest writes")
        }
    }
    drained
}

/// The TLS acceptor the configuration asks for (and the development CA, when self-signed).
fn start_tls(
    config: &Config,
    addr: SocketAddr,
) -> Result<(Option<tls::TlsAcceptor>, Option<std::path::PathBuf>), ServeError> {
    let t = &config.tls;
    let (files, ca) = if t.self_signed {
        let made = tls::self_signed(&config.data_dir().join("tls"), &t.hosts, addr)
            .map_err(ServeError::Tls)?;
        if made.created {
            tracing::info!(ca = %made.ca_cert.display(), "generated a development certificate");
        }
        (
            tls::TlsFiles {
                cert: made.cert,
                key: made.key,
            },
            Some(made.ca_cert),
        )
    } else if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
        (
            tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            None,
        )
    } else {
        return Ok((None, None));
    };
    let (acceptor, _resolver) = tls::load(&files, t.reload_interval).map_err(ServeError::Tls)?;
    Ok((Some(acceptor), ca))
}

/// Initialise logging from the configuration (text or JSON lines on stderr). Text is coloured
/// only when stderr is a terminal and `NO_COLOR` is unset or empty (<https://no-color.org>).
pub fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    let filter = config.log.level.filter();
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if config.log.format == config::LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
