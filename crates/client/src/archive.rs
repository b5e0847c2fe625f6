//! Image archives: `oci-archive:FILE` (an OCI layout in a tar) and `docker-archive:FILE` (what
//! `docker save` writes and `docker load` / `ctr images import` read).
//!
//! Both are handled through an OCI layout in a working directory: reading extracts the tar
//! (refusing entries that would land outside it) and, for a docker archive without an
//! `index.json`, builds a layout from its `manifest.json`; writing packs the layout and, for a
//! docker archive, adds the `manifest.json` (and `repositories`) docker needs. Layers stay
//! compressed: docker and containerd detect the compression of layer files themselves.

use std::io::Read;
use std::path::{Component, Path};

use serde_json::{Value, json};
use stowage_oci::{Algorithm, Digest, media};

use crate::layout::{Descriptor, Layout};

fn e(ctx: &Path, err: impl std::fmt::Display) -> String {
    format!("{}: {err}", ctx.display())
}

/// Extract a tar into `dir`, refusing entries that climb out of it and links that point out.
pub fn extract(file: &Path, dir: &Path) -> Result<(), String> {
    let f = std::fs::File::open(file).map_err(|x| e(file, x))?;
    std::fs::create_dir_all(dir).map_err(|x| e(dir, x))?;
    let mut a = tar::Archive::new(f);
    for entry in a.entries().map_err(|x| e(file, x))? {
        let mut entry = entry.map_err(|x| e(file, x))?;
        let path = entry.path().map_err(|x| e(file, x))?.into_owned();
        if path.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            return Err(format!(
                "{}: refused entry {}: it leaves the archive",
                file.display(),
                path.display()
            ));
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            // Classic `docker save` stores a repeated layer as a link to the first copy: fine
            // while the link stays inside the archive, refused otherwise (it could make us
            // read, and push, a file from elsewhere on this machine).
            let target = entry
                .link_name()
                .map_err(|x| e(file, x))?
                .ok_or_else(|| {
                    format!("{}: link {} has no target", file.display(), path.display())
                })?
                .into_owned();
            let base = if kind.is_symlink() {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            } else {
                std::path::PathBuf::new()
            };
            let mut depth: i64 = 0;
            let mut escapes = target.is_absolute();
            for c in base.join(&target).components() {
                match c {
                    Component::ParentDir => depth -= 1,
                    Component::Normal(_) => depth += 1,
                    _ => {}
                }
                escapes |= depth < 0;
            }
            if escapes {
                return Err(format!(
                    "{}: refused link {} -> {}: it leaves the archive",
                    file.display(),
                    path.display(),
                    target.display()
                ));
            }
        } else if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        // `unpack_in` also refuses anything escaping `dir`.
        entry.unpack_in(dir).map_err(|x| e(file, x))?;
    }
    Ok(())
}

/// Pack `dir` into a tar at `file` (written to a temporary name, then renamed).
pub fn pack(dir: &Path, file: &Path) -> Result<(), String> {
    let tmp = file.with_extension("partial");
    let out = std::fs::File::create(&tmp).map_err(|x| e(&tmp, x))?;
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).map_err(|x| e(&d, x))? {
            let p = ent.map_err(|x| e(&d, x))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let rel = p.strip_prefix(dir).map_err(|x| e(&p, x))?;
        let mut f = std::fs::File::open(&p).map_err(|x| e(&p, x))?;
        b.append_file(rel, &mut f).map_err(|x| e(&p, x))?;
    }
    let out = b.into_inner().map_err(|x| e(&tmp, x))?;
    out.sync_all().map_err(|x| e(&tmp, x))?;
    std::fs::rename(&tmp, file).map_err(|x| e(file, x))
}

/// Add docker's `manifest.json` and `repositories` to a layout holding one image manifest
/// under `tag`, naming it `repo_tag` (`name:tag`) for `docker load`.
pub fn add_docker_manifest(
    layout: &Layout,
    tag: &str,
    repo_tag: Option<&str>,
) -> Result<(), String> {
    let desc = layout.find(Some(tag)).map_err(|x| x.to_string())?;
    let m: Value =
        serde_json::from_slice(&layout.read_blob(&desc.digest).map_err(|x| x.to_string())?)
            .map_err(|x| format!("manifest: {x}"))?;
    if m.get("manifests").is_some() {
        return Err(
            "a docker archive holds one platform's image: choose it with --platform".into(),
        );
    }
    let path = |d: &str| -> Result<String, String> {
        let d: Digest = d.parse().map_err(|x| format!("{x}"))?;
        Ok(format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
    };
    let config = path(m["config"]["digest"].as_str().unwrap_or_default())?;
    let layers = m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| path(l["digest"].as_str().unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    let tags: Vec<&str> = repo_tag.into_iter().collect();
    let manifest = json!([{"Config": config, "RepoTags": tags, "Layers": layers}]);
    crate::layout::write_atomic(
        &layout.root().join("manifest.json"),
        manifest.to_string().as_bytes(),
    )
    .map_err(|x| x.to_string())?;
    if let Some(rt) = repo_tag {
        // containerd reads index.json first: name the image there too.
        let p = layout.root().join("index.json");
        let mut idx: Value = serde_json::from_slice(&std::fs::read(&p).map_err(|x| e(&p, x))?)
            .map_err(|x| e(&p, x))?;
        for m in idx["manifests"].as_array_mut().into_iter().flatten() {
            if m["annotations"][crate::layout::REF_NAME].as_str() == Some(tag) {
                m["annotations"]["io.containerd.image.name"] = json!(rt);
            }
        }
        crate::layout::write_atomic(&p, idx.to_string().as_bytes()).map_err(|x| x.to_string())?;
    }
    if let Some(rt) = repo_tag
        && let Some((repo, t)) = rt.rsplit_once(':')
    {
        let top = layers
            .last()
            .and_then(|l| l.rsplit('/').next())
            .unwrap_or_default();
        let repos = json!({ repo: { t: top } });
        crate::layout::write_atomic(
            &layout.root().join("repositories"),
            repos.to_string().as_bytes(),
        )
        .map_err(|x| x.to_string())?;
    }
    Ok(())
}

fn hash_file(p: &Path) -> Result<(Digest, u64), String> {
    let mut f = std::fs::File::open(p).map_err(|x| e(p, x))?;
    let mut h = stowage_oci::Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|x| e(p, x))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finish(), n))
}

/// Make an extracted docker archive a usable OCI layout (if it is not one already, as docker
/// 25+ writes); returns the tag naming the image in it.
pub fn docker_to_layout(dir: &Path, want: Option<&str>) -> Result<String, String> {
    // An archive that is also an OCI layout (docker 25+, or written by us) keeps its manifest.
    if want.is_none()
        && let Ok(l) = Layout::open(dir)
        && let Ok(idx) = l.index()
        && idx.len() == 1
    {
        let d = &idx[0];
        let tag = d.raw["annotations"][crate::layout::REF_NAME]
            .as_str()
            .unwrap_or("docker-archive")
            .to_string();
        l.add_to_index(d, Some(&tag)).map_err(|x| x.to_string())?;
        return Ok(tag);
    }
    let mf = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mf)
        .map_err(|x| e(&mf, format!("{x} (is this a docker archive?)")))?;
    let list: Value = serde_json::from_str(&text).map_err(|x| e(&mf, x))?;
    let entries = list.as_array().cloned().unwrap_or_default();
    let entry = match want {
        Some(w) => entries
            .iter()
            .find(|en| {
                en["RepoTags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t.as_str() == Some(w))
            })
            .ok_or_else(|| format!("{}: no image named {w}", dir.display()))?,
        None if entries.len() == 1 => &entries[0],
        None => {
            return Err(format!(
                "{}: the archive holds {} images: name one",
                dir.display(),
                entries.len()
            ));
        }
    };
    let layout = Layout::create(dir).map_err(|x| x.to_string())?;
    let config_path = dir.join(entry["Config"].as_str().unwrap_or_default());
    let config_bytes = std::fs::read(&config_path).map_err(|x| e(&config_path, x))?;
    let config_d = Digest::of(Algorithm::Sha256, &config_bytes);
    layout
        .write_blob(&config_d, &config_bytes)
        .map_err(|x| x.to_string())?;
    let mut layers = Vec::new();
    for l in entry["Layers"].as_array().into_iter().flatten() {
        let p = dir.join(l.as_str().unwrap_or_default());
        let (d, size) = hash_file(&p)?;
        let mut head = [0u8; 4];
        let got = std::fs::File::open(&p)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        let mt = if got >= 2 && head[..2] == [0x1f, 0x8b] {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        } else if got == 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        } else {
            "application/vnd.docker.image.rootfs.diff.tar"
        };
        let dest = layout.blob_path(&d);
        if !dest.exists() {
            std::fs::create_dir_all(dest.parent().expect("blob dir")).map_err(|x| e(&dest, x))?;
            std::fs::rename(&p, &dest)
                .or_else(|_| std::fs::copy(&p, &dest).map(|_| ()))
                .map_err(|x| e(&dest, x))?;
        }
        layers.push(json!({"mediaType": mt, "digest": d.to_string(), "size": size}));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_d.to_string(), "size": config_bytes.len()},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|x| x.to_string())?;
    let md = Digest::of(Algorithm::Sha256, &bytes);
    layout.write_blob(&md, &bytes).map_err(|x| x.to_string())?;
    let tag = "docker-archive".to_string();
    layout
        .add_to_index(
            &Descriptor {
                media_type: media::DOCKER_MANIFEST.into(),
                digest: md,
                size: bytes.len() as u64,
                raw: Value::Null,
            },
            Some(&tag),
        )
        .map_err(|x| x.to_string())?;
    Ok(tag)
}
