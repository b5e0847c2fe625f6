//! Password hashing and verification, and the htpasswd import format.
//!
//! This module owns how passwords are stored (argon2id PHC strings we write; argon2 and bcrypt
//! we accept) and how much a verification may cost. It must not know users or where hashes are
//! kept, and must never panic or run unbounded on a malformed stored hash: parameters beyond
//! fixed caps are refused rather than computed.

use std::collections::HashMap;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, Version};
use thiserror::Error;

use crate::secret::{RandomError, random_bytes};

/// Argon2 memory cost in KiB.
///
/// The parameters are deliberately light: registry clients send Basic credentials on *every*
/// request (docker login, then each push/pull round trip when bearer tokens are off), and a login
/// burst from a CI fleet verifies many passwords at once. At the OWASP "interactive" sizes
/// (19–64 MiB per verification) a few dozen concurrent requests would cost gigabytes of RAM. With
/// 4 MiB, 3 passes and one lane a verification costs a few milliseconds and 4 MiB, which still
/// makes offline guessing expensive per candidate.
pub const ARGON2_M_COST_KIB: u32 = 4096;
/// Argon2 passes (see [`ARGON2_M_COST_KIB`]).
pub const ARGON2_T_COST: u32 = 3;
/// Argon2 lanes (see [`ARGON2_M_COST_KIB`]).
pub const ARGON2_P_COST: u32 = 1;

/// Largest argon2 memory cost accepted from a stored hash (256 MiB): anything bigger is refused
/// rather than allocated, so a bad hash cannot exhaust memory.
const MAX_STORED_M_COST_KIB: u32 = 256 * 1024;
/// Largest argon2 pass count accepted from a stored hash.
const MAX_STORED_T_COST: u32 = 16;
/// Largest argon2 lane count accepted from a stored hash.
const MAX_STORED_P_COST: u32 = 16;
/// Largest bcrypt cost accepted (the maximum `htpasswd -C` allows); cost 31 would take hours.
pub const MAX_BCRYPT_COST: u32 = 17;

fn our_argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
        .expect("the fixed argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password as an argon2id PHC string (`$argon2id$v=19$m=4096,t=3,p=1$SALT$HASH`) with a
/// random 16-byte salt.
pub fn hash_password(pw: &str) -> Result<String, RandomError> {
    Ok(hash_with_salt(pw, &random_bytes::<16>()?))
}

fn hash_with_salt(pw: &str, salt: &[u8; 16]) -> String {
    our_argon2()
        .hash_password_with_salt(pw.as_bytes(), salt)
        .expect("argon2 hashing with fixed, valid parameters cannot fail")
        .to_string()
}

/// Whether `pw` matches `stored`: an argon2 PHC string (`$argon2id$`, `$argon2i$`, `$argon2d$`)
/// or a bcrypt hash (`$2a$`, `$2b$`, `$2x$`, `$2y$`). Anything else, including hashes whose cost
/// exceeds the caps, is `false`.
pub fn verify_password(stored: &str, pw: &str) -> bool {
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        verify_argon2(stored, pw)
    } else if bcrypt_cost(stored).is_some_and(|c| c <= MAX_BCRYPT_COST) {
        bcrypt::verify(pw, stored).unwrap_or(false)
    } else {
        false
    }
}

fn verify_argon2(stored: &str, pw: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_STORED_M_COST_KIB
        || params.t_cost() > MAX_STORED_T_COST
        || params.p_cost() > MAX_STORED_P_COST
    {
        return false;
    }
    let Ok(algorithm) = Algorithm::new(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.as_bytes().len()];
    let computed = with_blocks(blocks, |mem| {
        argon2
            .hash_password_into_with_memory(pw.as_bytes(), &salt, &mut out, mem)
            .is_ok()
    });
    computed && crate::secret::ct_eq(&out, expected.as_bytes())
}

/// Run `f` over `n` argon2 memory blocks taken from a small pool of reused buffers.
///
/// Why a pool: a verification needs 4 MiB. Allocated and freed each time, that block is
/// served by `mmap` and returned with `munmap`, and glibc then raises its dynamic mmap
/// threshold to 4 MiB, after which every later allocation below that size (request buffers,
/// blob chunks) stays in the heap arenas and is not given back: one login grew the server's
/// peak RSS by about 12 MiB in the benchmark. Buffers for our own parameters are kept instead
/// (at most one per concurrent verification, bounded below); larger stored parameters get a
/// one-off buffer.
fn with_blocks<R>(n: usize, f: impl FnOnce(&mut [argon2::Block]) -> R) -> R {
    static POOL: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());
    const KEEP: usize = 8;
    let standard = ARGON2_M_COST_KIB as usize;
    let pooled = if n <= standard {
        POOL.lock().unwrap_or_else(|e| e.into_inner()).pop()
    } else {
        None
    };
    let mut buf = pooled.unwrap_or_else(|| vec![argon2::Block::new(); n.max(standard)]);
    let r = f(&mut buf[..n]);
    if buf.len() == standard {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < KEEP {
            pool.push(buf);
        }
    }
    r
}

/// The cost of a bcrypt hash, if `s` has the shape `$2[abxy]$NN$<53 chars>`.
fn bcrypt_cost(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let shaped = b.len() == 60
        && s.is_ascii()
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$';
    shaped.then(|| u32::from(b[4] - b'0') * 10 + u32::from(b[5] - b'0'))
}

/// Spend the same work as verifying `pw` against one of our argon2 hashes, so a login for an
/// unknown user costs as much as one for a known user.
pub fn burn_equivalent_work(pw: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    // The dummy protects no secret: a fixed salt is as good as a random one here.
    let dummy = DUMMY.get_or_init(|| hash_with_salt("stowage: no such user", b"stowage-no-user!"));
    let _ = std::hint::black_box(verify_password(dummy, pw));
}

/// Why an htpasswd file was rejected.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum HtpasswdError {
    /// A line is not `user:hash`.
    #[error("htpasswd line {line}: expected user:hash")]
    Shape {
        /// 1-based line number.
        line: usize,
    },
    /// The username breaks [`valid_username`].
    #[error(
        "htpasswd line {line}: invalid username {user:?} (1 to 64 of A-Z a-z 0-9 . _ -, not \
         starting with '-' or '.')"
    )]
    Username {
        /// 1-based line number.
        line: usize,
        /// The rejected name.
        user: String,
    },
    /// The hash is not bcrypt.
    #[error(
        "htpasswd line {line}: the password hash is not bcrypt; only bcrypt hashes \
         (`htpasswd -B`) are supported"
    )]
    NotBcrypt {
        /// 1-based line number.
        line: usize,
    },
    /// The bcrypt cost is outside 4..=17.
    #[error("htpasswd line {line}: bcrypt cost {cost} is outside 4..=17 (`htpasswd -B -C`)")]
    Cost {
        /// 1-based line number.
        line: usize,
        /// The cost found.
        cost: u32,
    },
    /// A username appears twice.
    #[error("htpasswd line {line}: user {user:?} already appears on line {first}")]
    Duplicate {
        /// 1-based line number of the repeat.
        line: usize,
        /// The repeated name.
        user: String,
        /// 1-based line number of the first appearance.
        first: usize,
    },
}

/// Parse an htpasswd file: `user:hash` lines, blank lines and `#` comments skipped. Only bcrypt
/// hashes (`htpasswd -B`) are accepted; MD5-crypt, SHA-1 and crypt(3) entries are errors.
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, HtpasswdError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let entry = raw.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        let (user, hash) = entry.split_once(':').ok_or(HtpasswdError::Shape { line })?;
        if !valid_username(user) {
            let user = user.to_string();
            return Err(HtpasswdError::Username { line, user });
        }
        let cost = bcrypt_cost(hash).ok_or(HtpasswdError::NotBcrypt { line })?;
        if !(4..=MAX_BCRYPT_COST).contains(&cost) {
            return Err(HtpasswdError::Cost { line, cost });
        }
        if let Some(&first) = seen.get(user) {
            let user = user.to_string();
            return Err(HtpasswdError::Duplicate { line, user, first });
        }
        seen.insert(user, line);
        out.push((user.to_string(), hash.to_string()));
    }
    Ok(out)
}

/// Whether `s` is an acceptable username: 1 to 64 characters of `[A-Za-z0-9._-]`, not starting
/// with `-` or `.`.
pub fn valid_username(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with(['-', '.'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
