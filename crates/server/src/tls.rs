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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
            .map_or_else(|| "unknown".to_owned(), der::format_unix_utc)
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

// ---------------------------------------------------------------------------------------------
// Development certificates
// ---------------------------------------------------------------------------------------------

/// The files of a development certificate set (see [`self_signed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The CA certificate clients must trust (`ca.crt`).
    pub ca_cert: PathBuf,
    /// The server's chain: its certificate, then the CA's (`server.crt`).
    pub cert: PathBuf,
    /// The server's private key (`server.key`, mode 0600).
    pub key: PathBuf,
    /// Whether this call issued a new server certificate (false: the existing one was reused).
    pub created: bool,
}

const DAY: u64 = 86_400;
const CA_LIFETIME: u64 = 3650 * DAY;
const LEAF_LIFETIME: u64 = 365 * DAY;
/// Re-issue a server certificate this long before it expires.
const RENEW_BEFORE: u64 = 30 * DAY;
/// Certificates start being valid a little in the past, for clients whose clocks lag.
const BACKDATE: u64 = 3600;
const ORGANIZATION: &str = "Stowage development";

/// A name a development certificate must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl San {
    fn parse(host: &str) -> Result<San, String> {
        let trimmed = host.trim();
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(trimmed);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let name = trimmed.trim_end_matches('.').to_ascii_lowercase();
        let san = San::Dns(name);
        // Validated the way a client will check it, so a name that can never match is refused
        // here rather than producing a certificate that fails every handshake.
        san.server_name()
            .map(|_| san)
            .map_err(|()| format!("TLS host {host:?} is neither a DNS name nor an IP address"))
    }

    /// The name to verify this SAN with. A wildcard is checked through an arbitrary label under
    /// it, since a wildcard itself is not a valid server name.
    fn server_name(&self) -> Result<ServerName<'static>, ()> {
        match self {
            San::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
            San::Dns(name) => {
                let probe = match name.strip_prefix("*.") {
                    Some(parent) => format!("stowage-wildcard-check.{parent}"),
                    None => name.clone(),
                };
                ServerName::try_from(probe).map_err(|_| ())
            }
        }
    }

    fn to_rcgen(&self) -> Result<SanType, String> {
        match self {
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Dns(name) => name
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| format!("TLS host {name:?}: {e}")),
        }
    }
}

/// `localhost`, every configured host, and the listen address (loopback v4 and v6 when it
/// listens on all addresses), without duplicates.
fn wanted_names(hosts: &[String], listen: SocketAddr) -> Result<Vec<San>, String> {
    let mut names = vec![San::Dns("localhost".to_owned())];
    for host in hosts {
        names.push(San::parse(host)?);
    }
    let ip = listen.ip();
    if ip.is_unspecified() {
        names.push(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        names.push(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    } else {
        names.push(San::Ip(ip));
    }
    let mut unique: Vec<San> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    Ok(unique)
}

struct DevPaths {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl DevPaths {
    fn in_dir(dir: &Path) -> DevPaths {
        DevPaths {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        }
    }
}

/// The development CA: its key, certificate, and expiry.
struct DevCa {
    key: KeyPair,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    not_after: u64,
}

impl DevCa {
    /// The CA's parameters. The subject is derived from the key alone, so the same issuer can be
    /// rebuilt from `ca.key` later (rcgen cannot parse `ca.crt` without extra dependencies) and
    /// its name still matches the certificate exactly, which chain building requires. The key id
    /// in the name keeps two development CAs apart in a trust store.
    fn params(key: &KeyPair, not_before: u64, not_after: u64) -> CertificateParams {
        let mut params = CertificateParams::default();
        let id = params.key_identifier(key);
        let short: String = id.iter().take(4).map(|b| format!("{b:02x}")).collect();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, ORGANIZATION);
        dn.push(
            DnType::CommonName,
            format!("Stowage development CA {short}"),
        );
        params.distinguished_name = dn;
        // Path length 0: it signs server certificates, never other CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, not_before, not_after);
        params
    }

    fn generate(now: u64) -> Result<DevCa, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot generate a CA key: {e}"))?;
        let not_after = now + CA_LIFETIME;
        let cert = DevCa::params(&key, now - BACKDATE, not_after)
            .self_signed(&key)
            .map_err(|e| format!("cannot create the development CA: {e}"))?;
        Ok(DevCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
            not_after,
        })
    }

    /// The CA on disk, if it is complete, consistent and has long enough to live.
    fn open(paths: &DevPaths, provider: &CryptoProvider, now: u64) -> Result<DevCa, String> {
        let cert_pem = read_file("CA certificate", &paths.ca_cert)?;
        let key_pem = read_file("CA key", &paths.ca_key)?;
        let cert_der = parse_chain("CA certificate", &paths.ca_cert, &cert_pem)?.remove(0);
        let key_der = parse_key("CA key", &paths.ca_key, &key_pem)?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| format!("CA key {}: {e}", paths.ca_key.display()))?;
        check_keys_match(
            &CertifiedKey::new(vec![cert_der.clone()], signing),
            &TlsFiles {
                cert: paths.ca_cert.clone(),
                key: paths.ca_key.clone(),
            },
        )?;
        let key_text = String::from_utf8(key_pem)
            .map_err(|_| format!("CA key {}: not text", paths.ca_key.display()))?;
        let key = KeyPair::from_pem(&key_text)
            .map_err(|e| format!("CA key {}: {e}", paths.ca_key.display()))?;
        let not_after = der::not_after(&cert_der)
            .ok_or_else(|| format!("CA certificate {}: unreadable", paths.ca_cert.display()))?;
        // A server certificate is cut short at the CA's expiry, so a CA that would force another
        // renewal within the renewal window is replaced instead.
        if not_after <= (now + 2 * RENEW_BEFORE) as i64 {
            return Err(format!(
                "CA certificate {} expires {}",
                paths.ca_cert.display(),
                der::format_unix_utc(not_after)
            ));
        }
        Ok(DevCa {
            key,
            cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
            cert_der,
            not_after: not_after as u64,
        })
    }

    fn verifier(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<WebPkiServerVerifier>, String> {
        verifier_for(self.cert_der.clone(), provider)
    }
}

fn verifier_for(
    ca: CertificateDer<'static>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| format!("CA certificate is not usable as a trust anchor: {e}"))?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("cannot build a certificate verifier: {e}"))
}

fn set_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
}

/// Check a chain the way a client trusting only the development CA would, at time `at`, for
/// every wanted name. This is what decides reuse: it reads the real certificate, so a hand-edited
/// or foreign file can never be mistaken for a good one.
fn verify_leaf(
    verifier: &WebPkiServerVerifier,
    chain: &[CertificateDer<'static>],
    names: &[San],
    at: u64,
) -> Result<(), String> {
    let at = UnixTime::since_unix_epoch(Duration::from_secs(at));
    for name in names {
        let server_name = name
            .server_name()
            .map_err(|()| format!("{name} is not a valid server name"))?;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], at)
            .map_err(|e| format!("not valid for {name}: {e}"))?;
    }
    Ok(())
}

/// Whether the existing server certificate can be kept: present, matching its key, issued by
/// the CA in `ca.crt`, and valid for every wanted name for at least [`RENEW_BEFORE`].
fn existing_leaf_is_good(
    paths: &DevPaths,
    names: &[San],
    provider: &Arc<CryptoProvider>,
    now: u64,
) -> Result<(), String> {
    let files = TlsFiles {
        cert: paths.cert.clone(),
        key: paths.key.clone(),
    };
    let loaded = load_pair(&files, provider)?;
    let ca_pem = read_file("CA certificate", &paths.ca_cert)?;
    let ca = parse_chain("CA certificate", &paths.ca_cert, &ca_pem)?.remove(0);
    verify_leaf(
        &*verifier_for(ca, provider)?,
        &loaded.key.cert,
        names,
        now + RENEW_BEFORE,
    )
}

/// A freshly issued server certificate, ready to be written.
struct Issued {
    /// The server certificate, then the CA's.
    chain_pem: String,
    key_pem: String,
}

/// Issue a server certificate for `names` signed by `ca`, and check it the way a client
/// trusting only `ca` would before anything is written.
fn issue_leaf(
    ca: &DevCa,
    names: &[San],
    now: u64,
    provider: &Arc<CryptoProvider>,
) -> Result<Issued, String> {
    let key = KeyPair::generate().map_err(|e| format!("cannot generate a server key: {e}"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, names[0].to_string());
    params.distinguished_name = dn;
    params.subject_alt_names = names.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    // Explicitly not a CA: webpki-based clients refuse a CA certificate as a server's own.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Go's verifier uses the authority key id to find the issuer.
    params.use_authority_key_identifier_extension = true;
    set_validity(
        &mut params,
        now - BACKDATE,
        (now + LEAF_LIFETIME).min(ca.not_after),
    );
    // Only the subject, key id method and key usages of these parameters matter to the
    // issuer, and they are rebuilt exactly as when the CA was made.
    let issuer = Issuer::new(DevCa::params(&ca.key, now, ca.not_after), &ca.key);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("cannot sign the server certificate: {e}"))?;
    let chain = [cert.der().clone(), ca.cert_der.clone()];
    verify_leaf(&*ca.verifier(provider)?, &chain, names, now)
        .map_err(|why| format!("the new development certificate is unusable: {why}"))?;
    Ok(Issued {
        chain_pem: format!("{}{}", cert.pem(), ca.cert_pem),
        key_pem: key.serialize_pem(),
    })
}

/// Make sure `dir` holds a development CA and a server certificate signed by it that covers
/// `localhost`, every entry of `hosts` (IP literals become IP names) and the listen address.
///
/// Files: `ca.crt` (what clients trust: `podman --tls-verify` with it in `/etc/containers/certs.d`,
/// `curl --cacert`, ...), `ca.key` (0600), `server.crt` (server certificate then CA) and
/// `server.key` (0600). A CA plus a separate server certificate, because rustls/webpki clients
/// refuse a CA certificate used as a server's own and Go clients want a CA file to trust.
///
/// Existing files are reused when the server certificate verifies against `ca.crt` for every
/// wanted name for at least 30 more days (`created == false`); otherwise a new server
/// certificate is issued, by the existing CA when it is intact and not about to expire (so
/// clients keep trusting it), else by a new CA. Anyone holding `ca.key` can impersonate any
/// site to clients that trust `ca.crt`: it is for development only.
pub fn self_signed(dir: &Path, hosts: &[String], listen: SocketAddr) -> Result<SelfSigned, String> {
    let names = wanted_names(hosts, listen)?;
    let paths = DevPaths::in_dir(dir);
    let result = |created| SelfSigned {
        ca_cert: paths.ca_cert.clone(),
        cert: paths.cert.clone(),
        key: paths.key.clone(),
        created,
    };
    create_private_dir(dir)?;
    let provider = provider();
    let now = unix_now();

    let reason = match existing_leaf_is_good(&paths, &names, &provider, now) {
        Ok(()) => return Ok(result(false)),
        Err(reason) => reason,
    };
    let listed: Vec<String> = names.iter().map(ToString::to_string).collect();
    tracing::info!(
        dir = %dir.display(),
        names = %listed.join(", "),
        %reason,
        "issuing a development TLS certificate"
    );

    let (mut ca, mut ca_is_new) = match DevCa::open(&paths, &provider, now) {
        Ok(ca) => (ca, false),
        Err(why) => {
            if paths.ca_cert.exists() {
                tracing::warn!(
                    reason = %why,
                    ca = %paths.ca_cert.display(),
                    "replacing the development CA; clients must trust the new ca.crt"
                );
            }
            (DevCa::generate(now)?, true)
        }
    };
    let issued = match issue_leaf(&ca, &names, now, &provider) {
        Ok(issued) => issued,
        // A `ca.crt` that was not made here has a subject the rebuilt issuer cannot match, so
        // its certificates fail verification: start over with a CA of our own.
        Err(why) if !ca_is_new => {
            tracing::warn!(
                reason = %why,
                ca = %paths.ca_cert.display(),
                "the existing development CA cannot issue a usable certificate; replacing it"
            );
            ca = DevCa::generate(now)?;
            ca_is_new = true;
            issue_leaf(&ca, &names, now, &provider)?
        }
        Err(why) => return Err(why),
    };

    if ca_is_new {
        write_atomic(&paths.ca_key, ca.key.serialize_pem().as_bytes(), true)?;
        write_atomic(&paths.ca_cert, ca.cert_pem.as_bytes(), false)?;
        tracing::info!(
            ca = %paths.ca_cert.display(),
            "created a development CA; clients must trust this file"
        );
    }
    // Key first: a server polling these files sees at worst a new key with the old
    // certificate, which fails the match check and is retried, never a half-written file.
    write_atomic(&paths.key, issued.key_pem.as_bytes(), true)?;
    write_atomic(&paths.cert, issued.chain_pem.as_bytes(), false)?;
    Ok(result(true))
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        // Only directories created here get this mode; an existing one is left as configured.
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("cannot create TLS directory {}: {e}", dir.display()))
}

/// Write `data` to `path` through a temporary file and a rename, so a reader (including this
/// server's own reloader) never sees a partly written file. `private` files get mode 0600 from
/// the moment they exist.
fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    // `create_new` refuses to follow a symlink left at the temporary name.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(data)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        return Err(fail(e));
    }
    if let Some(parent) = path.parent() {
        // Best effort: makes the rename itself durable on filesystems that need it.
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Just enough DER reading to show a certificate's expiry and names in logs and to check the
/// development CA's expiry (rcgen cannot parse certificates without an extra dependency, and
/// webpki does not expose these fields). Anything unexpected yields `None`/nothing: these
/// values inform, they never decide whether a certificate is accepted.
mod der {
    /// One TLV: (tag, contents, rest of input).
    fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (t, contents, rest) = next(input)?;
        (t == tag).then_some((contents, rest))
    }

    const SEQUENCE: u8 = 0x30;

    /// The TBSCertificate fields after the issuer: validity onwards.
    fn from_validity(cert: &[u8]) -> Option<&[u8]> {
        let (cert, _) = expect(cert, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        // Optional explicit version [0].
        let tbs = match next(tbs)? {
            (0xa0, _, rest) => rest,
            _ => tbs,
        };
        let (_, tbs) = expect(tbs, 0x02)?; // serialNumber
        let (_, tbs) = expect(tbs, SEQUENCE)?; // signature algorithm
        let (_, tbs) = expect(tbs, SEQUENCE)?; // issuer
        Some(tbs)
    }

    /// The certificate's notAfter, in seconds since the Unix epoch.
    pub(super) fn not_after(cert: &[u8]) -> Option<i64> {
        let (validity, _) = expect(from_validity(cert)?, SEQUENCE)?;
        let (_, _, rest) = next(validity)?; // notBefore
        let (tag, time, _) = next(rest)?;
        parse_time(tag, time)
    }

    /// The DNS names and IP addresses of the subjectAltName extension, as text.
    pub(super) fn subject_alt_names(cert: &[u8]) -> Vec<String> {
        sans(cert).unwrap_or_default()
    }

    fn sans(cert: &[u8]) -> Option<Vec<String>> {
        let (_, mut rest) = expect(from_validity(cert)?, SEQUENCE)?; // validity
        let (_, r) = expect(rest, SEQUENCE)?; // subject
        let (_, r) = expect(r, SEQUENCE)?; // subjectPublicKeyInfo
        rest = r;
        // Skip the optional unique ids [1] and [2]; extensions are [3].
        let mut extensions = None;
        while let Some((tag, contents, r)) = next(rest) {
            if tag == 0xa3 {
                extensions = Some(contents);
                break;
            }
            rest = r;
        }
        let (mut list, _) = expect(extensions?, SEQUENCE)?;
        const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
        while let Some((ext, r)) = expect(list, SEQUENCE) {
            list = r;
            let (oid, mut fields) = expect(ext, 0x06)?;
            if oid != SAN_OID {
                continue;
            }
            if let Some((0x01, _, r)) = next(fields) {
                fields = r; // critical flag
            }
            let (value, _) = expect(fields, 0x04)?;
            let (mut names, _) = expect(value, SEQUENCE)?;
            let mut out = Vec::new();
            while let Some((tag, contents, r)) = next(names) {
                names = r;
                match (tag, contents.len()) {
                    (0x82, _) => out.push(String::from_utf8_lossy(contents).into_owned()),
                    (0x87, 4) => {
                        let octets: [u8; 4] = contents.try_into().ok()?;
                        out.push(std::net::Ipv4Addr::from(octets).to_string());
                    }
                    (0x87, 16) => {
                        let octets: [u8; 16] = contents.try_into().ok()?;
                        out.push(std::net::Ipv6Addr::from(octets).to_string());
                    }
                    _ => {}
                }
            }
            return Some(out);
        }
        Some(Vec::new())
    }

    fn digits(s: &[u8]) -> Option<i64> {
        s.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    }

    /// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), the only forms DER allows.
    fn parse_time(tag: u8, time: &[u8]) -> Option<i64> {
        let (year, rest) = match (tag, time.len()) {
            (0x17, 13) => {
                let yy = digits(&time[..2])?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &time[2..])
            }
            (0x18, 15) => (digits(&time[..4])?, &time[4..]),
            _ => return None,
        };
        if rest[10] != b'Z' {
            return None;
        }
        let month = digits(&rest[0..2])?;
        let day = digits(&rest[2..4])?;
        let hour = digits(&rest[4..6])?;
        let minute = digits(&rest[6..8])?;
        let second = digits(&rest[8..10])?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(days * 86_400 + hour * 3600 + minute * 60 + second)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The inverse of [`days_from_civil`].
    pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }

    /// `2026-05-01T12:00:00Z`.
    pub(super) fn format_unix_utc(secs: i64) -> String {
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(der::days_from_civil(1970, 1, 1), 0);
        assert_eq!(der::days_from_civil(2000, 3, 1), 11_017);
        for days in [-1000, 0, 59, 60, 11_016, 11_017, 19_782, 50_000] {
            let (y, m, d) = der::civil_from_days(days);
            assert_eq!(der::days_from_civil(y, m, d), days);
        }
        assert_eq!(der::format_unix_utc(951_782_400), "2000-02-29T00:00:00Z");
    }

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
