//! The HTTP layer of Stowage: turns requests into registry calls and results into responses.
//!
//! Layout:
//! - `config`: the typed configuration and its validation.
//! - `routes`: path -> `Endpoint` parsing (one parser instead of one route per name depth).
//! - `handlers`: one module per endpoint group.
//! - `error`: the only place registry errors become HTTP responses.
//! - `metrics`: Prometheus counters and histograms, labelled by route template.
//! - `serve` (here): building the stores, the request pipeline, the listener, background
//!   purging of abandoned uploads, and graceful shutdown.
//!
//! This crate never touches SQL or the filesystem layout directly; it only names the backends
//! when it opens them.

pub mod config;
pub mod error;
mod handlers;
pub mod metrics;
pub mod listener;
pub mod routes;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use bytes::Bytes;
use stowage_metadata::sqlite::SqliteStore;
use stowage_oci::ErrorCode;
use stowage_registry::{Error, Registry};
use stowage_storage::OpObserver;
use stowage_storage::fs::FsBlobStore;
use tracing::Instrument;

pub use config::Config;

use crate::config::Cidr;
use crate::metrics::Metrics;

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Abort a request body that sends nothing for this long.
    pub body_idle_timeout: Duration,
    metrics_enabled: bool,
    metrics_allow: Arc<Vec<Cidr>>,
}

/// Open the embedded default stores (filesystem blobs + SQLite metadata) under `data_dir`.
/// `observer`, when given, sees every durability-relevant operation in order (tests).
pub fn open_registry(config: &Config, observer: Option<OpObserver>) -> Result<Registry, String> {
    let data = config.data_dir();
    std::fs::create_dir_all(&data)
        .map_err(|e| format!("cannot create data directory {}: {e}", data.display()))?;
    let mut blobs = FsBlobStore::open(&data)
        .map_err(|e| format!("cannot open blob store in {}: {e}", data.display()))?;
    if let Some(o) = &observer {
        blobs = blobs.with_observer(o.clone());
    }
    let meta = SqliteStore::open_observed(&data.join("metadata.db"), observer)
        .map_err(|e| format!("cannot open metadata database in {}: {e}", data.display()))?;
    Ok(Registry::new(
        Arc::new(blobs),
        Arc::new(meta),
        config.registry_settings(),
    ))
}

/// Build the application state for a registry and configuration.
pub fn app_state(config: &Config, registry: Registry) -> Result<AppState, String> {
    Ok(AppState {
        registry: Arc::new(registry),
        metrics: Arc::new(Metrics::default()),
        body_idle_timeout: config.body_idle_timeout,
        metrics_enabled: config.metrics.enabled,
        metrics_allow: Arc::new(config.metrics_allow()?),
    })
}

/// The axum application: every request goes through [`dispatch`].
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
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
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let head = method == Method::HEAD;
    let (route, mut resp) = match path.as_str() {
        "/healthz" => ("/healthz", plain(200, "ok\n")),
        "/readyz" => (
            "/readyz",
            match state.registry.ready().await {
                Ok(()) => plain(200, "ready\n"),
                Err(_) => plain(503, "metadata store unavailable\n"),
            },
        ),
        "/metrics" => ("/metrics", metrics_endpoint(&state, peer)),
        _ => match routes::parse(&path) {
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
                let (parts, body) = req.into_parts();
                let result = handlers::handle(&state, ep, parts, body)
                    .instrument(span)
                    .await;
                (route, result.unwrap_or_else(|e| error::render(&e, head)))
            }
        },
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
    resp
}

fn plain(status: u16, text: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CONTENT_LENGTH, text.len())
        .body(Body::from(Bytes::from_static(text.as_bytes())))
        .expect("valid response")
}

fn metrics_endpoint(state: &AppState, peer: Option<SocketAddr>) -> Response<Body> {
    if !state.metrics_enabled {
        return plain(404, "metrics are disabled\n");
    }
    if !state.metrics_allow.is_empty()
        && !peer.is_some_and(|p| state.metrics_allow.iter().any(|c| c.contains(p.ip())))
    {
        return plain(403, "metrics are not available to this address\n");
    }
    let text = state.metrics.render();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .header(header::CONTENT_LENGTH, text.len())
        .body(Body::from(text))
        .expect("valid response")
}

/// Wait for SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, draining"),
        _ = int.recv() => tracing::info!("SIGINT received, draining"),
    }
}

/// Run the registry until SIGTERM/SIGINT, then drain in-flight requests for at most
/// `drain_timeout`. `on_ready` receives the bound address once connections are accepted.
pub async fn serve(
    config: Config,
    on_ready: impl FnOnce(SocketAddr, &std::path::Path),
) -> Result<(), String> {
    let registry = open_registry(&config, None)?;
    let state = app_state(&config, registry)?;
    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;

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

    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = rx.changed().await;
    });
    let handle = tokio::spawn(async move { server.await });
    on_ready(local, &config.data_dir());
    shutdown_signal().await;
    let _ = tx.send(true);
    match tokio::time::timeout(config.drain_timeout, handle).await {
        Ok(Ok(Ok(()))) => tracing::info!("all requests finished; exiting"),
        Ok(Ok(Err(e))) => return Err(format!("server error: {e}")),
        Ok(Err(e)) => return Err(format!("server task failed: {e}")),
        Err(_) => tracing::warn!(
            timeout_s = config.drain_timeout.as_secs(),
            "drain timeout reached with requests still running; exiting"
        ),
    }
    Ok(())
}

/// Initialise logging from the configuration (text or JSON lines on stderr).
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
