//! `stowage inspect REF`: what an image is, without pulling its layers: the manifest or index
//! (platforms), and for an image its config (platform, layers with sizes, environment,
//! entrypoint, command, labels, history). `--raw` prints the manifest bytes exactly as served;
//! `--json` prints one JSON document for scripts.

use serde_json::{Value, json};
use stowage_client::transfer::{self, End, Location, Platform};

use crate::client_cmd::Net;
use crate::failure::{Failure, usage};

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn platform_of(p: &Value) -> String {
    let mut s = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("?"),
        p["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = p["variant"].as_str() {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// Run the command.
pub async fn inspect(
    net: &Net,
    reference: &str,
    raw: bool,
    as_json: bool,
    platform: &Option<String>,
) -> Result<(), Failure> {
    let loc = usage(Location::parse(reference))?;
    let want = platform.as_deref().map(Platform::parse).transpose();
    let want = usage(want)?;
    let opened = net.end(&loc, false).await?;
    let end = &opened.end;
    let start = match end {
        End::Registry { image, .. } => image.reference(),
        End::Layout { tag, .. } => tag.clone().unwrap_or_default(),
    };
    let top = transfer::fetch_manifest(end, &start).await?;
    if raw && platform.is_none() {
        crate::client_cmd::write_raw(&top.bytes)?;
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&top.bytes)
        .map_err(|e| format!("{loc}: manifest is not JSON: {e}"))?;
    let mut manifest = top.clone();
    let mut mv = v.clone();
    if v.get("manifests").is_some() {
        let Some(want) = &want else {
            if as_json {
                outln!(
                    "{}",
                    json!({"digest": top.digest.to_string(), "mediaType": top.media_type, "manifest": v})
                );
                return Ok(());
            }
            outln!("{loc}");
            outln!("digest:     {}", top.digest);
            outln!("media type: {}", top.media_type);
            outln!("platforms:");
            for m in v["manifests"].as_array().into_iter().flatten() {
                outln!(
                    "  {:<16} {} {}",
                    platform_of(&m["platform"]),
                    m["digest"].as_str().unwrap_or("?"),
                    human(m["size"].as_u64().unwrap_or(0))
                );
            }
            return Ok(());
        };
        let child = v["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| want.matches(&m["platform"]))
            .ok_or_else(|| format!("{loc}: no image for {want}"))?;
        manifest =
            transfer::fetch_manifest(end, child["digest"].as_str().unwrap_or_default()).await?;
        if raw {
            crate::client_cmd::write_raw(&manifest.bytes)?;
            return Ok(());
        }
        mv = serde_json::from_slice(&manifest.bytes).map_err(|e| e.to_string())?;
    }
    let config = match mv["config"]["digest"].as_str().and_then(|d| d.parse().ok()) {
        Some(d) => Some(config_blob(end, &d).await?),
        None => None,
    };
    if as_json {
        outln!(
            "{}",
            json!({"digest": manifest.digest.to_string(), "mediaType": manifest.media_type, "manifest": mv, "config": config})
        );
        return Ok(());
    }
    outln!("{loc}");
    outln!("digest:     {}", manifest.digest);
    outln!("media type: {}", manifest.media_type);
    if let Some(at) = mv["artifactType"].as_str() {
        outln!("artifact:   {at}");
    }
    let layers = mv["layers"].as_array().cloned().unwrap_or_default();
    let total: u64 = layers.iter().filter_map(|l| l["size"].as_u64()).sum();
    if let Some(c) = &config {
        outln!("platform:   {}", platform_of(c));
        if let Some(created) = c["created"].as_str() {
            outln!("created:    {created}");
        }
        let cc = &c["config"];
        let list = |k: &str| -> Option<String> {
            cc[k].as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        };
        if let Some(e) = list("Entrypoint") {
            outln!("entrypoint: {e}");
        }
        if let Some(cmd) = list("Cmd") {
            outln!("cmd:        {cmd}");
        }
        if let Some(w) = cc["WorkingDir"].as_str().filter(|w| !w.is_empty()) {
            outln!("workdir:    {w}");
        }
        if let Some(u) = cc["User"].as_str().filter(|u| !u.is_empty()) {
            outln!("user:       {u}");
        }
        if let Some(env) = cc["Env"].as_array() {
            outln!("env:");
            for e in env.iter().filter_map(|e| e.as_str()) {
                outln!("  {e}");
            }
        }
        if let Some(labels) = cc["Labels"].as_object().filter(|l| !l.is_empty()) {
            outln!("labels:");
            for (k, val) in labels {
                outln!("  {k}={}", val.as_str().unwrap_or_default());
            }
        }
    }
    outln!("layers:     {} ({} compressed)", layers.len(), human(total));
    for l in &layers {
        outln!(
            "  {} {:>10} {}",
            l["digest"].as_str().unwrap_or("?"),
            human(l["size"].as_u64().unwrap_or(0)),
            l["mediaType"].as_str().unwrap_or_default()
        );
    }
    if let Some(h) = config.as_ref().and_then(|c| c["history"].as_array()) {
        outln!("history:");
        for e in h {
            let by = e["created_by"].as_str().unwrap_or_default();
            let by: String = by.chars().take(100).collect();
            let empty = if e["empty_layer"].as_bool() == Some(true) {
                " (no layer)"
            } else {
                ""
            };
            outln!("  {} {by}{empty}", e["created"].as_str().unwrap_or("-"));
        }
    }
    Ok(())
}

/// Fetch and verify a (small) config blob.
async fn config_blob(end: &End, d: &stowage_oci::Digest) -> Result<Value, String> {
    let bytes = match end {
        End::Registry { client, image } => {
            let r = client
                .blob_get(&image.repository, d, None)
                .await
                .map_err(|e| format!("{image}: config {d}: {e}"))?;
            let b = r
                .bytes()
                .await
                .map_err(|e| format!("{image}: config {d}: {e}"))?;
            let got = stowage_oci::Digest::of(d.algorithm(), &b);
            if &got != d {
                return Err(format!("{image}: config {d} has the wrong content ({got})"));
            }
            b.to_vec()
        }
        End::Layout { layout, .. } => layout.read_blob(d).map_err(|e| e.to_string())?,
    };
    serde_json::from_slice(&bytes).map_err(|e| format!("config {d} is not JSON: {e}"))
}
