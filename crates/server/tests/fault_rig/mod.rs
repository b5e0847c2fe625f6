//! The rig the fault tests share: an in-process server on a real loopback socket (the
//! production listener, so unread bodies are drained as in `serve`) over a filesystem blob
//! store and a SQLite store, both wrapped in `Faulty` and the blob store's I/O hook driven by
//! the same `FaultPlan`; plus the checks every fault test ends with (fsck on the unwrapped
//! stores, clean error answers).

#![allow(dead_code)]

use std::sync::Arc;

use stowage_metadata::sqlite::SqliteStore;
use stowage_metadata::{AuthStore, MetadataStore};
use stowage_registry::fsck::{self, FsckOptions};
use stowage_server::{Config, listener, open_with, router};
use stowage_storage::BlobStore;
use stowage_storage::fs::FsBlobStore;
use stowage_testkit::fault::{FaultPlan, Faulty};

pub const ADMIN: (&str, &str) = ("root", "fault-injection-admin-password");

pub struct Rig {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub plan: Arc<FaultPlan>,
    pub blobs: Arc<FsBlobStore>,
    pub meta: Arc<SqliteStore>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Rig {
    /// Start a server whose stores fail as `plan` says; with `auth`, authentication is on and
    /// an administrator [`ADMIN`] exists.
    pub async fn start(seed: u64, auth: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let plan = Arc::new(FaultPlan::new(seed));
        let mut config = Config {
            data_dir: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        config.auth.enabled = auth;
        let blobs = Arc::new(
            FsBlobStore::open(dir.path())
                .unwrap()
                .with_io_hook(plan.clone()),
        );
        let meta = Arc::new(SqliteStore::open(&dir.path().join("metadata.db")).unwrap());
        if auth {
            stowage_identity::accounts::Accounts::new(meta.clone() as Arc<dyn AuthStore>)
                .add_user(ADMIN.0, ADMIN.1, true, &[])
                .await
                .unwrap();
        }
        let faulty_blobs: Arc<dyn BlobStore> = Arc::new(Faulty::new(blobs.clone(), plan.clone()));
        let faulty_meta = Arc::new(Faulty::new(meta.clone(), plan.clone()));
        let state = open_with(
            &config,
            faulty_blobs,
            faulty_meta.clone() as Arc<dyn MetadataStore>,
            Some(faulty_meta as Arc<dyn AuthStore>),
        )
        .await
        .unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let limits = listener::Limits::new(config.conn_settings());
        tokio::spawn(listener::serve_connections_with(
            tcp,
            None,
            router(state),
            rx,
            limits,
        ));
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap();
        Rig {
            url: format!("http://{addr}"),
            addr,
            plan,
            blobs,
            meta,
            http,
            dir,
            _stop: stop,
        }
    }

    /// Run the store checker on the stores themselves (no faults) and fail with its findings
    /// unless the store is consistent.
    pub async fn assert_consistent(&self) {
        let report = fsck::check(&*self.meta, &*self.blobs, &FsckOptions::default())
            .await
            .expect("fsck ran");
        assert!(
            report.is_consistent(),
            "fsck found errors (seed {}): {:#?}\ninjected: {:?}",
            self.plan.seed(),
            report.errors().collect::<Vec<_>>(),
            self.plan.injected()
        );
    }
}

/// An answer to a request that met an injected fault: a clean error, never a 2xx, a 500 or a
/// dropped connection. A transient fault is 503 `UNAVAILABLE` with `Retry-After`; a full disk
/// is 507 with a plain-text message.
pub async fn assert_clean_error(r: reqwest::Response, want: u16, what: &str) {
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").cloned();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, want, "{what}: answered {status}: {body}");
    if want == 503 {
        assert_eq!(
            retry.as_ref().and_then(|v| v.to_str().ok()),
            Some("1"),
            "{what}: 503 without Retry-After"
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("OCI error body");
        assert_eq!(v["errors"][0]["code"], "UNAVAILABLE", "{what}: {body}");
    }
}
