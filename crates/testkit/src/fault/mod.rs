//! Fault injection for the reliability tests, deterministic from a seed.
//!
//! - `plan`: [`FaultPlan`], the rules deciding which call fails and how (the Nth call of an
//!   operation, every call while armed, or at random with a rate), shared by everything below;
//!   it is also the filesystem backend's I/O hook (`FsBlobStore::with_io_hook`) for short and
//!   torn writes and failing fsyncs, links and renames.
//! - `wrap`: [`Faulty`], a `BlobStore`, `MetadataStore` (with `Inventory`) or `AuthStore`
//!   whose calls fail as the plan says (transient errors, full disk, latency, lost connections).
//! - `proxy`: [`FaultProxy`], a TCP proxy on loopback with switchable network faults (resets,
//!   stalls, 5xx answers, slow bytes, truncated bodies), to put in front of a server.

pub mod plan;
pub mod proxy;
pub mod wrap;

pub use plan::{Fault, FaultPlan, Injected, Rng, Trigger};
pub use proxy::{FaultProxy, NetFault};
pub use wrap::Faulty;
