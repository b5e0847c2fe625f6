//! OCI image layout directories (`oci:DIR[:TAG]`): `oci-layout`, `index.json` and
//! `blobs/<alg>/<hex>`, as skopeo, umoci and buildah read and write them.
//!
//! Blobs are written to a temporary file, verified against their digest while they stream in,
//! fsynced and only then renamed into place, so a layout never holds a blob whose bytes do not
//! match its name. `index.json` is rewritten atomically; entries for other tags are kept, an
//! entry for the same tag is replaced.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use stowage_oci::{Digest, Hasher};

/// The annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why a layout operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("blob {expected} has the wrong content (it hashes to {actual})")]
    Digest { expected: String, actual: String },
}

/// A descriptor as stored in `index.json` or a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The whole JSON object (platform, annotations...), kept as written.
    pub raw: Value,
}

impl Descriptor {
    /// Parse a descriptor object.
    pub fn from_json(v: &Value) -> Result<Descriptor, LayoutError> {
        let digest = v["digest"]
            .as_str()
            .ok_or_else(|| LayoutError::Invalid("a descriptor has no digest".into()))?
            .parse()
            .map_err(|e| LayoutError::Invalid(format!("a descriptor's digest is invalid: {e}")))?;
        Ok(Descriptor {
            media_type: v["mediaType"].as_str().unwrap_or_default().to_string(),
            digest,
            size: v["size"]
                .as_u64()
                .ok_or_else(|| LayoutError::Invalid("a descriptor has no size".into()))?,
            raw: v.clone(),
        })
    }
}

/// An OCI layout directory.
pub struct Layout {
    root: PathBuf,
}

fn io(path: &Path, e: impl std::fmt::Display) -> LayoutError {
    LayoutError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl Layout {
    /// Open an existing layout.
    pub fn open(root: &Path) -> Result<Layout, LayoutError> {
        let marker = root.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| {
            io(
                &marker,
                format!("{e} (is {} an OCI layout directory?)", root.display()),
            )
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| io(&marker, e))?;
        if v["imageLayoutVersion"].as_str().is_none() {
            return Err(io(&marker, "no imageLayoutVersion"));
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// Open a layout, creating an empty one if the directory has none.
    pub fn create(root: &Path) -> Result<Layout, LayoutError> {
        if root.join("oci-layout").exists() {
            return Layout::open(root);
        }
        std::fs::create_dir_all(root.join("blobs")).map_err(|e| io(root, e))?;
        write_atomic(
            &root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        if !root.join("index.json").exists() {
            let empty = json!({"schemaVersion": 2, "mediaType": stowage_oci::media::OCI_INDEX, "manifests": []});
            write_atomic(&root.join("index.json"), empty.to_string().as_bytes())?;
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    /// Whether a blob is present with the expected size.
    pub fn has_blob(&self, d: &Digest, size: u64) -> bool {
        std::fs::metadata(self.blob_path(d)).is_ok_and(|m| m.len() == size)
    }

    /// Read a (small) blob whole, verifying its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, LayoutError> {
        let p = self.blob_path(d);
        let bytes = std::fs::read(&p).map_err(|e| io(&p, e))?;
        let actual = Digest::of(d.algorithm(), &bytes);
        if &actual != d {
            return Err(LayoutError::Digest {
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Start writing a blob: bytes go to a temporary file and are hashed on the way.
    pub fn blob_writer(&self, d: &Digest) -> Result<BlobWriter, LayoutError> {
        let dir = self.root.join("blobs").join(d.algorithm().as_str());
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let tmp = dir.join(format!(".{}.partial", d.hex()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        // A partial file from an interrupted pull is resumed: re-hash what it holds.
        let mut hasher = Hasher::new(d.algorithm());
        let existing = std::fs::read(&tmp).map_err(|e| io(&tmp, e))?;
        hasher.update(&existing);
        Ok(BlobWriter {
            expected: d.clone(),
            tmp,
            dest: self.blob_path(d),
            file,
            hasher,
            written: existing.len() as u64,
        })
    }

    /// Write a small blob in one go.
    pub fn write_blob(&self, d: &Digest, bytes: &[u8]) -> Result<(), LayoutError> {
        if self.has_blob(d, bytes.len() as u64) {
            return Ok(());
        }
        let mut w = self.blob_writer(d)?;
        w.reset()?;
        w.write(bytes)?;
        w.commit()
    }

    /// The descriptors in `index.json`.
    pub fn index(&self) -> Result<Vec<Descriptor>, LayoutError> {
        let p = self.root.join("index.json");
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| io(&p, e))?;
        v["manifests"]
            .as_array()
            .map(|a| a.iter().map(Descriptor::from_json).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// The entry for `tag`, or the only entry when `tag` is None.
    pub fn find(&self, tag: Option<&str>) -> Result<Descriptor, LayoutError> {
        let all = self.index()?;
        match tag {
            Some(t) => all
                .into_iter()
                .find(|d| d.raw["annotations"][REF_NAME].as_str() == Some(t))
                .ok_or_else(|| {
                    LayoutError::Invalid(format!(
                        "{} has no image tagged {t:?}",
                        self.root.display()
                    ))
                }),
            None => match all.len() {
                1 => Ok(all.into_iter().next().expect("one")),
                0 => Err(LayoutError::Invalid(format!(
                    "{} holds no image",
                    self.root.display()
                ))),
                n => Err(LayoutError::Invalid(format!(
                    "{} holds {n} images: name one with oci:DIR:TAG",
                    self.root.display()
                ))),
            },
        }
    }

    /// Record `desc` in `index.json` under `tag` (replacing that tag's entry), or untagged.
    pub fn add_to_index(&self, desc: &Descriptor, tag: Option<&str>) -> Result<(), LayoutError> {
        let p = self.root.join("index.json");
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        let mut v: Value = serde_json::from_str(&text).map_err(|e| io(&p, e))?;
        let mut entry = json!({
            "mediaType": desc.media_type,
            "digest": desc.digest.to_string(),
            "size": desc.size,
        });
        if let Some(platform) = desc.raw.get("platform") {
            entry["platform"] = platform.clone();
        }
        if let Some(t) = tag {
            entry["annotations"] = json!({ REF_NAME: t });
        }
        let list = v["manifests"].as_array().cloned().unwrap_or_default();
        let mut kept: Vec<Value> = list
            .into_iter()
            .filter(|e| match tag {
                Some(t) => e["annotations"][REF_NAME].as_str() != Some(t),
                None => e["digest"].as_str() != Some(&desc.digest.to_string()),
            })
            .collect();
        kept.push(entry);
        v["schemaVersion"] = json!(2);
        v["manifests"] = Value::Array(kept);
        write_atomic(
            &p,
            serde_json::to_string(&v).map_err(|e| io(&p, e))?.as_bytes(),
        )
    }
}

/// A blob being written.
pub struct BlobWriter {
    expected: Digest,
    tmp: PathBuf,
    dest: PathBuf,
    file: std::fs::File,
    hasher: Hasher,
    written: u64,
}

impl BlobWriter {
    /// Bytes already held (from an interrupted earlier attempt).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Drop what an earlier attempt left, to start from zero.
    pub fn reset(&mut self) -> Result<(), LayoutError> {
        self.file.set_len(0).map_err(|e| io(&self.tmp, e))?;
        self.hasher = Hasher::new(self.expected.algorithm());
        self.written = 0;
        Ok(())
    }

    /// Append bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), LayoutError> {
        self.file.write_all(bytes).map_err(|e| io(&self.tmp, e))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Verify the digest, make the bytes durable and publish the blob under its name. On a
    /// mismatch the partial file is removed.
    pub fn commit(self) -> Result<(), LayoutError> {
        let actual = self.hasher.finish();
        if actual != self.expected {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(LayoutError::Digest {
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        self.file.sync_all().map_err(|e| io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| io(&self.dest, e))?;
        Ok(())
    }
}

/// Write a file atomically: a temporary sibling, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_oci::Algorithm;

    #[test]
    fn blobs_are_verified_and_tags_replace_their_entry() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let body = b"hello layout";
        let d = Digest::of(Algorithm::Sha256, body);
        l.write_blob(&d, body).unwrap();
        assert!(l.has_blob(&d, body.len() as u64));
        assert_eq!(l.read_blob(&d).unwrap(), body);
        // A wrong body is refused and leaves nothing behind.
        let other = Digest::of(Algorithm::Sha256, b"other");
        let mut w = l.blob_writer(&other).unwrap();
        w.write(b"not other").unwrap();
        assert!(matches!(w.commit(), Err(LayoutError::Digest { .. })));
        assert!(!l.blob_path(&other).exists());
        let desc = Descriptor {
            media_type: stowage_oci::media::OCI_MANIFEST.into(),
            digest: d.clone(),
            size: body.len() as u64,
            raw: Value::Null,
        };
        l.add_to_index(&desc, Some("v1")).unwrap();
        l.add_to_index(&desc, Some("v2")).unwrap();
        l.add_to_index(&desc, Some("v1")).unwrap();
        assert_eq!(l.index().unwrap().len(), 2);
        assert_eq!(l.find(Some("v2")).unwrap().digest, d);
        assert!(l.find(None).is_err(), "two images: a tag is needed");
        assert!(l.find(Some("v9")).is_err());
        let reopened = Layout::open(dir.path()).unwrap();
        assert_eq!(reopened.index().unwrap().len(), 2);
    }

    #[test]
    fn interrupted_blobs_resume() {
        let dir = tempfile::tempdir().unwrap();
        let l = Layout::create(dir.path()).unwrap();
        let body = b"0123456789";
        let d = Digest::of(Algorithm::Sha256, body);
        {
            let mut w = l.blob_writer(&d).unwrap();
            w.write(&body[..4]).unwrap();
        }
        let mut w = l.blob_writer(&d).unwrap();
        assert_eq!(w.offset(), 4);
        w.write(&body[4..]).unwrap();
        w.commit().unwrap();
        assert_eq!(l.read_blob(&d).unwrap(), body);
    }
}
