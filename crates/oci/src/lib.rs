//! The OCI distribution vocabulary, with no I/O.
//!
//! Layout:
//! - `name`: repository-name grammar.
//! - `reference`: tags and the tag-or-digest reference of a manifest URL.
//! - `digest`: digest parsing, the supported algorithms and the hasher behind them, whose running
//!   state can be saved and restored (its `ffi` submodule holds the workspace's only `unsafe`).
//! - `media`: media-type constants.
//! - `manifest`: parsing and validating manifests and indexes over their raw bytes.
//! - `range`: HTTP `Range` (blob reads) and `Content-Range` (chunked uploads) grammars.
//! - `error`: the OCI error codes, their HTTP statuses and the JSON error body.
//! - `time`: unix seconds from the clock, RFC 3339 dates and civil-date arithmetic.
//!
//! Everything here is pure and deterministic, so it is unit-tested exhaustively beside the code.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;
pub mod range;
pub mod reference;
pub mod time;
pub mod upload_id;

pub use digest::{Algorithm, Digest, Hasher, hex};
pub use error::ErrorCode;
pub use name::RepoName;
pub use reference::{Reference, Tag};
pub use upload_id::UploadId;
