//! Interop of skopeo, podman and containerd's `ctr` with an HTTPS registry that requires
//! credentials: `stowage serve --auth --tls-self-signed --public 'library/**'`, with accounts
//! made by `stowage user` and `stowage token` on the store. Every client verifies the server's
//! certificate against the development CA the server prints (never `--tls-verify=false`,
//! `--plain-http` or `--skip-verify`), and one check per client shows that without that CA it
//! refuses the server. Each scenario runs once per client (`<scenario>::skopeo`, `::podman`,
//! `::ctr`), each on a server of its own: an administrator pushes and pulls with digests
//! preserved; a pull-only token pulls but cannot push; a token for `team/**` reaches nothing in
//! `other/**`; anonymous clients pull a public repository and nothing else (a refused push
//! reports the registry's 401/403, for ctr never a pipe error); a token revoked
//! while the server runs stops working within seconds; taking push away from a user takes it
//! away from that user's token too. The certificate reload under a connected client is in
//! `interop_tls_reload.rs`. Missing tools fail the tests: CI installs them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stowage_testkit::containerd::Containerd;
use stowage_testkit::image::{self, ImageSpec, LayoutInfo, sha256_digest};
use stowage_testkit::podman::Podman;
use stowage_testkit::server::Server;
use stowage_testkit::skopeo::Skopeo;
use stowage_testkit::tls::{Access, Trust};
use stowage_testkit::tools::{
    ADMIN, DEV, Output, add_admin_and_dev, create_store_token, final_error, is_certificate_error,
};

const BIN: &str = env!("CARGO_BIN_EXE_stowage");
/// How long a change made on the store may take to reach the running server (it polls the
/// store every second by default).
const PROPAGATION: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// The registry under test, its accounts and the test image
// ---------------------------------------------------------------------------------------------

/// Run the `stowage` CLI on the store in `data`, with `stdin` as its standard input; panics
/// unless it succeeds.
fn stowage_cli(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    stowage_testkit::tools::stowage_on_store(Path::new(BIN), data, args, stdin)
}

/// The test image: two layers, linux/amd64.
fn image_spec() -> ImageSpec {
    ImageSpec::new("auth").with_layers(2)
}

/// One running registry with its accounts, trust files and a test image (an OCI layout).
struct Env {
    server: Server,
    data: PathBuf,
    /// Trusts the server's development CA.
    trust: Trust,
    /// Trusts the system roots only.
    untrusted: Trust,
    /// `admin:PASSWORD`
    admin_creds: String,
    /// `dev` (granted `team/**:pull` and `team/**:push`) with a token scoped
    /// `repository:team/**:pull`: `dev:TOKEN`.
    dev_pull_token: String,
    /// `dev` with a token scoped `repository:team/**:pull,push`: `dev:TOKEN`.
    dev_team_token: String,
    /// `admin` with a token scoped `repository:team/**:pull,push`: `admin:TOKEN`.
    admin_team_token: String,
    /// Seeds the registry and reads what it serves, as the administrator.
    sk: Skopeo,
    layout: PathBuf,
    info: LayoutInfo,
    _tmp: tempfile::TempDir,
}

impl Env {
    /// Make the accounts on a fresh store, then start `serve --auth --tls-self-signed --public
    /// 'library/**'` on it (so everything made here is in force from the first request).
    fn start() -> Env {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let bin = Path::new(BIN);
        add_admin_and_dev(bin, &data);
        let token = |user: &str, scope: &str| {
            format!("{user}:{}", create_store_token(bin, &data, user, scope))
        };
        let dev_pull_token = token(DEV.0, "repository:team/**:pull");
        let dev_team_token = token(DEV.0, "repository:team/**:pull,push");
        let admin_team_token = token(ADMIN.0, "repository:team/**:pull,push");

        let server = Server::spawn_with_data(
            Path::new(BIN),
            &data,
            &["--auth", "--tls-self-signed", "--public", "library/**"],
        );
        assert!(
            server.url.starts_with("https://"),
            "not an HTTPS listener: {}",
            server.url
        );
        let ca = server.ca_cert();
        assert_eq!(ca, data.join("tls").join("ca.crt"));
        let trust = Trust::ca(&server.addr, &ca);
        let untrusted = Trust::system_only(&server.addr);
        let layout = tmp.path().join("layout");
        let info = image::write_oci_layout(&layout, "v1", &image_spec());
        Env {
            server,
            data,
            trust,
            untrusted,
            admin_creds: format!("{}:{}", ADMIN.0, ADMIN.1),
            dev_pull_token,
            dev_team_token,
            admin_team_token,
            sk: Skopeo::new(),
            layout,
            info,
            _tmp: tmp,
        }
    }

    /// `ADDR/repo:tag` (or `ADDR/repo@digest`).
    fn reference(&self, repo_ref: &str) -> String {
        format!("{}/{repo_ref}", self.server.addr)
    }

    fn as_admin(&self) -> Access<'_> {
        Access::new(&self.trust, Some(&self.admin_creds))
    }

    fn with<'a>(&'a self, creds: &'a str) -> Access<'a> {
        Access::new(&self.trust, Some(creds))
    }

    fn cli(&self, args: &[&str]) -> Output {
        stowage_cli(&self.data, args, None)
    }

    /// Push the test image to `repo:tag` as the administrator (skopeo, digests preserved).
    fn seed(&self, repo_tag: &str) {
        self.sk
            .try_copy_verified(
                &format!("oci:{}:v1", self.layout.display()),
                None,
                &format!("docker://{}", self.reference(repo_tag)),
                Some(self.as_admin()),
                &["--preserve-digests"],
            )
            .ok();
    }

    /// The digest of the manifest the registry serves for `repo_ref`, read as the administrator.
    fn served_digest(&self, repo_ref: &str) -> String {
        let raw = self.sk.inspect_raw_verified(
            &format!("docker://{}", self.reference(repo_ref)),
            self.as_admin(),
        );
        sha256_digest(&raw)
    }

    /// Whether the registry has a manifest for `repo_ref` (asked as the administrator).
    fn exists(&self, repo_ref: &str) -> bool {
        let out = self.sk.try_inspect_verified(
            &format!("docker://{}", self.reference(repo_ref)),
            self.as_admin(),
            &["--raw"],
        );
        if !out.success() {
            let e = final_error(&out);
            assert!(
                e.contains("manifest unknown") || e.contains("not found"),
                "{}",
                out.describe("expected `manifest unknown`")
            );
        }
        out.success()
    }

    /// The id of the token whose secret is in `creds` (`user:SECRET`), from `token list`.
    fn token_id(&self, creds: &str) -> String {
        let secret = creds.split_once(':').expect("user:secret").1;
        let listed = self.cli(&["token", "list"]).stdout;
        listed
            .lines()
            .filter_map(|l| l.split('\t').next())
            .find(|id| !id.is_empty() && secret.contains(&format!("_{id}_")))
            .unwrap_or_else(|| panic!("token of {creds:?} not in `token list`:\n{listed}"))
            .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// The clients, behind one interface
// ---------------------------------------------------------------------------------------------

/// A registry client under test. Failures come back as the client's full output.
trait Client {
    /// Push the test image to `dst` (`ADDR/repo:tag`); Ok(the manifest digest it pushed).
    fn push(&mut self, dst: &str, access: Access<'_>) -> Result<String, Output>;
    /// Pull `reference`; Ok(the manifest digests the client recorded for it).
    fn pull(&mut self, reference: &str, access: Access<'_>) -> Result<Vec<String>, Output>;
    /// What the client says, besides the usual words, when the registry refuses its manifest
    /// PUT with 401 after the blobs went up (or were already there).
    fn manifest_refusal_words(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether a push sends the source manifest byte for byte (podman recompresses layers, so
    /// its manifest differs from the layout's; what it pushed must still be what is served).
    fn byte_exact(&self) -> bool;
}

#[derive(Clone, Copy)]
enum Kind {
    Skopeo,
    Podman,
    Ctr,
}

fn client(kind: Kind, env: &Env) -> Box<dyn Client> {
    match kind {
        Kind::Skopeo => Box::new(SkopeoClient::new(env)),
        Kind::Podman => Box::new(PodmanClient::new(env)),
        Kind::Ctr => Box::new(CtrClient::new(env)),
    }
}

fn read_digest_file(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("digest file {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// skopeo: pushes the OCI layout (`--preserve-digests`), pulls into fresh OCI layouts.
struct SkopeoClient {
    sk: Skopeo,
    src: String,
    tmp: tempfile::TempDir,
    n: usize,
}

impl SkopeoClient {
    fn new(env: &Env) -> SkopeoClient {
        SkopeoClient {
            sk: Skopeo::new(),
            src: format!("oci:{}:v1", env.layout.display()),
            tmp: tempfile::tempdir().expect("temp dir"),
            n: 0,
        }
    }
}

impl Client for SkopeoClient {
    fn push(&mut self, dst: &str, access: Access<'_>) -> Result<String, Output> {
        self.n += 1;
        let digest_file = self.tmp.path().join(format!("digest-{}", self.n));
        let out = self.sk.try_copy_verified(
            &self.src,
            None,
            &format!("docker://{dst}"),
            Some(access),
            &[
                "--preserve-digests",
                "--digestfile",
                &digest_file.display().to_string(),
            ],
        );
        if !out.success() {
            return Err(out);
        }
        Ok(read_digest_file(&digest_file))
    }

    fn pull(&mut self, reference: &str, access: Access<'_>) -> Result<Vec<String>, Output> {
        self.n += 1;
        let dir = self.tmp.path().join(format!("pull-{}", self.n));
        let out = self.sk.try_copy_verified(
            &format!("docker://{reference}"),
            Some(access),
            &format!("oci:{}:pulled", dir.display()),
            None,
            &["--preserve-digests"],
        );
        if !out.success() {
            return Err(out);
        }
        Ok(image::layout_ref_digest(&dir, "pulled")
            .into_iter()
            .collect())
    }

    fn byte_exact(&self) -> bool {
        true
    }
}

/// podman: the image is pulled from the OCI layout into its (vfs) store and pushed from there
/// with `--creds`; pulls log in with `podman login` (with the CA) first and log out after.
struct PodmanClient {
    pm: Podman,
    image_id: String,
    tmp: tempfile::TempDir,
    n: usize,
}

impl PodmanClient {
    fn new(env: &Env) -> PodmanClient {
        let pm = Podman::new();
        // podman names an image pulled from `oci:PATH` after PATH, and image names must be
        // lowercase: temp dir names are not, so load a copy of the layout from a lowercase path.
        let tmp = tempfile::Builder::new()
            .prefix(&format!(
                "podman-src-{}-{}",
                std::process::id(),
                PODMAN_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ))
            .rand_bytes(0)
            .tempdir_in(lowercase_tmp())
            .expect("temp dir");
        let layout = tmp.path().join("layout");
        let info = image::write_oci_layout(&layout, "v1", &image_spec());
        assert_eq!(info.manifest_digest, env.info.manifest_digest);
        pm.try_pull_verified(&format!("oci:{}:v1", layout.display()), None, &[])
            .ok();
        let image_id = env.info.config_digests[0]
            .trim_start_matches("sha256:")
            .to_string();
        assert_eq!(pm.image_format(&image_id, "{{.Id}}"), image_id);
        PodmanClient {
            pm,
            image_id,
            tmp,
            n: 0,
        }
    }
}

/// Numbers the lowercase temp dirs of [`PodmanClient`] within this process.
static PODMAN_DIRS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A directory for temp dirs whose whole path is lowercase.
fn lowercase_tmp() -> PathBuf {
    let dir = std::env::temp_dir().join("stowage-interop-auth");
    std::fs::create_dir_all(&dir).expect("temp dir");
    assert_eq!(
        dir.display().to_string(),
        dir.display().to_string().to_lowercase(),
        "TMPDIR must be lowercase for podman"
    );
    dir
}

/// `ADDR/repo` of `ADDR/repo:tag` or `ADDR/repo@digest`.
fn repository_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

impl Client for PodmanClient {
    fn push(&mut self, dst: &str, access: Access<'_>) -> Result<String, Output> {
        self.n += 1;
        let digest_file = self.tmp.path().join(format!("digest-{}", self.n));
        let out = self.pm.try_push_verified(
            &self.image_id,
            dst,
            access,
            &["--digestfile", &digest_file.display().to_string()],
        );
        if !out.success() {
            return Err(out);
        }
        Ok(read_digest_file(&digest_file))
    }

    fn pull(&mut self, reference: &str, access: Access<'_>) -> Result<Vec<String>, Output> {
        let host = reference.split('/').next().expect("host");
        if let Some(c) = access.creds {
            let (user, password) = c.split_once(':').expect("user:password");
            let login = self.pm.try_login(host, access.trust, user, password);
            if !login.success() {
                return Err(login);
            }
        }
        let out = self
            .pm
            .try_pull_verified(reference, Some(Access::new(access.trust, None)), &[]);
        self.pm.logout_all();
        if !out.success() {
            return Err(out);
        }
        let json = self.pm.image_format(reference, "{{json .RepoDigests}}");
        let repo_digests: Vec<String> = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("RepoDigests of {reference} is not JSON ({e}): {json}"));
        let repo = repository_of(reference);
        Ok(repo_digests
            .iter()
            .filter_map(|d| d.split_once('@'))
            .filter(|(r, _)| *r == repo)
            .map(|(_, d)| d.to_string())
            .collect())
    }

    fn byte_exact(&self) -> bool {
        false
    }
}

/// ctr: the OCI layout is imported into a private containerd and pushed from there byte-exact;
/// pulls unpack with the native snapshotter. TLS and credentials: `--hosts-dir`, `--user`.
struct CtrClient {
    ctrd: Containerd,
    src: String,
}

impl CtrClient {
    fn new(env: &Env) -> CtrClient {
        let ctrd = Containerd::start();
        ctrd.import_layout(&env.layout, "import.local/interop/src");
        let src = "import.local/interop/src:v1".to_string();
        assert_eq!(
            ctrd.image_digest(&src).as_deref(),
            Some(env.info.manifest_digest.as_str())
        );
        CtrClient { ctrd, src }
    }
}

impl Client for CtrClient {
    fn push(&mut self, dst: &str, access: Access<'_>) -> Result<String, Output> {
        let out = self.ctrd.try_push_verified(dst, &self.src, access, &[]);
        if !out.success() {
            return Err(out);
        }
        Ok(self.ctrd.image_digest(&self.src).expect("source image"))
    }

    fn pull(&mut self, reference: &str, access: Access<'_>) -> Result<Vec<String>, Output> {
        let out = self.ctrd.try_pull_verified(reference, access, &[]);
        if !out.success() {
            return Err(out);
        }
        Ok(self.ctrd.image_digest(reference).into_iter().collect())
    }

    fn byte_exact(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// What a failure must look like
// ---------------------------------------------------------------------------------------------

/// Words that mark a refusal by the registry or its token service.
const AUTH_WORDS: &[&str] = &[
    "denied",
    "unauthorized",
    "forbidden",
    "insufficient_scope",
    "authentication required",
    "invalid username/password",
    "401",
    "403",
];

#[track_caller]
fn expect_refused<T: std::fmt::Debug>(r: Result<T, Output>, what: &str) -> Output {
    expect_refused_or(r, what, &[])
}

/// [`expect_refused`], also accepting a client's own words for a refusal (`also`).
#[track_caller]
fn expect_refused_or<T: std::fmt::Debug>(
    r: Result<T, Output>,
    what: &str,
    also: &[&str],
) -> Output {
    match r {
        Ok(v) => panic!("{what}: should have been refused, but succeeded ({v:?})"),
        Err(out) => {
            let e = final_error(&out);
            assert!(
                AUTH_WORDS.iter().chain(also).any(|w| e.contains(w)) && !is_certificate_error(&e),
                "{}",
                out.describe(&format!("{what}: not an authorization error ({e})"))
            );
            out
        }
    }
}

#[track_caller]
fn expect_ok<T>(r: Result<T, Output>, what: &str) -> T {
    r.unwrap_or_else(|out| panic!("{}", out.describe(what)))
}

/// Retry `attempt` until it fails (a change on the store reaching the server), at most
/// [`PROPAGATION`] after `since`; returns the failure and how long it took.
fn eventually_fails<T>(
    what: &str,
    since: Instant,
    mut attempt: impl FnMut() -> Result<T, Output>,
) -> (Output, Duration) {
    loop {
        match attempt() {
            Err(out) => return (out, since.elapsed()),
            Ok(_) if since.elapsed() > PROPAGATION => {
                panic!("{what}: still allowed {PROPAGATION:?} after the change")
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// Without the CA the client refuses the server; with it, the administrator pushes and pulls
/// (by tag and by digest) and the digests the client pushed and pulled are what is served.
fn admin_push_pull(env: &Env, c: &mut dyn Client) {
    let dst = env.reference("team/app:v1");
    let refused = c
        .push(&dst, Access::new(&env.untrusted, Some(&env.admin_creds)))
        .expect_err("a push trusting only the system roots must fail");
    let e = final_error(&refused);
    assert!(
        is_certificate_error(&e),
        "{}",
        refused.describe(&format!("expected a certificate error ({e})"))
    );
    assert!(!env.exists("team/app:v1"));

    let pushed = expect_ok(c.push(&dst, env.as_admin()), "admin push");
    let served = env.served_digest("team/app:v1");
    assert_eq!(
        pushed, served,
        "the digest pushed must be the digest served"
    );
    if c.byte_exact() {
        assert_eq!(served, env.info.manifest_digest, "the manifest changed");
    }
    let pulled = expect_ok(c.pull(&dst, env.as_admin()), "admin pull by tag");
    assert!(
        pulled.contains(&served),
        "pulled {pulled:?}, served {served}"
    );
    let by_digest = env.reference(&format!("team/app@{served}"));
    let pulled = expect_ok(c.pull(&by_digest, env.as_admin()), "admin pull by digest");
    assert!(
        pulled.contains(&served),
        "pulled {pulled:?}, served {served}"
    );
}

/// A token scoped `repository:team/**:pull` pulls, and cannot push (new or existing repository).
fn pull_only_token(env: &Env, c: &mut dyn Client) {
    env.seed("team/app:v1");
    let served = env.served_digest("team/app:v1");
    let access = env.with(&env.dev_pull_token);
    let pulled = expect_ok(
        c.pull(&env.reference("team/app:v1"), access),
        "pull with a pull-only token",
    );
    assert!(
        pulled.contains(&served),
        "pulled {pulled:?}, served {served}"
    );
    for dst in ["team/app:v2", "team/new:v1"] {
        expect_refused(
            c.push(&env.reference(dst), access),
            &format!("push to {dst} with a pull-only token"),
        );
        assert!(!env.exists(dst), "{dst} was written");
    }
}

/// A token scoped `repository:team/**:pull,push` (an administrator's, so the limit is the
/// token's own) works in `team/**` and can neither pull nor push in `other/**`.
fn team_token_stays_in_team(env: &Env, c: &mut dyn Client) {
    env.seed("other/app:v1");
    let access = env.with(&env.admin_team_token);
    let pushed = expect_ok(
        c.push(&env.reference("team/mine:v1"), access),
        "push to team/** with a team/** token",
    );
    assert_eq!(pushed, env.served_digest("team/mine:v1"));
    expect_ok(
        c.pull(&env.reference("team/mine:v1"), access),
        "pull from team/** with a team/** token",
    );
    expect_refused(
        c.pull(&env.reference("other/app:v1"), access),
        "pull from other/** with a team/** token",
    );
    for dst in ["other/app:v2", "other/new:v1"] {
        expect_refused(
            c.push(&env.reference(dst), access),
            &format!("push to {dst} with a team/** token"),
        );
        assert!(!env.exists(dst), "{dst} was written");
    }
}

/// Anonymous clients pull from `library/**` (public), and neither pull private repositories nor
/// push to public ones.
fn anonymous_pulls_public_only(env: &Env, c: &mut dyn Client) {
    env.seed("library/pub:v1");
    env.seed("other/app:v1");
    let served = env.served_digest("library/pub:v1");
    let anonymous = Access::new(&env.trust, None);
    let pulled = expect_ok(
        c.pull(&env.reference("library/pub:v1"), anonymous),
        "anonymous pull of a public repository",
    );
    assert!(
        pulled.contains(&served),
        "pulled {pulled:?}, served {served}"
    );
    expect_refused(
        c.pull(&env.reference("other/app:v1"), anonymous),
        "anonymous pull of a private repository",
    );
    // The blobs are already in library/pub (and readable by anyone): only the manifest PUT
    // is refused.
    let words = c.manifest_refusal_words();
    expect_refused_or(
        c.push(&env.reference("library/pub:v2"), anonymous),
        "anonymous push to a public repository",
        words,
    );
    assert!(!env.exists("library/pub:v2"), "library/pub:v2 was written");
}

/// A token revoked (on the store) while the server runs stops working within seconds.
fn revoked_token_fails(env: &Env, c: &mut dyn Client) {
    env.seed("team/app:v1");
    let access = env.with(&env.dev_team_token);
    let reference = env.reference("team/app:v1");
    expect_ok(c.pull(&reference, access), "pull before the revocation");
    expect_ok(
        c.push(&env.reference("team/before:v1"), access),
        "push before the revocation",
    );

    let id = env.token_id(&env.dev_team_token);
    env.cli(&["token", "revoke", &id]);
    let (refused, took) = eventually_fails("pull with a revoked token", Instant::now(), || {
        c.pull(&reference, access)
    });
    expect_refused(Err::<(), _>(refused), "pull with a revoked token");
    eprintln!("revoked token refused after {took:?}");
    expect_refused(
        c.push(&env.reference("team/after:v1"), access),
        "push with a revoked token",
    );
    assert!(!env.exists("team/after:v1"));
}

/// Taking push away from a user (`user ungrant dev 'team/**:push'`) takes it from the user's
/// token too, while pulls keep working.
fn ungrant_shrinks_token(env: &Env, c: &mut dyn Client) {
    let access = env.with(&env.dev_team_token);
    let pushed = expect_ok(
        c.push(&env.reference("team/six:v1"), access),
        "push before the ungrant",
    );
    assert_eq!(pushed, env.served_digest("team/six:v1"));

    let changed = env.cli(&["user", "ungrant", DEV.0, "team/**:push"]);
    assert!(
        changed.stdout.contains("team/**:pull") && !changed.stdout.contains("push"),
        "{}",
        changed.describe("push was not taken away")
    );
    let mut n = 1;
    let (refused, took) = eventually_fails("push after the ungrant", Instant::now(), || {
        n += 1;
        c.push(&env.reference(&format!("team/six:v{n}")), access)
    });
    expect_refused(Err::<(), _>(refused), "push after the ungrant");
    eprintln!("ungranted push refused after {took:?}");
    assert!(!env.exists(&format!("team/six:v{n}")));
    let pulled = expect_ok(
        c.pull(&env.reference("team/six:v1"), access),
        "pull after the ungrant",
    );
    assert!(
        pulled.contains(&pushed),
        "pulled {pulled:?}, pushed {pushed}"
    );
}

/// An access token created with `--expires` works until then and is refused after.
fn expired_token_fails(env: &Env, c: &mut dyn Client) {
    env.seed("team/app:v1");
    let out = env.cli(&[
        "token",
        "create",
        "--user",
        DEV.0,
        "--scope",
        "repository:team/**:pull",
        "--expires",
        "4s",
    ]);
    let secret = out
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let created = Instant::now();
    let creds = format!("{}:{secret}", DEV.0);
    let access = env.with(&creds);
    let reference = env.reference("team/app:v1");
    // Made on the store while the server runs: usable once the server has reloaded (≤ 1 s).
    let mut ok = false;
    while created.elapsed() < Duration::from_secs(3) {
        if c.pull(&reference, access).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(ok, "the new token never worked before it expired");
    let refused = loop {
        match c.pull(&reference, access) {
            Err(out) => break out,
            Ok(_) if created.elapsed() > Duration::from_secs(12) => {
                panic!(
                    "an expired token still pulls {:?} after it was created",
                    created.elapsed()
                )
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    let took = created.elapsed();
    expect_refused(Err::<(), _>(refused), "pull with an expired token");
    assert!(
        took >= Duration::from_secs(3),
        "refused after {took:?}, before it expired"
    );
}

/// Wrong passwords from one address for one user run into the login limit: the client then
/// sees 429 TOOMANYREQUESTS, even with the right password, while another user is unaffected.
fn failed_logins_are_limited(env: &Env, c: &mut dyn Client) {
    env.seed("team/app:v1");
    let reference = env.reference("team/app:v1");
    let wrong = format!("{}:not-the-password", DEV.0);
    let mut limited = None;
    for _ in 0..12 {
        let e = match c.pull(&reference, env.with(&wrong)) {
            Ok(_) => panic!("a wrong password pulled"),
            Err(out) => out,
        };
        let text = format!("{}\n{}", e.stdout, e.stderr).to_lowercase();
        if says_too_many_requests(&text) {
            limited = Some(e);
            break;
        }
    }
    let limited = limited.expect("no 429 after a dozen wrong passwords (the limit is 10)");
    let right = format!("{}:{}", DEV.0, DEV.1);
    let e = c
        .pull(&reference, env.with(&right))
        .expect_err("the right password while limited");
    let text = format!("{}\n{}", e.stdout, e.stderr).to_lowercase();
    assert!(
        says_too_many_requests(&text),
        "{}\n(first limited answer: {})",
        e.describe("the right password during the lockout"),
        final_error(&limited)
    );
    expect_ok(
        c.pull(&reference, env.with(&env.admin_creds)),
        "another user pulls",
    );
}

/// Whether a client's (lower-cased) output reports 429: the words, or the number standing
/// alone (not inside a port or a digest, which once made this test pass or fail by chance).
fn says_too_many_requests(text: &str) -> bool {
    if text.contains("too many") || text.contains("toomanyrequests") {
        return true;
    }
    let b = text.as_bytes();
    text.match_indices("429").any(|(i, _)| {
        let before = i.checked_sub(1).map(|j| b[j]);
        let after = b.get(i + 3).copied();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[test]
fn too_many_requests_is_not_read_from_a_port() {
    assert!(says_too_many_requests("unexpected status 429"));
    assert!(says_too_many_requests("error: toomanyrequests: slow down"));
    assert!(!says_too_many_requests(
        "dial tcp 127.0.0.1:42957: connection refused"
    ));
    assert!(!says_too_many_requests("sha256:0429ab unauthorized"));
}

fn run_scenario(kind: Kind, scenario: fn(&Env, &mut dyn Client)) {
    let env = Env::start();
    let mut c = client(kind, &env);
    scenario(&env, c.as_mut());
}

/// `mod SCENARIO { #[test] fn skopeo/podman/ctr }`, each on its own server.
macro_rules! per_client {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::{Kind, run_scenario};

            #[test]
            fn skopeo() {
                run_scenario(Kind::Skopeo, super::$scenario);
            }

            #[test]
            fn podman() {
                run_scenario(Kind::Podman, super::$scenario);
            }

            #[test]
            fn ctr() {
                run_scenario(Kind::Ctr, super::$scenario);
            }
        }
    )*};
}

per_client!(
    admin_push_pull,
    pull_only_token,
    team_token_stays_in_team,
    anonymous_pulls_public_only,
    revoked_token_fails,
    ungrant_shrinks_token,
    expired_token_fails,
    failed_logins_are_limited,
);

// ---------------------------------------------------------------------------------------------
// ctr: a refused push reports the registry's answer, not a broken pipe
// ---------------------------------------------------------------------------------------------

/// What a client says when the connection was closed (or reset) under a request it was still
/// sending: ctr used to print `io: read/write on closed pipe` (or `broken pipe`) for a refused
/// push, because the registry answered 401 before reading the body and closed the connection.
const TRANSPORT_WORDS: &[&str] = &[
    "closed pipe",
    "broken pipe",
    "connection reset",
    "unexpected eof",
];

/// `ctr images push` refused for lack of rights reports the registry's 401/403 and its error
/// text, never a pipe error: anonymous to a private repository and to a public one whose blobs
/// are already there (only the manifest PUT is refused), and with a pull-only token. Repeated,
/// since the pipe error was intermittent.
#[test]
fn ctr_refused_push_reports_the_registry_answer() {
    let env = Env::start();
    env.seed("library/pub:v1");
    let mut c = CtrClient::new(&env);
    let anonymous = Access::new(&env.trust, None);
    let pull_only = env.with(&env.dev_pull_token);
    for round in 0..3 {
        for (dst, access, who) in [
            ("team/app:v1", anonymous, "anonymous"),
            ("library/pub:v2", anonymous, "anonymous"),
            ("team/app:v1", pull_only, "a pull-only token"),
            ("library/pub:v3", pull_only, "a pull-only token"),
        ] {
            let what = format!("push to {dst} as {who} (round {round})");
            let out = expect_refused(c.push(&env.reference(dst), access), &what);
            let e = final_error(&out);
            eprintln!("{what}: {e}");
            assert!(
                !TRANSPORT_WORDS.iter().any(|w| e.contains(w)),
                "{}",
                out.describe(&format!(
                    "{what}: a transport error instead of the registry's answer ({e})"
                ))
            );
            assert!(!env.exists(dst), "{dst} was written");
        }
    }
}

/// `podman search HOST/` lists the catalog over verified HTTPS: a user sees only what it may
/// pull (its `team/**`, not `other/**`), the administrator sees everything.
#[test]
fn catalog_filtering_seen_through_podman_search() {
    let env = Env::start();
    for repo in ["team/app:v1", "team/lib:v1", "other/secret:v1"] {
        env.seed(repo);
    }
    env.cli(&["user", "grant", DEV.0, "registry:catalog:*"]);
    std::thread::sleep(Duration::from_millis(1500));
    let search = |user: &str, password: &str| -> String {
        let p = stowage_testkit::podman::Podman::new();
        let login = p.try_login(&env.server.addr, &env.trust, user, password);
        assert!(login.success(), "{}", login.describe("podman login"));
        // `podman search` has no --cert-dir: it reads the system's certs.d for the host
        // (a directory of this test's own port, removed afterwards).
        let certs = Path::new("/etc/containers/certs.d").join(&env.server.addr);
        std::fs::create_dir_all(&certs).expect("certs.d (the interop tests run as root)");
        std::fs::copy(env.server.ca_cert(), certs.join("ca.crt")).unwrap();
        let out = stowage_testkit::tools::run(
            p.cmd()
                .args(["search", "--tls-verify=true"])
                .arg(format!("{}/", env.server.addr)),
        );
        let _ = std::fs::remove_dir_all(&certs);
        assert!(out.success(), "{}", out.describe("podman search"));
        out.stdout
    };
    let dev = search(DEV.0, DEV.1);
    assert!(
        dev.contains("team/app") && dev.contains("team/lib"),
        "{dev}"
    );
    assert!(
        !dev.contains("other/secret"),
        "a hidden repository is listed:\n{dev}"
    );
    let admin = search(ADMIN.0, ADMIN.1);
    assert!(
        admin.contains("other/secret") && admin.contains("team/app"),
        "{admin}"
    );
}
