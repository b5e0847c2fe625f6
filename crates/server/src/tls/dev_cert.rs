//! Development certificates for `--tls-self-signed`: a small CA and a server certificate
//! signed by it, kept under the data directory and re-issued only when they no longer cover the
//! wanted names or are close to expiry.

use super::*;

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

pub(super) const DAY: u64 = 86_400;
pub(super) const CA_LIFETIME: u64 = 3650 * DAY;
const LEAF_LIFETIME: u64 = 365 * DAY;
/// Re-issue a server certificate this long before it expires.
const RENEW_BEFORE: u64 = 30 * DAY;
/// Certificates start being valid a little in the past, for clients whose clocks lag.
const BACKDATE: u64 = 3600;
const ORGANIZATION: &str = "Stowage development";

/// A name a development certificate must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum San {
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

    pub(super) fn to_rcgen(&self) -> Result<SanType, String> {
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
pub(super) fn wanted_names(hosts: &[String], listen: SocketAddr) -> Result<Vec<San>, String> {
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

pub(super) struct DevPaths {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl DevPaths {
    pub(super) fn in_dir(dir: &Path) -> DevPaths {
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
                stowage_oci::time::rfc3339(not_after)
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

pub(super) fn set_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) {
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
pub(super) fn existing_leaf_is_good(
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
