//! Authentication and authorization primitives of Stowage, with no I/O and no HTTP.
//!
//! Layout:
//! - `scope`: the rights vocabulary (`Action`, `Actions`, with `admin` implying pull, push and
//!   delete) and the Docker token-scope grammar clients request (`repository:NAME:ACTIONS`,
//!   `registry:catalog:*`).
//! - `pattern`: stored permissions: repository globs (`*` within a path segment, `**` across),
//!   grants, a principal's `Rights`, and `grant_requested`, the token endpoint's intersection of
//!   requested scopes with held rights.
//! - `password`: argon2id hashing sized for per-request Basic auth, argon2/bcrypt verification,
//!   equal work for unknown users, and the (bcrypt-only) htpasswd format.
//! - `secret`: random bearer secrets (access and refresh tokens) stored as SHA-256 hashes, and
//!   the randomness, base64url and constant-time helpers behind them.
//! - `jwt`: registry bearer tokens as ES256 JWS, with the algorithm pinned, plus the JWK Set.
//!
//! Callers own storage, clocks and transport: every function takes the current time, the held
//! rights or the stored hash as an argument.

pub mod jwt;
pub mod password;
pub mod pattern;
pub mod scope;
pub mod secret;

pub use jwt::{Claims, JwtError, Signer, Verifier, generate_key, jwks};
pub use password::{
    HtpasswdError, burn_equivalent_work, hash_password, parse_htpasswd, valid_username,
    verify_password,
};
pub use pattern::{Access, Grant, GrantTarget, PatternError, RepoPattern, Rights, grant_requested};
pub use scope::{Action, Actions, Resource, Scope, ScopeError, parse_scope, parse_scopes};
pub use secret::{NewSecret, RandomError, new_access_token, new_refresh_token};
