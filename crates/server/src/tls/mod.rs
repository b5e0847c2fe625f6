//! TLS for the registry's listener: loading the certificate and key, swapping them in while the
//! server runs, the rustls server configuration, and development certificates.
//!
//! This module owns everything that touches certificate and key files: reading and validating
//! the PEM files named in the configuration, polling them for changes (a renewal by certbot or
//! cert-manager must not need a restart), and creating a small development CA plus server
//! certificate under the data directory. It must not accept connections or speak HTTP (that is
//! `listener`), must not decide *whether* TLS is on (that is the configuration), and must never
//! log key material. A failed reload must never take the server down: the previous certificate
//! keeps serving until a good pair appears.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use stowage_oci::{Algorithm, Digest};
use tokio::task::JoinHandle;

/// The certificate chain and private key files named by the configuration (`tls.cert`,
/// `tls.key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain: the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, SEC1 (EC) or PKCS#1 (RSA), unencrypted.
    pub key: PathBuf,
}

/// The crypto provider used for everything here. Passed explicitly (never installed as the
/// process default) so that nothing depends on which crate happened to install one first.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn unix_now() -> u64 {
    stowage_oci::time::now() as u64
}

fn sha256(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, data)
}

// ---------------------------------------------------------------------------------------------
// Loading a certificate and key
// ---------------------------------------------------------------------------------------------

/// A validated certificate chain and key, plus what is needed to notice changes and log them.
struct Loaded {
    key: CertifiedKey,
    cert_digest: Digest,
    key_digest: Digest,
    info: CertInfo,
}

/// Human-facing facts about a leaf certificate, for logs only.
struct CertInfo {
    fingerprint: String,
    not_after: Option<i64>,
    sans: Vec<String>,
}

impl CertInfo {
    fn of(leaf: &[u8]) -> CertInfo {
        CertInfo {
            fingerprint: sha256(leaf).hex().to_owned(),
            not_after: der::not_after(leaf),
            sans: der::subject_alt_names(leaf),
        }
    }

    fn not_after_text(&self) -> String {
        self.not_after
            .map_or_else(|| "unknown".to_owned(), stowage_oci::time::rfc3339)
    }

    /// Warn about a certificate that clients are going to reject for its age, so an operator sees
    /// why handshakes fail instead of only the clients seeing it.
    fn warn_if_expiring(&self, path: &Path) {
        let Some(not_after) = self.not_after else {
            return;
        };
        let left = not_after - unix_now() as i64;
        if left <= 0 {
            tracing::warn!(
                cert = %path.display(),
                not_after = %self.not_after_text(),
                "TLS certificate has expired; clients will refuse to connect"
            );
        } else if left < 7 * 86_400 {
            tracing::warn!(
                cert = %path.display(),
                not_after = %self.not_after_text(),
                days_left = left / 86_400,
                "TLS certificate expires soon"
            );
        }
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("{what} {}: cannot read: {e}", path.display()))
}

fn parse_chain(
    what: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: invalid PEM: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{what} {}: no certificate found (expected PEM \"CERTIFICATE\" blocks, server \
             certificate first)",
            path.display()
        ));
    }
    Ok(chain)
}

fn parse_key(what: &str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        let text = String::from_utf8_lossy(pem);
        if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
            format!(
                "{what} {}: the private key is encrypted; store it unencrypted (mode 0600)",
                path.display()
            )
        } else if matches!(e, rustls_pki_types::pem::Error::NoItemsFound) {
            format!(
                "{what} {}: no private key found (expected PEM PKCS#8, SEC1 or RSA key)",
                path.display()
            )
        } else {
            format!("{what} {}: invalid PEM: {e}", path.display())
        }
    })
}

/// Check that `key` is the private half of the leaf's public key. A provider that cannot tell
/// (`Unknown`) is let through, as rustls itself does: the handshake would fail loudly anyway.
fn check_keys_match(key: &CertifiedKey, files: &TlsFiles) -> Result<(), String> {
    match key.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "tls.cert {} and tls.key {}: certificate and key do not match",
            files.cert.display(),
            files.key.display()
        )),
        Err(e) => Err(format!(
            "tls.cert {}: cannot parse the server certificate: {e}",
            files.cert.display()
        )),
    }
}

/// Read, parse and cross-check a certificate chain and key pair.
fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<Loaded, String> {
    let cert_pem = read_file("tls.cert", &files.cert)?;
    let key_pem = read_file("tls.key", &files.key)?;
    let chain = parse_chain("tls.cert", &files.cert, &cert_pem)?;
    let key_der = parse_key("tls.key", &files.key, &key_pem)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| {
            format!(
                "tls.key {}: unsupported or invalid private key: {e}",
                files.key.display()
            )
        })?;
    let info = CertInfo::of(&chain[0]);
    let key = CertifiedKey::new(chain, signing_key);
    check_keys_match(&key, files)?;
    Ok(Loaded {
        key,
        cert_digest: sha256(&cert_pem),
        key_digest: sha256(&key_pem),
        info,
    })
}

/// Every problem with a certificate and key pair, one message each (empty: usable): a file
/// missing or unreadable, no PEM certificate or key in it, a key the provider cannot load, a
/// certificate that does not parse, or a key that is not the certificate's.
pub fn check_files(files: &TlsFiles) -> Vec<String> {
    let provider = provider();
    let chain = read_file("tls.cert", &files.cert)
        .and_then(|pem| parse_chain("tls.cert", &files.cert, &pem))
        .and_then(|chain| {
            // PEM around bytes that are not X.509 is caught here, key or no key.
            match chain.iter().position(|c| der::not_after(c).is_none()) {
                Some(i) => Err(format!(
                    "tls.cert {}: certificate {} of the chain does not parse as X.509",
                    files.cert.display(),
                    i + 1
                )),
                None => Ok(chain),
            }
        });
    let key = read_file("tls.key", &files.key)
        .and_then(|pem| parse_key("tls.key", &files.key, &pem))
        .and_then(|der| {
            provider.key_provider.load_private_key(der).map_err(|e| {
                format!(
                    "tls.key {}: unsupported or invalid private key: {e}",
                    files.key.display()
                )
            })
        });
    match (chain, key) {
        (Ok(chain), Ok(key)) => check_keys_match(&CertifiedKey::new(chain, key), files)
            .err()
            .into_iter()
            .collect(),
        (chain, key) => chain.err().into_iter().chain(key.err()).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// The reloading resolver
// ---------------------------------------------------------------------------------------------

/// Size and modification time of a file: the cheap check made on every poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stat {
    fn of(what: &str, path: &Path) -> Result<Stat, String> {
        let meta = fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
        Ok(Stat {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// What the files looked like when the current certificate was loaded from them.
struct Seen {
    cert: Stat,
    key: Stat,
    cert_digest: Digest,
    key_digest: Digest,
}

/// Serves the current certificate to every new handshake, and swaps in a new one when the files
/// change ([`ReloadingResolver::reload_if_changed`], driven by [`spawn_reloader`]).
///
/// Connections already established keep the certificate they were set up with: the swap only
/// changes what later handshakes are offered.
pub struct ReloadingResolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    // A plain RwLock around an Arc: handshakes only clone the Arc under a read lock, which is
    // far cheaper than the handshake itself, and a reload holds the write lock for one store.
    current: RwLock<Arc<CertifiedKey>>,
    // Also serializes reloads, so two callers never interleave stat, read and swap.
    seen: Mutex<Seen>,
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key: only where it comes from.
        f.debug_struct("ReloadingResolver")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingResolver {
    /// Load the certificate chain and key from `files`; fails with a message naming the file and
    /// the problem.
    pub fn open(files: TlsFiles) -> Result<ReloadingResolver, String> {
        let provider = provider();
        // Stat before reading: if a file changes in between, the next poll sees a newer stat
        // than the one recorded and reads it again.
        let cert = Stat::of("tls.cert", &files.cert)?;
        let key = Stat::of("tls.key", &files.key)?;
        let loaded = load_pair(&files, &provider)?;
        tracing::info!(
            cert = %files.cert.display(),
            key = %files.key.display(),
            names = %loaded.info.sans.join(", "),
            not_after = %loaded.info.not_after_text(),
            sha256 = %loaded.info.fingerprint,
            "TLS certificate loaded"
        );
        loaded.info.warn_if_expiring(&files.cert);
        Ok(ReloadingResolver {
            current: RwLock::new(Arc::new(loaded.key)),
            seen: Mutex::new(Seen {
                cert,
                key,
                cert_digest: loaded.cert_digest,
                key_digest: loaded.key_digest,
            }),
            files,
            provider,
        })
    }

    /// The files this resolver loads from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The certificate and key new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Poll the files once: when their size or modification time changed and their content
    /// differs from what is being served, load them and, if they are a valid matching pair, make
    /// them current. Returns whether a new certificate was swapped in.
    ///
    /// On error nothing changes (the old certificate keeps serving) and nothing is remembered,
    /// so the next call tries again: the usual cause is a renewal that writes the certificate
    /// and the key one after the other, which is a mismatch only until the second write lands.
    /// Blocking (file I/O): call it from a blocking context.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let cert = Stat::of("tls.cert", &self.files.cert)?;
        let key = Stat::of("tls.key", &self.files.key)?;
        if cert == seen.cert && key == seen.key {
            return Ok(false);
        }
        let loaded = load_pair(&self.files, &self.provider)?;
        let unchanged =
            loaded.cert_digest == seen.cert_digest && loaded.key_digest == seen.key_digest;
        *seen = Seen {
            cert,
            key,
            cert_digest: loaded.cert_digest,
            key_digest: loaded.key_digest,
        };
        if unchanged {
            // Touched or rewritten with the same bytes: nothing to swap.
            return Ok(false);
        }
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded.key);
        tracing::info!(
            cert = %self.files.cert.display(),
            names = %loaded.info.sans.join(", "),
            not_after = %loaded.info.not_after_text(),
            sha256 = %loaded.info.fingerprint,
            "new TLS certificate loaded; new connections use it"
        );
        loaded.info.warn_if_expiring(&self.files.cert);
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Poll `resolver`'s files every `interval` and swap in a new certificate when they change.
///
/// A failed reload is logged as a warning (once per distinct error, until a reload succeeds)
/// and retried on the next tick; the old certificate keeps serving meanwhile. The task holds
/// only a weak reference, so it ends by itself once the resolver (and so the server
/// configuration using it) is dropped. Must be called inside a tokio runtime.
pub fn spawn_reloader(resolver: Arc<ReloadingResolver>, interval: Duration) -> JoinHandle<()> {
    // `tokio::time::interval` panics on zero; a busy loop would be no better.
    let interval = interval.max(Duration::from_millis(10));
    let weak = Arc::downgrade(&resolver);
    drop(resolver);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the files were just loaded.
        ticker.tick().await;
        let mut last_error: Option<String> = None;
        loop {
            ticker.tick().await;
            let Some(resolver) = weak.upgrade() else {
                return;
            };
            let files = resolver.files.clone();
            match tokio::task::spawn_blocking(move || resolver.reload_if_changed()).await {
                Ok(Ok(_)) => last_error = None,
                Ok(Err(error)) => {
                    if last_error.as_deref() != Some(error.as_str()) {
                        tracing::warn!(
                            %error,
                            cert = %files.cert.display(),
                            "TLS certificate reload failed; still serving the previous \
                             certificate, will retry"
                        );
                    } else {
                        tracing::debug!(%error, "TLS certificate reload still failing");
                    }
                    last_error = Some(error);
                }
                Err(e) => tracing::warn!(error = %e, "TLS certificate reload task failed"),
            }
        }
    })
}

/// The rustls configuration for the listener: TLS 1.3 and 1.2, no client certificates, the
/// certificate chosen by `resolver`, and ALPN offering HTTP/2 before HTTP/1.1.
pub fn server_config(resolver: Arc<ReloadingResolver>) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(resolver.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections for the listener. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor").finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// An acceptor using `config` for every handshake.
    pub fn new(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
        }
    }

    /// Run the server side of a handshake on `stream`. Not bounded in time: the caller applies
    /// its own timeout.
    pub fn accept<IO>(&self, stream: IO) -> tokio_rustls::Accept<IO>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        self.inner.accept(stream)
    }
}

/// Load `files`, build the acceptor, and start polling the files every `reload_every` (zero
/// turns polling off). Must be called inside a tokio runtime.
pub fn load(
    files: &TlsFiles,
    reload_every: Duration,
) -> Result<(TlsAcceptor, Arc<ReloadingResolver>), String> {
    let resolver = Arc::new(ReloadingResolver::open(files.clone())?);
    let config = server_config(resolver.clone())?;
    if !reload_every.is_zero() {
        // Detached on purpose: it stops by itself when the resolver goes away.
        drop(spawn_reloader(resolver.clone(), reload_every));
    }
    Ok((TlsAcceptor::new(config), resolver))
}

mod der;
mod dev_cert;

pub use dev_cert::{SelfSigned, self_signed};

#[cfg(test)]
mod tests {
    use super::dev_cert::*;
    use super::*;

    #[test]
    fn reads_expiry_and_names_of_generated_certificates() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            San::Dns("registry.test".into()).to_rcgen().unwrap(),
            San::Ip("10.0.0.1".parse().unwrap()).to_rcgen().unwrap(),
            San::Ip("::1".parse().unwrap()).to_rcgen().unwrap(),
        ];
        // UTCTime range, then GeneralizedTime range (2050 and later).
        for not_after in [1_900_000_000u64, 2_600_000_000] {
            set_validity(&mut params, 1_000_000_000, not_after);
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(der::not_after(cert.der()), Some(not_after as i64));
            assert_eq!(
                der::subject_alt_names(cert.der()),
                ["registry.test", "10.0.0.1", "::1"]
            );
        }
    }

    #[test]
    fn foreign_ca_is_replaced_by_one_that_can_issue() {
        let dir = tempfile::tempdir().unwrap();
        // A valid CA pair, but not made by `self_signed`: its subject cannot be rebuilt.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let now = unix_now();
        set_validity(&mut params, now - DAY, now + CA_LIFETIME);
        let foreign = params.self_signed(&key).unwrap().pem();
        fs::write(dir.path().join("ca.crt"), &foreign).unwrap();
        fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();

        let set = self_signed(dir.path(), &[], "127.0.0.1:1".parse().unwrap()).unwrap();
        assert!(set.created);
        assert_ne!(fs::read_to_string(&set.ca_cert).unwrap(), foreign);
        let names = wanted_names(&[], "127.0.0.1:1".parse().unwrap()).unwrap();
        let paths = DevPaths::in_dir(dir.path());
        existing_leaf_is_good(&paths, &names, &provider(), now).unwrap();
    }

    #[test]
    fn wanted_names_cover_localhost_hosts_and_listen_address() {
        let hosts = vec![
            "Registry.Test".to_owned(),
            "192.0.2.7".to_owned(),
            "[2001:db8::1]".to_owned(),
            "localhost".to_owned(),
        ];
        let names = wanted_names(&hosts, "0.0.0.0:5000".parse().unwrap()).unwrap();
        let text: Vec<String> = names.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "localhost",
                "registry.test",
                "192.0.2.7",
                "2001:db8::1",
                "127.0.0.1",
                "::1"
            ]
        );
        let names = wanted_names(&[], "192.0.2.9:443".parse().unwrap()).unwrap();
        assert_eq!(names.last(), Some(&San::Ip("192.0.2.9".parse().unwrap())));
        assert!(wanted_names(&["bad name!".to_owned()], "[::]:1".parse().unwrap()).is_err());
    }
}
