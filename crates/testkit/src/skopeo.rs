//! Driving `skopeo` (containers/image) against a plain-HTTP loopback registry.
//!
//! Owns: a skopeo invocation isolated from the host's configuration (its own signature policy,
//! registries.conf and empty auth file in a temp dir), always with `--debug` so a failing test
//! shows the HTTP exchange, and thin helpers for copy, inspect, list-tags and delete. TLS
//! verification is off in those because test registries speak plain HTTP; the `*_verified`
//! helpers instead reach an HTTPS registry with verification on, trusting what an
//! [`Access`](crate::tls::Access) names and logging in with its credentials.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::tls::Access;
use crate::tools::{Output, require_tool, run, try_run};

pub struct Skopeo {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Default for Skopeo {
    fn default() -> Self {
        Skopeo::new()
    }
}

impl Skopeo {
    /// Panics (fails the test) if skopeo is not installed.
    pub fn new() -> Skopeo {
        let bin = require_tool("skopeo");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("policy.json"), POLICY).expect("policy");
        std::fs::write(
            dir.path().join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("registries.conf");
        std::fs::create_dir_all(dir.path().join("registries.d")).expect("registries.d");
        // containers/image insists that an explicitly named auth file exists.
        std::fs::write(dir.path().join("auth.json"), r#"{"auths":{}}"#).expect("auth.json");
        Skopeo { bin, dir }
    }

    /// `skopeo --debug --policy ... --registries.d ...` with an isolated environment.
    pub fn cmd(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new(&self.bin);
        c.arg("--debug")
            .arg("--policy")
            .arg(d.join("policy.json"))
            .arg("--registries.d")
            .arg(d.join("registries.d"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("REGISTRY_AUTH_FILE", d.join("auth.json"));
        c
    }

    /// `skopeo copy` with TLS verification off on both sides, plus `extra` flags.
    pub fn copy(&self, src: &str, dst: &str, extra: &[&str]) -> Output {
        run(self
            .cmd()
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .args(extra)
            .args([src, dst]))
    }

    /// `skopeo inspect --raw`: the manifest bytes exactly as served.
    pub fn inspect_raw(&self, reference: &str) -> Vec<u8> {
        run(self
            .cmd()
            .args(["inspect", "--tls-verify=false", "--raw", reference]))
        .stdout
        .into_bytes()
    }

    /// `skopeo inspect` (resolved for this machine's platform when `reference` is an index).
    pub fn inspect(&self, reference: &str) -> Value {
        parse(&run(self.cmd().args([
            "inspect",
            "--tls-verify=false",
            reference,
        ])))
    }

    /// `skopeo inspect --config`: the image config JSON.
    pub fn inspect_config(&self, reference: &str) -> Value {
        parse(&run(self.cmd().args([
            "inspect",
            "--tls-verify=false",
            "--config",
            "--raw",
            reference,
        ])))
    }

    /// `skopeo inspect --raw` that may fail (for checking that something is gone).
    pub fn try_inspect_raw(&self, reference: &str) -> Output {
        try_run(
            self.cmd()
                .args(["inspect", "--tls-verify=false", "--raw", reference]),
        )
    }

    /// `skopeo list-tags`: the tags of `docker://ADDR/repo`, sorted.
    pub fn list_tags(&self, repo_ref: &str) -> Vec<String> {
        let v = parse(&run(self.cmd().args([
            "list-tags",
            "--tls-verify=false",
            repo_ref,
        ])));
        let mut tags: Vec<String> = v["Tags"]
            .as_array()
            .unwrap_or_else(|| panic!("no Tags in {v}"))
            .iter()
            .map(|t| t.as_str().expect("tag is a string").to_string())
            .collect();
        tags.sort();
        tags
    }

    /// `skopeo delete`: deletes the manifest the reference resolves to.
    pub fn delete(&self, reference: &str) -> Output {
        run(self.cmd().args(["delete", "--tls-verify=false", reference]))
    }

    /// `skopeo copy [extra] SRC DST` over verified TLS, whatever its exit status: each `docker://`
    /// side that has an [`Access`] gets `--src-`/`--dest-` `tls-verify=true`, `cert-dir` and
    /// `creds` flags (a side without one, such as an `oci:` layout, gets none).
    pub fn try_copy_verified(
        &self,
        src: &str,
        src_access: Option<Access<'_>>,
        dst: &str,
        dst_access: Option<Access<'_>>,
        extra: &[&str],
    ) -> Output {
        let mut c = self.cmd();
        c.arg("copy");
        if let Some(a) = src_access {
            c.args(a.containers_args("src-"));
        }
        if let Some(a) = dst_access {
            c.args(a.containers_args("dest-"));
        }
        try_run(c.args(extra).args([src, dst]))
    }

    /// `skopeo inspect [extra] REF` over verified TLS (e.g. `extra = ["--raw"]`), whatever its
    /// exit status.
    pub fn try_inspect_verified(
        &self,
        reference: &str,
        access: Access<'_>,
        extra: &[&str],
    ) -> Output {
        try_run(
            self.cmd()
                .arg("inspect")
                .args(access.containers_args(""))
                .args(extra)
                .arg(reference),
        )
    }

    /// `skopeo inspect --raw` over verified TLS: the manifest bytes exactly as served.
    pub fn inspect_raw_verified(&self, reference: &str, access: Access<'_>) -> Vec<u8> {
        self.try_inspect_verified(reference, access, &["--raw"])
            .ok()
            .stdout
            .into_bytes()
    }
}

/// Accept anything: these tests check transport, not signatures.
const POLICY: &str = r#"{"default":[{"type":"insecureAcceptAnything"}]}"#;

fn parse(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{}", out.describe(&format!("output is not JSON ({e})"))))
}
