//! The only `unsafe` code in Stowage: SHA-256/SHA-512 driven through aws-lc's `SHA*_CTX` structs.
//!
//! Owns the raw hash contexts and the invariants the C code relies on. aws-lc's `digest::Context`
//! (in aws-lc-rs) is equally fast but opaque; holding the plain `#[repr(C)]` contexts ourselves
//! lets the running state be exported and rebuilt, so a chunked upload can resume after a restart
//! without re-reading its stored bytes. aws-lc picks SHA-NI, AVX2 or SSSE3 assembly at run time,
//! so this stays fast on CPUs without SHA extensions, where pure-Rust SHA-256 is much slower.
//!
//! This module must not grow: it does no encoding (that is `state.rs`, safe code) and no I/O.
//! Every `Sha2Ctx` value satisfies, at all times:
//! - `num < block size` (64 or 128), so the C code's `memcpy(data + num, ..)` stays in bounds;
//! - `md_len` equals the digest length (32 or 64), so `SHA512_Final`, which writes `md_len`
//!   bytes, never writes past our 64-byte output buffer, and `SHA256_Final` never fails;
//! - every field is initialised (contexts start as zeroed Rust values, never `MaybeUninit`).
//!
//! The contexts hold no pointers, so Rust may move them and `Clone` them bitwise.
//!
//! `new` establishes them through `SHA*_Init`; `from_midstate` builds the struct field by field in
//! safe Rust after checking its inputs; aws-lc's update and final functions preserve them.

#![allow(unsafe_code)]

use std::os::raw::c_uint;
use std::sync::Once;

use aws_lc_sys::{
    CRYPTO_library_init, SHA256_CTX, SHA256_Final, SHA256_Init, SHA256_Update, SHA512_CTX,
    SHA512_Final, SHA512_Init, SHA512_Update,
};

use super::Algorithm;

const SHA256_BLOCK: usize = 64;
const SHA512_BLOCK: usize = 128;
const SHA256_OUT: usize = 32;
const SHA512_OUT: usize = 64;

// The field layout is bindgen's business (its own layout tests check it against the C header);
// these only make an aws-lc-sys upgrade that reshapes the contexts stop the build, so someone
// re-reads aws-lc's sha256.c/sha512.c before the invariants above are trusted again.
const _: () = assert!(size_of::<SHA256_CTX>() == 112);
const _: () = assert!(size_of::<SHA512_CTX>() == 216);

/// The longest digest this module produces.
pub(super) const MAX_OUT: usize = SHA512_OUT;

/// A running SHA-2 computation. See the module docs for the invariants every value upholds.
#[derive(Clone)]
pub(super) enum Sha2Ctx {
    Sha256(SHA256_CTX),
    Sha512(SHA512_CTX),
}

/// Make sure aws-lc has probed the CPU before the first block is hashed. On most builds a static
/// constructor already did it and this is a no-op; where it did not, skipping it would silently
/// fall back to the slowest code path.
fn library_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: takes no arguments, is idempotent and thread-safe (aws-lc guards it with its
        // own once), and only sets aws-lc's CPU capability variables.
        unsafe { CRYPTO_library_init() }
    });
}

fn zero256() -> SHA256_CTX {
    SHA256_CTX {
        h: [0; 8],
        Nl: 0,
        Nh: 0,
        data: [0; SHA256_BLOCK],
        num: 0,
        md_len: 0,
    }
}

fn zero512() -> SHA512_CTX {
    SHA512_CTX {
        h: [0; 8],
        Nl: 0,
        Nh: 0,
        p: [0; SHA512_BLOCK],
        num: 0,
        md_len: 0,
    }
}

impl Sha2Ctx {
    /// A fresh context.
    pub(super) fn new(algorithm: Algorithm) -> Sha2Ctx {
        library_init();
        match algorithm {
            Algorithm::Sha256 => {
                let mut c = zero256();
                // SAFETY: `c` is a live, fully initialised SHA256_CTX owned by us; SHA256_Init
                // only writes its fields (h, counters, num = 0, md_len = 32) and always returns 1.
                unsafe { SHA256_Init(&mut c) };
                Sha2Ctx::Sha256(c)
            }
            Algorithm::Sha512 => {
                let mut c = zero512();
                // SAFETY: as above; SHA512_Init sets h, counters, num = 0 and md_len = 64.
                unsafe { SHA512_Init(&mut c) };
                Sha2Ctx::Sha512(c)
            }
        }
    }

    pub(super) fn algorithm(&self) -> Algorithm {
        match self {
            Sha2Ctx::Sha256(_) => Algorithm::Sha256,
            Sha2Ctx::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feed bytes.
    pub(super) fn update(&mut self, data: &[u8]) {
        match self {
            // SAFETY: `c` upholds the module invariants (num < 64), which is all SHA256_Update
            // needs to keep its buffer copies in bounds; `data` is a valid slice for its length
            // and is only read (an empty slice's dangling pointer is never read: len 0 returns
            // at once). The function always returns 1.
            Sha2Ctx::Sha256(c) => unsafe { SHA256_Update(c, data.as_ptr().cast(), data.len()) },
            // SAFETY: as above with num < 128 for SHA512_Update.
            Sha2Ctx::Sha512(c) => unsafe { SHA512_Update(c, data.as_ptr().cast(), data.len()) },
        };
    }

    /// Finish; returns the output buffer and how many of its bytes are the digest.
    pub(super) fn finish(self) -> ([u8; MAX_OUT], usize) {
        let mut out = [0u8; MAX_OUT];
        match self {
            Sha2Ctx::Sha256(mut c) => {
                // SAFETY: `out` has 64 >= 32 writable bytes; `c` upholds the invariants
                // (num < 64 for the padding write, md_len == 32 so Final succeeds).
                let ok = unsafe { SHA256_Final(out.as_mut_ptr(), &mut c) };
                assert_eq!(ok, 1, "SHA256_Final refused a context: invariant broken");
                (out, SHA256_OUT)
            }
            Sha2Ctx::Sha512(mut c) => {
                // SAFETY: SHA512_Final writes `md_len` bytes, which the invariants pin to 64, the
                // size of `out`; num < 128 keeps the padding write inside `c.p`.
                let ok = unsafe { SHA512_Final(out.as_mut_ptr(), &mut c) };
                assert_eq!(ok, 1, "SHA512_Final refused a context: invariant broken");
                (out, SHA512_OUT)
            }
        }
    }

    /// Bytes hashed so far, from aws-lc's own bit counter.
    pub(super) fn len(&self) -> u64 {
        match self {
            Sha2Ctx::Sha256(c) => ((u64::from(c.Nh) << 32) | u64::from(c.Nl)) >> 3,
            // Nh holds bits 64.. of the count; a u64 byte count never reaches past bit 66.
            Sha2Ctx::Sha512(c) => (((u128::from(c.Nh) << 64) | u128::from(c.Nl)) >> 3) as u64,
        }
    }

    /// Append the chaining value (the eight state words) in big-endian order, the standard
    /// encoding of a SHA-2 intermediate hash value.
    pub(super) fn chaining_value(&self, out: &mut Vec<u8>) {
        match self {
            Sha2Ctx::Sha256(c) => {
                c.h.iter()
                    .for_each(|w| out.extend_from_slice(&w.to_be_bytes()))
            }
            Sha2Ctx::Sha512(c) => {
                c.h.iter()
                    .for_each(|w| out.extend_from_slice(&w.to_be_bytes()))
            }
        }
    }

    /// The buffered bytes not yet compressed (fewer than one block).
    pub(super) fn tail(&self) -> &[u8] {
        // `min` is belt and braces: the invariants already give num < block size.
        match self {
            Sha2Ctx::Sha256(c) => &c.data[..(c.num as usize).min(SHA256_BLOCK)],
            Sha2Ctx::Sha512(c) => &c.p[..(c.num as usize).min(SHA512_BLOCK)],
        }
    }

    /// Rebuild a context from its parts: `len` bytes hashed, the big-endian `chaining` value after
    /// the last whole block, and the `tail` bytes after it. None unless the parts are consistent
    /// (`tail` is exactly `len` mod the block size, `chaining` has the right length, and the bit
    /// count fits), which is what makes the result uphold the module invariants.
    pub(super) fn from_midstate(
        algorithm: Algorithm,
        len: u64,
        chaining: &[u8],
        tail: &[u8],
    ) -> Option<Sha2Ctx> {
        library_init();
        match algorithm {
            Algorithm::Sha256 => {
                // SHA-256 counts at most 2^64 - 1 bits.
                let bits = len.checked_mul(8)?;
                if chaining.len() != 8 * 4 || tail.len() as u64 != len % SHA256_BLOCK as u64 {
                    return None;
                }
                let mut c = zero256();
                for (w, b) in c.h.iter_mut().zip(chaining.chunks_exact(4)) {
                    *w = u32::from_be_bytes(b.try_into().ok()?);
                }
                c.Nl = bits as u32;
                c.Nh = (bits >> 32) as u32;
                c.data[..tail.len()].copy_from_slice(tail);
                c.num = tail.len() as c_uint;
                c.md_len = SHA256_OUT as c_uint;
                Some(Sha2Ctx::Sha256(c))
            }
            Algorithm::Sha512 => {
                if chaining.len() != 8 * 8 || tail.len() as u64 != len % SHA512_BLOCK as u64 {
                    return None;
                }
                let bits = u128::from(len) * 8;
                let mut c = zero512();
                for (w, b) in c.h.iter_mut().zip(chaining.chunks_exact(8)) {
                    *w = u64::from_be_bytes(b.try_into().ok()?);
                }
                c.Nl = bits as u64;
                c.Nh = (bits >> 64) as u64;
                c.p[..tail.len()].copy_from_slice(tail);
                c.num = tail.len() as c_uint;
                c.md_len = SHA512_OUT as c_uint;
                Some(Sha2Ctx::Sha512(c))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    fn oneshot(alg: Algorithm, data: &[u8]) -> Vec<u8> {
        let mut c = Sha2Ctx::new(alg);
        c.update(data);
        let (out, n) = c.finish();
        out[..n].to_vec()
    }

    #[test]
    fn known_answers() {
        // FIPS 180-4 "abc" vectors.
        assert_eq!(
            hex(&oneshot(Algorithm::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&oneshot(Algorithm::Sha512, b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[test]
    fn fresh_context_matches_the_standard_initial_value() {
        let mut cv = Vec::new();
        Sha2Ctx::new(Algorithm::Sha256).chaining_value(&mut cv);
        assert_eq!(&cv[..4], &0x6a09e667u32.to_be_bytes());
        let mut cv = Vec::new();
        Sha2Ctx::new(Algorithm::Sha512).chaining_value(&mut cv);
        assert_eq!(&cv[..8], &0x6a09e667f3bcc908u64.to_be_bytes());
    }

    #[test]
    fn len_and_tail_track_the_input() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let block = if alg == Algorithm::Sha256 { 64 } else { 128 };
            let mut c = Sha2Ctx::new(alg);
            let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
            let mut fed = 0;
            for piece in data.chunks(37) {
                c.update(piece);
                fed += piece.len();
                assert_eq!(c.len(), fed as u64);
                assert_eq!(c.tail(), &data[fed - fed % block..fed]);
            }
        }
    }

    #[test]
    fn from_midstate_rejects_inconsistent_parts() {
        let cv256 = [0u8; 32];
        let cv512 = [0u8; 64];
        let a = Algorithm::Sha256;
        let b = Algorithm::Sha512;
        assert!(Sha2Ctx::from_midstate(a, 3, &cv256, b"abc").is_some());
        assert!(Sha2Ctx::from_midstate(a, 3, &cv256, b"ab").is_none());
        assert!(Sha2Ctx::from_midstate(a, 64, &cv256, &[0; 64]).is_none());
        assert!(Sha2Ctx::from_midstate(a, 3, &cv512, b"abc").is_none());
        assert!(Sha2Ctx::from_midstate(a, u64::MAX, &cv256, &[0; 63]).is_none());
        assert!(Sha2Ctx::from_midstate(b, 3, &cv256, b"abc").is_none());
        assert!(Sha2Ctx::from_midstate(b, 128, &cv512, &[0; 128]).is_none());
        assert!(Sha2Ctx::from_midstate(b, 127, &cv512, &[0; 127]).is_some());
        let huge = Sha2Ctx::from_midstate(b, u64::MAX, &cv512, &[0; 127]).unwrap();
        assert_eq!(huge.len(), u64::MAX);
    }
}
