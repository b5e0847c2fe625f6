//! Targets over `stowage-oci`: repository names, manifest references, digests, the `Range` and
//! `Content-Range` grammars, and manifests with the blobs they reference.

use stowage_oci::digest::DigestError;
use stowage_oci::manifest::{self, Kind, ManifestError};
use stowage_oci::range::{RangeOutcome, apply_range, parse_content_range, range_len};
use stowage_oci::reference::ReferenceError;
use stowage_oci::{Algorithm, Digest, Reference, RepoName, Tag, media};

use crate::Target;
use crate::input::{Input, text};

pub const NAME: Target = Target {
    name: "name",
    body: name,
    outcomes: &["ok", "invalid"],
};

/// A repository name: accepted names are kept verbatim, and the two implementations of the
/// grammar (`stowage-oci`'s and the scope parser's in `stowage-auth`) agree.
pub fn name(data: &[u8]) -> &'static str {
    let s = text(data);
    let parsed = RepoName::parse(&s);
    assert_eq!(
        parsed.is_some(),
        stowage_auth::scope::valid_repo_name(&s),
        "the name grammars disagree on {s:?}"
    );
    match parsed {
        Some(n) => {
            assert_eq!(n.as_str(), s);
            assert_eq!(n.to_string(), s);
            assert!(n.as_str().len() <= stowage_oci::name::MAX_NAME_LEN);
            "ok"
        }
        None => "invalid",
    }
}

pub const REFERENCE: Target = Target {
    name: "reference",
    body: reference,
    outcomes: &[
        "ok-tag",
        "ok-digest",
        "tag-invalid",
        "digest-malformed",
        "digest-unsupported",
    ],
};

/// The `<reference>` of a manifest URL: a tag, or a digest when it holds a `:`.
pub fn reference(data: &[u8]) -> &'static str {
    let s = text(data);
    match Reference::parse(&s) {
        Ok(r) => {
            assert_eq!(r.to_string(), s);
            match r {
                Reference::Tag(t) => {
                    assert_eq!(Tag::parse(&s).as_ref(), Some(&t));
                    assert!(t.as_str().len() <= 128);
                    "ok-tag"
                }
                Reference::Digest(_) => "ok-digest",
            }
        }
        Err(ReferenceError::Tag) => {
            assert!(!s.contains(':') && Tag::parse(&s).is_none());
            "tag-invalid"
        }
        Err(ReferenceError::Digest(e)) => {
            assert!(s.contains(':'));
            digest_error(&e)
        }
    }
}

fn digest_error(e: &DigestError) -> &'static str {
    match e {
        DigestError::Malformed(_) => "digest-malformed",
        DigestError::Unsupported(_) => "digest-unsupported",
    }
}

pub const DIGEST: Target = Target {
    name: "digest",
    body: digest,
    outcomes: &[
        "ok-sha256",
        "ok-sha512",
        "digest-malformed",
        "digest-unsupported",
    ],
};

/// A digest string, and the algorithm name before its `:` (as `?digest-algorithm=` is read).
pub fn digest(data: &[u8]) -> &'static str {
    let s = text(data);
    if let Some((alg, _)) = s.split_once(':')
        && let Ok(a) = Algorithm::parse(alg)
    {
        assert_eq!(a.as_str(), alg);
    }
    match s.parse::<Digest>() {
        Ok(d) => {
            assert_eq!(d.to_string(), s);
            assert_eq!(d.hex().len(), d.algorithm().hex_len());
            match d.algorithm() {
                Algorithm::Sha256 => "ok-sha256",
                Algorithm::Sha512 => "ok-sha512",
            }
        }
        Err(e) => digest_error(&e),
    }
}

pub const RANGE: Target = Target {
    name: "range",
    body: range,
    outcomes: &[
        "range-full",
        "range-partial",
        "range-unsatisfiable",
        "content-range-ok",
        "content-range-invalid",
    ],
};

/// `c<Content-Range value>`, or `<blob length>\n<Range value>`. A partial read stays inside
/// the blob; a chunk range is ordered and its length never wraps.
pub fn range(data: &[u8]) -> &'static str {
    if let Some(rest) = data.strip_prefix(b"c") {
        let s = text(rest);
        return match parse_content_range(&s) {
            Some((start, end)) => {
                assert!(start <= end);
                match range_len(start, end) {
                    Some(n) => assert_eq!(n - 1, end - start),
                    None => assert_eq!((start, end), (0, u64::MAX)),
                }
                "content-range-ok"
            }
            None => "content-range-invalid",
        };
    }
    let mut input = Input::new(data);
    let len = text(input.line()).trim().parse::<u64>().unwrap_or(0);
    let header = text(input.rest()).into_owned();
    match apply_range(&header, len) {
        RangeOutcome::Full => "range-full",
        RangeOutcome::Partial { start, end } => {
            assert!(start <= end && end < len, "{start}-{end} of {len}");
            "range-partial"
        }
        RangeOutcome::Unsatisfiable => "range-unsatisfiable",
    }
}

pub const MANIFEST: Target = Target {
    name: "manifest",
    body: manifest,
    outcomes: &[
        "ok-image",
        "ok-index",
        "schema1",
        "json",
        "schema-version",
        "media-type-mismatch",
        "unsupported-type",
        "structure-untyped",
        "structure-index-has-layers",
        "structure-index-no-manifests",
        "structure-image-has-manifests",
        "structure-image-no-config",
        "structure-image-no-layers",
        "structure-docker-no-layers",
    ],
};

/// `<Content-Type>\n<body>` (an empty first line: no Content-Type). An accepted manifest has a
/// manifest media type matching its kind, and the blobs it references (what the registry
/// checks before storing it) are exactly the digests an independent walk of the JSON finds.
pub fn manifest(data: &[u8]) -> &'static str {
    let mut input = Input::new(data);
    let content_type = text(input.line()).into_owned();
    let body = input.rest();
    let header = (!content_type.is_empty()).then_some(content_type.as_str());
    let parsed = match manifest::parse(body, header) {
        Ok(p) => p,
        Err(e) => return manifest_error(&e),
    };
    assert!(media::is_manifest_type(&parsed.media_type));
    assert_eq!(
        parsed.kind == Kind::Index,
        media::is_index(&parsed.media_type)
    );
    let doc: serde_json::Value = serde_json::from_slice(body).expect("parsed, so JSON");
    let digest_of = |d: &serde_json::Value| d["digest"].as_str().expect("a digest").to_string();
    let array = |key: &str| {
        doc[key]
            .as_array()
            .map(|a| a.iter().map(digest_of).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let expected: Vec<String> = match parsed.kind {
        Kind::Image => std::iter::once(digest_of(&doc["config"]))
            .chain(array("layers"))
            .collect(),
        Kind::Index => array("manifests"),
    };
    let referenced: Vec<String> = parsed.referenced().map(|d| d.digest.to_string()).collect();
    assert_eq!(referenced, expected);
    match parsed.kind {
        Kind::Image => "ok-image",
        Kind::Index => "ok-index",
    }
}

fn manifest_error(e: &ManifestError) -> &'static str {
    match e {
        ManifestError::Schema1 => "schema1",
        ManifestError::Json(_) => "json",
        ManifestError::SchemaVersion => "schema-version",
        ManifestError::MediaTypeMismatch { .. } => "media-type-mismatch",
        ManifestError::UnsupportedType(_) => "unsupported-type",
        ManifestError::Structure(why) => match *why {
            "cannot tell the manifest type: no mediaType, config or manifests" => {
                "structure-untyped"
            }
            "an index must not have config or layers" => "structure-index-has-layers",
            "an index needs a manifests array" => "structure-index-no-manifests",
            "an image manifest must not have a manifests array" => "structure-image-has-manifests",
            "an image manifest needs a config descriptor" => "structure-image-no-config",
            "an image manifest needs a layers array" => "structure-image-no-layers",
            "a Docker manifest needs a layers array" => "structure-docker-no-layers",
            // Not in `outcomes`: the replay test names the new message.
            _ => "structure-unlisted",
        },
    }
}
