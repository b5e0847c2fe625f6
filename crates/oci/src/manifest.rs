//! Manifest and index validation over raw bytes.
//!
//! The registry never re-serialises a manifest: digests are over the exact bytes pushed. This
//! module only reads those bytes to decide the media type, refuse what is invalid, and list the
//! descriptors whose targets must exist. Unknown fields are allowed (the spec says registries
//! must store them as they are).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::media;

/// A descriptor as found in a manifest or index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    #[serde(deserialize_with = "de_digest")]
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

fn de_digest<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Just `schemaVersion`; every other field is skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaProbe {
    #[serde(default)]
    schema_version: Option<i64>,
}

/// Whether a manifest is an image manifest or an index of manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// What the registry needs to know about a pushed manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    /// The media type to store and serve as `Content-Type`.
    pub media_type: String,
    pub kind: Kind,
    /// Image manifests: the config descriptor.
    pub config: Option<Descriptor>,
    /// Image manifests: layers (may be empty).
    pub layers: Vec<Descriptor>,
    /// Indexes: the child manifests.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for image manifests the config media type (the referrers rule).
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// The descriptors whose targets the registry must hold for this manifest to be stored:
    /// the config and layers of an image (foreign layers, those with `urls`, included), the
    /// children of an index. `subject` is not among them: it may point anywhere.
    pub fn referenced(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .chain(self.manifests.iter())
    }
}

/// Why a manifest was refused. Each maps to MANIFEST_INVALID with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "Docker schema 1 manifests are not supported; convert the image to schema 2 or OCI (for example with `skopeo copy --format v2s2`)"
    )]
    Schema1,
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("manifest mediaType {body:?} contradicts Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedType(String),
    #[error("{0}")]
    Structure(&'static str),
}

impl ParsedManifest {
    /// Descriptors it holds: config, layers, child manifests and subject.
    pub fn descriptor_count(&self) -> usize {
        usize::from(self.config.is_some())
            + self.layers.len()
            + self.manifests.len()
            + usize::from(self.subject.is_some())
    }
}

/// How deeply arrays and objects nest in a JSON document (`{}` is 1, `{"a":[1]}` is 2),
/// found by scanning the bytes without parsing, so it can be checked before a parser
/// recurses. Brackets inside strings do not count; malformed input gets a depth all the same
/// (the parser refuses it afterwards).
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Strip parameters and whitespace from a Content-Type value.
pub fn bare_content_type(v: &str) -> &str {
    v.split(';').next().unwrap_or("").trim()
}

/// Parse and validate `body`, pushed with Content-Type `content_type` (if any).
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let header = content_type
        .map(bare_content_type)
        .filter(|h| !h.is_empty());
    if matches!(
        header,
        Some(media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED)
    ) {
        return Err(ManifestError::Schema1);
    }
    // serde skips unknown fields without checking their strings are UTF-8; JSON must be.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ManifestError::Json(format!("not UTF-8: {e}")));
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        // A schema-1 body fails typed parsing in odd ways; recognise it first. The probe reads
        // `schemaVersion` alone and skips everything else without building a tree.
        if serde_json::from_slice::<SchemaProbe>(body).is_ok_and(|p| p.schema_version == Some(1)) {
            return ManifestError::Schema1;
        }
        ManifestError::Json(e.to_string())
    })?;
    match raw.schema_version {
        Some(1) => return Err(ManifestError::Schema1),
        Some(2) => {}
        _ => return Err(ManifestError::SchemaVersion),
    }
    let generic = |h: &str| matches!(h, "application/json" | media::OCTET_STREAM);
    let header = header.filter(|h| !generic(h));
    if let (Some(b), Some(h)) = (raw.media_type.as_deref(), header)
        && b != h
    {
        return Err(ManifestError::MediaTypeMismatch {
            body: b.to_string(),
            header: h.to_string(),
        });
    }
    let media_type = match header.or(raw.media_type.as_deref()) {
        Some(t) => t.to_string(),
        None if raw.manifests.is_some() => media::OCI_INDEX.to_string(),
        None if raw.config.is_some() => media::OCI_MANIFEST.to_string(),
        None => {
            return Err(ManifestError::Structure(
                "cannot tell the manifest type: no mediaType, config or manifests",
            ));
        }
    };
    if matches!(
        media_type.as_str(),
        media::DOCKER_SCHEMA1 | media::DOCKER_SCHEMA1_SIGNED
    ) {
        return Err(ManifestError::Schema1);
    }
    if !media::is_manifest_type(&media_type) {
        return Err(ManifestError::UnsupportedType(media_type));
    }
    if media::is_index(&media_type) {
        if raw.config.is_some() || raw.layers.is_some() {
            return Err(ManifestError::Structure(
                "an index must not have config or layers",
            ));
        }
        let manifests = raw
            .manifests
            .ok_or(ManifestError::Structure("an index needs a manifests array"))?;
        Ok(ParsedManifest {
            media_type,
            kind: Kind::Index,
            config: None,
            layers: Vec::new(),
            manifests,
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    } else {
        if raw.manifests.is_some() {
            return Err(ManifestError::Structure(
                "an image manifest must not have a manifests array",
            ));
        }
        let config = raw.config.ok_or(ManifestError::Structure(
            "an image manifest needs a config descriptor",
        ))?;
        let layers = match raw.layers {
            Some(l) => l,
            None if media_type == media::OCI_MANIFEST => {
                return Err(ManifestError::Structure(
                    "an image manifest needs a layers array",
                ));
            }
            None => {
                return Err(ManifestError::Structure(
                    "a Docker manifest needs a layers array",
                ));
            }
        };
        let artifact_type = raw
            .artifact_type
            .clone()
            .or_else(|| Some(config.media_type.clone()));
        Ok(ParsedManifest {
            media_type,
            kind: Kind::Image,
            config: Some(config),
            layers,
            manifests: Vec::new(),
            subject: raw.subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(b"{}"), 1);
        assert_eq!(json_depth(br#"{"a":[1,{"b":{}}],"c":[]}"#), 4);
        assert_eq!(json_depth(br#"{"a":"[[[{{{"}"#), 1, "brackets in strings");
        assert_eq!(json_depth(br#"{"a":"\"[[[","b":[]}"#), 2, "escaped quotes");
        assert_eq!(
            json_depth(br#"{"a":"\\","b":[[]]}"#),
            3,
            "an escaped backslash"
        );
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(json_depth(deep.as_bytes()), 5000);
        assert_eq!(
            json_depth(b"]]]}{"),
            1,
            "malformed input still gets a depth"
        );
    }

    #[test]
    fn descriptor_count_covers_every_kind() {
        let d = |n: u8| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":1}}"#,
                format!("{n:02x}").repeat(32)
            )
        };
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{},{}],"subject":{}}}"#,
            d(1),
            d(2),
            d(3),
            d(4)
        );
        assert_eq!(parse(image.as_bytes(), None).unwrap().descriptor_count(), 4);
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{},{}]}}"#,
            d(1),
            d(2),
            d(3)
        );
        assert_eq!(parse(index.as_bytes(), None).unwrap().descriptor_count(), 3);
    }

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(mt: Option<&str>) -> String {
        let mt = mt
            .map(|m| format!("\"mediaType\":\"{m}\","))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2,"data":"e30="}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":10}}],"custom":{{"x":1}}}}"#,
            d('a'),
            d('b')
        )
    }

    #[test]
    fn image_manifest_with_and_without_media_type() {
        let p = parse(
            image(Some(media::OCI_MANIFEST)).as_bytes(),
            Some(media::OCI_MANIFEST),
        )
        .unwrap();
        assert_eq!(p.kind, Kind::Image);
        assert_eq!(p.layers.len(), 1);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let p = parse(image(None).as_bytes(), None).unwrap();
        assert_eq!(p.media_type, media::OCI_MANIFEST);
        let p = parse(image(None).as_bytes(), Some(media::DOCKER_MANIFEST)).unwrap();
        assert_eq!(p.media_type, media::DOCKER_MANIFEST);
    }

    #[test]
    fn referenced_are_config_and_layers_or_children() {
        let p = parse(image(None).as_bytes(), None).unwrap();
        let got: Vec<String> = p.referenced().map(|d| d.digest.to_string()).collect();
        assert_eq!(got, [d('a'), d('b')]);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{}","size":1}}],"subject":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
            media::OCI_MANIFEST,
            d('c'),
            d('d')
        );
        let p = parse(index.as_bytes(), None).unwrap();
        let got: Vec<String> = p.referenced().map(|d| d.digest.to_string()).collect();
        assert_eq!(
            got,
            [d('c')],
            "children only: the subject may point anywhere"
        );
    }

    #[test]
    fn invalid_utf8_in_an_unknown_field_refused() {
        // Found by the `manifest` fuzz target: serde skipped the field without looking inside.
        let mut body = image(None).into_bytes();
        body.splice(1..1, b"\"x\":\"\xf4\xf4\",".iter().copied());
        assert!(matches!(parse(&body, None), Err(ManifestError::Json(_))));
    }

    #[test]
    fn mismatch_refused() {
        let e = parse(
            image(Some(media::OCI_MANIFEST)).as_bytes(),
            Some(media::DOCKER_MANIFEST),
        )
        .unwrap_err();
        assert!(matches!(e, ManifestError::MediaTypeMismatch { .. }));
    }

    #[test]
    fn index() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}],"artifactType":"x/y"}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST,
            d('c')
        );
        let p = parse(body.as_bytes(), Some(media::OCI_INDEX)).unwrap();
        assert_eq!(p.kind, Kind::Index);
        assert_eq!(p.manifests.len(), 1);
        assert_eq!(p.artifact_type.as_deref(), Some("x/y"));
    }

    #[test]
    fn schema1_refused() {
        assert_eq!(
            parse(b"{}", Some(media::DOCKER_SCHEMA1_SIGNED)).unwrap_err(),
            ManifestError::Schema1
        );
        let body = br#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}"#;
        assert_eq!(parse(body, None).unwrap_err(), ManifestError::Schema1);
    }

    #[test]
    fn bad_input() {
        for (body, ct) in [
            (&b"not json"[..], None),
            (b"[]", None),
            (b"{}", None),
            (br#"{"schemaVersion":3,"config":{}}"#, None),
            (br#"{"schemaVersion":2}"#, None),
            (br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:x","size":1},"layers":[]}"#, None),
            (br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"md5:00","size":1},"layers":[]}"#, None),
            (br#"{"schemaVersion":2,"config":{"mediaType":"a","size":-1},"layers":[]}"#, None),
            (br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#, Some(media::OCI_INDEX)),
            (br#"{"schemaVersion":2,"manifests":[]}"#, Some("application/vnd.example.unknown")),
        ] {
            assert!(parse(body, ct).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
