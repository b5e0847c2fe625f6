//! Connecting client commands: the shared flags (`Net`), a `Client` per registry with the right
//! scheme, TLS trust and credentials, and the ends of a transfer, archives included (worked on
//! as layouts in a scratch directory). HTTPS is the default; plain HTTP is used for loopback
//! registries and `localhost` when they do not speak TLS, or for any registry with
//! `--plain-http`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use stowage_client::Client;
use stowage_client::archive;
use stowage_client::credentials::{Credential, CredentialFiles};
use stowage_client::image_ref::ImageRef;
use stowage_client::layout::Layout;
use stowage_client::transfer::{End, Location};

/// Connection options shared by every client command.
#[derive(Args, Clone, Default)]
pub struct Net {
    /// Credentials as USER:PASSWORD (instead of the stored ones).
    #[arg(long, global = true)]
    pub creds: Option<String>,
    /// Credentials for the source registry of a copy or pull (USER:PASSWORD).
    #[arg(long, global = true)]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry of a copy or push (USER:PASSWORD).
    #[arg(long, global = true)]
    pub dest_creds: Option<String>,
    /// An access token to use as the password (user name from --creds' user or `token`).
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// A containers auth file to read and write (default: $REGISTRY_AUTH_FILE, then docker's
    /// config.json).
    #[arg(long, global = true)]
    pub authfile: Option<PathBuf>,
    /// Trust this CA certificate (PEM) in addition to the system roots.
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates (testing only).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Talk plain HTTP to the registry.
    #[arg(long, global = true)]
    pub plain_http: bool,
    /// No progress output.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Blobs moved at once.
    #[arg(long, default_value_t = 4, global = true)]
    pub jobs: usize,
}

impl Net {
    /// Check the flag values themselves (before any work): a wrong one is a usage error.
    pub fn check(&self) -> Result<(), String> {
        for (flag, value) in [
            ("--creds", &self.creds),
            ("--src-creds", &self.src_creds),
            ("--dest-creds", &self.dest_creds),
        ] {
            // With --token, --creds may name the user alone.
            let user_only = flag == "--creds" && self.token.is_some();
            if let Some(v) = value
                && !user_only
                && !v.contains(':')
            {
                return Err(format!("{flag} must be USER:PASSWORD"));
            }
        }
        if self.jobs == 0 {
            return Err("--jobs must be at least 1".into());
        }
        Ok(())
    }

    pub fn files(&self) -> CredentialFiles {
        CredentialFiles::from_env(self.authfile.clone())
    }

    pub fn explicit(&self) -> Result<Option<Credential>, String> {
        if let Some(t) = &self.token {
            let user = self
                .creds
                .as_deref()
                .and_then(|c| c.split_once(':').map(|(u, _)| u).or(Some(c)))
                .unwrap_or("token");
            return Ok(Some(Credential {
                username: user.to_string(),
                secret: t.clone(),
            }));
        }
        match &self.creds {
            None => Ok(None),
            Some(c) => {
                let (u, p) = c.split_once(':').ok_or("--creds must be USER:PASSWORD")?;
                Ok(Some(Credential {
                    username: u.to_string(),
                    secret: p.to_string(),
                }))
            }
        }
    }

    pub fn http(&self) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .pool_max_idle_per_host(16)
            .connect_timeout(Duration::from_secs(15))
            .tcp_nodelay(true);
        if let Some(ca) = &self.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("{}: no PEM certificate in it", ca.display()));
            }
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        if self.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        b.build().map_err(|e| format!("cannot set up HTTPS: {e}"))
    }

    /// A client for the registry of `image`, authenticated with explicit or stored credentials.
    pub async fn connect(&self, image: &ImageRef) -> Result<Client, String> {
        let http = self.http()?;
        let host = image.api_host();
        let scheme = if self.plain_http {
            "http"
        } else if image.is_loopback() {
            // Loopback registries often run without TLS: use HTTPS when they speak it. The probe
            // accepts any certificate: it only asks whether the port speaks TLS, so an
            // untrusted certificate still fails below, with a certificate error.
            let probe = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .map_err(|e| format!("cannot set up HTTPS: {e}"))?;
            match probe
                .get(format!("https://{host}/v2/"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(_) => "https",
                Err(e) if e.is_connect() || e.is_request() => "http",
                Err(e) => return Err(format!("{host}: {e}")),
            }
        } else {
            "https"
        };
        let cred = match self.explicit()? {
            Some(c) => Some(c),
            None => self
                .files()
                .lookup(&image.registry, &image.repository)
                .map_err(|e| e.to_string())?,
        };
        Ok(Client::with_http(&format!("{scheme}://{host}"), http).with_auth(cred))
    }

    /// Open one end of a transfer. Archives are worked on as a layout in a scratch directory
    /// (`Opened::work`): extracted first when reading, packed by `Opened::finish` when writing.
    pub async fn end(&self, loc: &Location, create: bool) -> Result<Opened, String> {
        let layout_end = |dir: &std::path::Path, tag: Option<String>| -> Result<End, String> {
            let layout = if create {
                Layout::create(dir)
            } else {
                Layout::open(dir)
            }
            .map_err(|e| e.to_string())?;
            Ok(End::Layout { layout, tag })
        };
        let opened = |end, work| Opened {
            end,
            work,
            archive: None,
        };
        match loc {
            Location::Registry(image) => Ok(opened(
                End::Registry {
                    client: self.connect(image).await?,
                    image: image.clone(),
                },
                None,
            )),
            Location::Layout { dir, tag } => Ok(opened(layout_end(dir, tag.clone())?, None)),
            Location::OciArchive { file, tag } | Location::DockerArchive { file, name: tag } => {
                let docker = matches!(loc, Location::DockerArchive { .. });
                let work = scratch_dir();
                let tag = if create {
                    Some(tag.clone().unwrap_or_else(|| "latest".into()))
                } else {
                    archive::extract(file, &work)?;
                    if docker {
                        Some(archive::docker_to_layout(&work, tag.as_deref())?)
                    } else {
                        tag.clone()
                    }
                };
                let end = layout_end(&work, tag.clone())?;
                Ok(Opened {
                    end,
                    work: Some(work),
                    archive: create.then(|| (file.clone(), docker, tag)),
                })
            }
        }
    }
}

/// A scratch directory for archive work, removed by `Opened`'s drop.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "stowage-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ))
}

/// An opened transfer end.
pub struct Opened {
    pub end: End,
    work: Option<PathBuf>,
    /// For an archive being written: the file, whether it is a docker archive, and the name.
    archive: Option<(PathBuf, bool, Option<String>)>,
}

impl Opened {
    /// Write the archive, if this end is one being written.
    pub fn finish(&self, name_for_docker: Option<&str>) -> Result<(), String> {
        let (Some((file, docker, tag)), End::Layout { layout, .. }) = (&self.archive, &self.end)
        else {
            return Ok(());
        };
        if *docker {
            let tag = tag.as_deref().unwrap_or("latest");
            let repo_tag = name_for_docker
                .map(str::to_string)
                .or_else(|| tag.contains(':').then(|| tag.to_string()));
            archive::add_docker_manifest(layout, tag, repo_tag.as_deref())?;
        }
        archive::pack(layout.root(), file)
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(w) = &self.work {
            let _ = std::fs::remove_dir_all(w);
        }
    }
}
