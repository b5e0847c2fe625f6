//! The client commands: `login`, `logout`, `pull`, `push`, `copy`, `inspect`, `tags`,
//! `digest` and `delete`, against any registry speaking the Docker Registry HTTP API V2.
//!
//! This module runs the commands and prints results; `net` turns flags into connected ends
//! (scheme, TLS trust, credentials, archives); the protocol and the transfer logic live in the
//! client crate.

use std::path::PathBuf;
use std::sync::Arc;

use stowage_client::credentials::{Credential, IDENTITY_TOKEN_USER};
use stowage_client::image_ref::ImageRef;
use stowage_client::layout::Layout;
use stowage_client::transfer::{self, End, Location, Platform, Platforms};

use crate::failure::{Failure, usage};
pub use crate::net::Net;
use crate::progress::Reporter;

/// A registry reference from the command line (invalid: a usage error).
fn image(reference: &str) -> Result<ImageRef, Failure> {
    usage(
        ImageRef::parse(reference.strip_prefix("docker://").unwrap_or(reference))
            .map_err(|e| e.to_string()),
    )
}

/// A location given on the command line: `oci:` and registry references as such; a plain path
/// (starting with `.` or `/`) is an OCI layout. Invalid: a usage error.
fn location(s: &str) -> Result<Location, Failure> {
    if s.starts_with('/') || s.starts_with("./") || s.starts_with("../") {
        return usage(Location::parse(&format!("oci:{s}")));
    }
    usage(Location::parse(s))
}

fn platforms(
    platform: &Option<String>,
    all: bool,
    default_all: bool,
) -> Result<Platforms, Failure> {
    match (platform, all) {
        (Some(_), true) => Err(Failure::Usage(
            "--platform and --all-platforms exclude each other".into(),
        )),
        (Some(p), false) => Ok(Platforms::One(usage(Platform::parse(p))?)),
        (None, true) => Ok(Platforms::All),
        (None, false) if default_all => Ok(Platforms::All),
        (None, false) => Ok(Platforms::One(Platform::host())),
    }
}

/// `stowage pull REF [DEST]`.
pub async fn pull(
    net: &Net,
    reference: &str,
    dest: Option<&str>,
    platform: &Option<String>,
    all: bool,
) -> Result<(), Failure> {
    let img = image(reference)?;
    let dest = match dest {
        // A pull writes locally: a bare name is a directory, never a registry.
        Some(d) if !d.starts_with("oci:") && !d.contains("-archive:") => Location::Layout {
            dir: PathBuf::from(d),
            tag: None,
        },
        Some(d) => location(d)?,
        None => {
            let name = img
                .repository
                .rsplit('/')
                .next()
                .unwrap_or("image")
                .to_string();
            Location::Layout {
                dir: PathBuf::from(name),
                tag: Some(img.tag_or_latest().unwrap_or_else(|| "latest".into())),
            }
        }
    };
    let dest = match dest {
        Location::Layout { dir, tag: None } => Location::Layout {
            dir,
            tag: Some(img.tag_or_latest().unwrap_or_else(|| "latest".into())),
        },
        other => other,
    };
    let p = platforms(platform, all, false)?;
    Ok(copy_between(net, &Location::Registry(img), &dest, p).await?)
}

/// `stowage push SRC REF`.
pub async fn push(
    net: &Net,
    src: &str,
    reference: &str,
    platform: &Option<String>,
    all: bool,
) -> Result<(), Failure> {
    let src = location(src)?;
    if let Location::Registry(_) = src {
        return Err(Failure::Usage(
            "push takes a local image (oci:DIR[:TAG], oci-archive:FILE or docker-archive:FILE) first; use `stowage copy` between registries"
                .into(),
        ));
    }
    let dst = Location::Registry(image(reference)?);
    let p = platforms(platform, all, true)?;
    Ok(copy_between(net, &src, &dst, p).await?)
}

/// `stowage copy SRC DST`.
pub async fn copy(
    net: &Net,
    src: &str,
    dst: &str,
    platform: &Option<String>,
    all: bool,
) -> Result<(), Failure> {
    let (src, dst) = (location(src)?, location(dst)?);
    let p = platforms(platform, all, true)?;
    Ok(copy_between(net, &src, &dst, p).await?)
}

async fn copy_between(
    net: &Net,
    src: &Location,
    dst: &Location,
    p: Platforms,
) -> Result<(), String> {
    // Each registry gets its own credentials: --src-creds / --dest-creds, and --creds (or
    // --token) for both only when both ends are the same registry; otherwise --creds goes to
    // the destination and the source uses its stored login.
    let (mut src_net, mut dst_net) = (net.clone(), net.clone());
    let same_registry = matches!((src, dst), (Location::Registry(a), Location::Registry(b)) if a.registry == b.registry);
    if matches!((src, dst), (Location::Registry(_), Location::Registry(_))) && !same_registry {
        src_net.creds = None;
        src_net.token = None;
    }
    if let Some(c) = &net.src_creds {
        src_net.creds = Some(c.clone());
        src_net.token = None;
    }
    if let Some(c) = &net.dest_creds {
        dst_net.creds = Some(c.clone());
        dst_net.token = None;
    }
    let from = src_net.end(src, false).await?;
    let to = dst_net.end(dst, true).await?;
    // A docker archive written from a registry image is named after it, for `docker load`.
    let docker_name = match (src, dst) {
        (Location::Registry(i), Location::DockerArchive { name: None, .. }) => Some(format!(
            "{}/{}:{}",
            i.registry,
            i.repository,
            i.tag.as_ref().map_or("latest", |t| t.as_str())
        )),
        _ => None,
    };
    let p = match (&p, dst) {
        // A docker archive holds one image: an index becomes this machine's image.
        (Platforms::All, Location::DockerArchive { .. }) => Platforms::One(Platform::host()),
        _ => p,
    };
    let reporter = Arc::new(Reporter::new(net.quiet));
    let result = transfer::copy(&from.end, &to.end, &p, net.jobs, reporter.clone()).await;
    reporter.finish();
    let written = result?;
    to.finish(docker_name.as_deref())?;
    if !net.quiet {
        eprintln!("{src} -> {dst}");
    }
    outln!("{}", written.digest);
    Ok(())
}

/// `stowage tags REF`: every tag, all pages.
pub async fn tags(net: &Net, reference: &str) -> Result<(), Failure> {
    let img = image(reference)?;
    let c = net.connect(&img).await?;
    let tags = c
        .all_tags(&img.repository, None)
        .await
        .map_err(|e| format!("{}/{}: {e}", img.registry, img.repository))?;
    for t in tags {
        outln!("{t}");
    }
    Ok(())
}

/// `stowage digest REF`: the digest of the manifest (or index) the reference names.
pub async fn digest(net: &Net, reference: &str) -> Result<(), Failure> {
    let img = image(reference)?;
    let end = End::Registry {
        client: net.connect(&img).await?,
        image: img.clone(),
    };
    let m = transfer::fetch_manifest(&end, &img.reference()).await?;
    outln!("{}", m.digest);
    Ok(())
}

/// `stowage delete REF` (the tag) or `stowage delete --manifest REF` (the manifest by digest).
pub async fn delete(net: &Net, reference: &str, manifest: bool) -> Result<(), Failure> {
    let img = image(reference)?;
    if !manifest && img.tag.is_none() {
        return Err(Failure::Usage(format!(
            "{img}: name the tag to delete (REPO:TAG), or use --manifest to delete by digest"
        )));
    }
    let c = net.connect(&img).await?;
    let repo = &img.repository;
    if !manifest {
        let Some(tag) = &img.tag else {
            return Err(Failure::Usage(format!("{img}: no tag to delete")));
        };
        return match c.manifest_delete(repo, tag.as_str()).await {
            Ok(()) => {
                outln!("deleted tag {img}");
                Ok(())
            }
            Err(e) if matches!(e.status(), Some(400 | 405)) || e.code() == Some("UNSUPPORTED") => {
                Err(Failure::Failed(format!(
                    "{img}: the registry does not support deleting tags ({e}); `stowage delete --manifest` deletes the image by digest, with every tag that points at it"
                )))
            }
            Err(e) => Err(Failure::Failed(format!("{img}: {e}"))),
        };
    }
    let end = End::Registry {
        client: c.clone(),
        image: img.clone(),
    };
    let m = transfer::fetch_manifest(&end, &img.reference()).await?;
    let digest = m.digest.to_string();
    let mut going = Vec::new();
    if let Ok(all) = c.all_tags(repo, None).await {
        for t in all.iter().take(10_000) {
            if let Ok(Some((Some(d), _))) = c.manifest_head(repo, t).await
                && d == digest
            {
                going.push(t.clone());
            }
        }
    }
    if going.is_empty() {
        eprintln!("no tags point at {digest}");
    } else {
        eprintln!("tags that go with it: {}", going.join(", "));
    }
    c.manifest_delete(repo, &digest)
        .await
        .map_err(|e| format!("{img}: {e}"))?;
    outln!("deleted {}/{}@{digest}", img.registry, repo);
    Ok(())
}

/// `stowage login HOST`: check the credentials against the registry, then store them.
pub async fn login(
    net: &Net,
    host: &str,
    username: Option<String>,
    password_stdin: bool,
) -> Result<(), Failure> {
    let host = host
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let img = image(&format!("{host}/login-check"))?;
    let registry = if host == "docker.io" || host == "index.docker.io" {
        "docker.io".to_string()
    } else {
        img.registry.clone()
    };
    let cred = match net.explicit()? {
        Some(c) => c,
        None => {
            let username = match username {
                Some(u) => u,
                None => crate::accounts_cmd::read_line_prompt("Username: ")?,
            };
            let secret = crate::accounts_cmd::read_password_public(password_stdin, "Password: ")?;
            Credential { username, secret }
        }
    };
    let mut probe = net.clone();
    probe.creds = Some(format!("{}:{}", cred.username, cred.secret));
    probe.token = None;
    let client = probe.connect(&img).await?;
    let r = client
        .ping_response()
        .await
        .map_err(|e| format!("{host}: {e}"))?;
    let stored = if r.status() == 401 {
        let values = stowage_client::www_authenticate(&r);
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let auth = client.authenticator().ok_or("no authenticator")?;
        let refresh = auth
            .login(&refs)
            .await
            .map_err(|e| format!("{host}: login failed: {e}"))?;
        // Basic registries: the credentials must open /v2/.
        client
            .ping()
            .await
            .map_err(|e| format!("{host}: login failed: {e}"))?;
        match refresh {
            Some(rt)
                if net.authfile.is_none() && std::env::var_os("REGISTRY_AUTH_FILE").is_none() =>
            {
                // Docker's form: the refresh token, with the user name kept beside it.
                Credential {
                    username: format!("{IDENTITY_TOKEN_USER}{}", cred.username),
                    secret: rt,
                }
            }
            _ => cred,
        }
    } else {
        client.ping().await.map_err(|e| format!("{host}: {e}"))?;
        cred
    };
    let where_ = net
        .files()
        .store(&registry, &stored)
        .map_err(|e| e.to_string())?;
    outln!("Login Succeeded (credentials stored in {where_})");
    Ok(())
}

/// `stowage logout HOST`.
pub fn logout(net: &Net, host: &str) -> Result<(), Failure> {
    let host = host
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let registry = image(&format!("{host}/x"))
        .map(|i| i.registry)
        .unwrap_or_else(|_| host.to_string());
    if net.files().erase(&registry).map_err(|e| e.to_string())? {
        outln!("Removed login credentials for {registry}");
    } else {
        outln!("Not logged in to {registry}");
    }
    Ok(())
}

/// `stowage unpack REF DIR`: the root filesystem a runtime would see.
pub async fn unpack(
    net: &Net,
    reference: &str,
    dir: &str,
    platform: &Option<String>,
) -> Result<(), Failure> {
    let target = PathBuf::from(dir);
    // A root filesystem is written whole into an empty (or new) directory, never mixed into
    // an existing tree; on failure nothing half-written is left behind.
    if std::fs::read_dir(&target).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Failure::Usage(format!(
            "{dir} is not empty: unpack writes a complete root filesystem into an empty or new directory"
        )));
    }
    let src = location(reference)?;
    let p = platforms(platform, false, false)?;
    let from = net.end(&src, false).await?;
    let from = &from.end;
    let work = crate::net::scratch_dir();
    let result = async {
        let layout = Layout::create(&work).map_err(|e| e.to_string())?;
        let to = End::Layout {
            layout,
            tag: Some("unpack".into()),
        };
        let reporter = Arc::new(Reporter::new(net.quiet));
        let written = transfer::copy(from, &to, &p, net.jobs, reporter.clone()).await;
        reporter.finish();
        let written = written?;
        let End::Layout { layout, .. } = to else {
            unreachable!()
        };
        let root = PathBuf::from(dir);
        let manifest = written.bytes.clone();
        let warnings = tokio::task::spawn_blocking(move || {
            stowage_client::unpack::unpack_from_layout(&layout, &manifest, &root)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{src}: {e}"))?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        outln!("{}", written.digest);
        Ok::<(), String>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    if result.is_err() && target.exists() {
        let _ = std::fs::remove_dir_all(&target);
    }
    Ok(result?)
}

/// Write bytes to stdout as they are; a closed stdout ends the program quietly.
pub fn write_raw(bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r.map_err(|e| e.to_string()),
    }
}
