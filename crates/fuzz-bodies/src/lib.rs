//! The body of every fuzz target, as plain functions, so the `cargo fuzz` targets in `fuzz/`
//! (nightly, libFuzzer) and the replay test of the committed corpora (`tests/replay.rs`,
//! stable, part of the workspace's test run) call the very same code.
//!
//! A body takes the fuzzer's bytes, feeds them to one parser that reads untrusted input,
//! checks what the answer promises (round trips, bounds, that nothing escapes a directory) by
//! panicking when a promise is broken, and returns a label naming the outcome: `ok-...` for
//! the kinds of success and the error variant otherwise. The replay test collects the labels a
//! target's corpus produces and requires exactly the target's `outcomes`, so a corpus that
//! stops reaching an error variant (or a parser that grows one) fails the test.
//!
//! Layout: `oci` (names, references, digests, ranges, manifests), `routes` (the server's
//! request parser), `auth` (scopes and grants, JWTs and key sets, htpasswd), `client`
//! (`WWW-Authenticate` challenges, credential files), `config` (the server's TOML file),
//! `unpack` (layers built from the bytes, unpacked into a scratch directory), `input` (the
//! small cursor structured targets read their bytes with).

pub mod auth;
pub mod client;
pub mod config;
pub mod input;
pub mod oci;
pub mod routes;
pub mod unpack;

/// One fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` binary and the
/// `fuzz/corpus/<name>` directory), its body, and every label its corpus must produce.
pub struct Target {
    pub name: &'static str,
    pub body: fn(&[u8]) -> &'static str,
    pub outcomes: &'static [&'static str],
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    oci::NAME,
    oci::REFERENCE,
    oci::DIGEST,
    oci::RANGE,
    oci::MANIFEST,
    routes::ROUTES,
    auth::SCOPE,
    auth::JWT,
    auth::HTPASSWD,
    client::CHALLENGE,
    client::CREDENTIALS,
    config::CONFIG,
    unpack::UNPACK,
];

/// The target called `name`.
pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target {name:?}"))
}
