//! The saved form of a running hasher, so an upload can resume after a restart.
//!
//! Owns the byte format behind `Hasher::save_state` / `Hasher::restore_state`. It encodes the
//! standard SHA-2 midstate (chaining value, byte count, unprocessed tail), not a memory image of
//! aws-lc's struct, so it carries no padding, no host byte order and no stale buffer bytes. It
//! must not touch the C contexts itself: `ffi::Sha2Ctx::from_midstate` re-checks what it is given.
//!
//! Format, version 1 (all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `STWH` (Stowage hasher) |
//! | 4 | 1 | format version, 1 |
//! | 5 | 1 | backend that wrote it, 1 = aws-lc `SHA*_CTX` |
//! | 6 | 1 | algorithm, 1 = sha256, 2 = sha512 |
//! | 7 | 1 | tail length `n` |
//! | 8 | 8 | bytes hashed so far |
//! | 16 | 32 or 64 | chaining value after the last whole block |
//! | 48 or 80 | `n` | tail: the bytes after the last whole block, `n` = count mod block size |
//! | end − 8 | 8 | first 8 bytes of SHA-256 over everything before |
//!
//! So a state is 56–119 bytes for sha256 and 88–215 bytes for sha512. The checksum turns a
//! damaged row into "re-hash from storage" rather than a wrong digest at the final PUT, where the
//! client would see DIGEST_INVALID for a correct upload. Readers accept only the version and
//! backend ids they know; anything else decodes to None and the caller re-hashes.

use super::Algorithm;
use super::ffi::Sha2Ctx;

const MAGIC: &[u8; 4] = b"STWH";
const VERSION: u8 = 1;
/// aws-lc's contexts. The midstate is implementation-neutral, but tagging the writer lets a
/// future backend decide for itself whether to trust states it did not write.
const BACKEND_AWS_LC: u8 = 1;
const HEADER: usize = 16;
const CHECKSUM: usize = 8;

fn algorithm_id(a: Algorithm) -> u8 {
    match a {
        Algorithm::Sha256 => 1,
        Algorithm::Sha512 => 2,
    }
}

fn algorithm_from_id(id: u8) -> Option<Algorithm> {
    match id {
        1 => Some(Algorithm::Sha256),
        2 => Some(Algorithm::Sha512),
        _ => None,
    }
}

/// Bytes of chaining value and block size for an algorithm.
fn geometry(a: Algorithm) -> (usize, usize) {
    match a {
        Algorithm::Sha256 => (32, 64),
        Algorithm::Sha512 => (64, 128),
    }
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM] {
    let mut c = Sha2Ctx::new(Algorithm::Sha256);
    c.update(bytes);
    let (out, _) = c.finish();
    let mut sum = [0u8; CHECKSUM];
    sum.copy_from_slice(&out[..CHECKSUM]);
    sum
}

/// Encode a running context.
pub(super) fn save(ctx: &Sha2Ctx) -> Vec<u8> {
    let algorithm = ctx.algorithm();
    let (cv_len, _) = geometry(algorithm);
    let tail = ctx.tail();
    let mut out = Vec::with_capacity(HEADER + cv_len + tail.len() + CHECKSUM);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(BACKEND_AWS_LC);
    out.push(algorithm_id(algorithm));
    // A tail is shorter than a block (at most 127 bytes), so it fits a byte.
    out.push(tail.len() as u8);
    out.extend_from_slice(&ctx.len().to_be_bytes());
    ctx.chaining_value(&mut out);
    out.extend_from_slice(tail);
    let sum = checksum(&out);
    out.extend_from_slice(&sum);
    out
}

/// Decode a saved state; None on anything unexpected.
pub(super) fn restore(bytes: &[u8]) -> Option<Sha2Ctx> {
    let (body, sum) = bytes.split_last_chunk::<CHECKSUM>()?;
    let (header, rest) = body.split_first_chunk::<HEADER>()?;
    let [m0, m1, m2, m3, version, backend, alg, tail_len, count @ ..] = *header;
    if [m0, m1, m2, m3] != *MAGIC || version != VERSION || backend != BACKEND_AWS_LC {
        return None;
    }
    let algorithm = algorithm_from_id(alg)?;
    let (cv_len, block) = geometry(algorithm);
    let len = u64::from_be_bytes(count);
    let tail_len = usize::from(tail_len);
    if tail_len >= block || rest.len() != cv_len + tail_len || len % block as u64 != tail_len as u64
    {
        return None;
    }
    if checksum(body) != *sum {
        return None;
    }
    let (chaining, tail) = rest.split_at(cv_len);
    Sha2Ctx::from_midstate(algorithm, len, chaining, tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Digest, Hasher};

    const BOTH: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// xorshift64: reproducible, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Recompute the checksum after editing a state, so the structural checks are what reject it.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - CHECKSUM;
        let sum = checksum(&bytes[..body]);
        bytes[body..].copy_from_slice(&sum);
        bytes
    }

    fn saved(alg: Algorithm, data: &[u8]) -> Vec<u8> {
        let mut h = Hasher::new(alg);
        h.update(data);
        h.save_state()
    }

    #[test]
    fn format_is_as_documented() {
        let s = saved(Algorithm::Sha256, b"abc");
        assert_eq!(s.len(), HEADER + 32 + 3 + CHECKSUM);
        assert_eq!(&s[..4], b"STWH");
        assert_eq!(s[4..8], [VERSION, BACKEND_AWS_LC, 1, 3]);
        assert_eq!(s[8..16], 3u64.to_be_bytes());
        // No block was compressed yet, so the chaining value is SHA-256's initial value.
        assert_eq!(s[16..20], 0x6a09e667u32.to_be_bytes());
        assert_eq!(s[44..48], 0x5be0cd19u32.to_be_bytes());
        assert_eq!(&s[48..51], b"abc");
        assert_eq!(s[51..], checksum(&s[..51]));
    }

    #[test]
    fn sizes_stay_small() {
        for (alg, min, max) in [(Algorithm::Sha256, 56, 119), (Algorithm::Sha512, 88, 215)] {
            let (_, block) = geometry(alg);
            let data = vec![7u8; 3 * block];
            let sizes: Vec<usize> = (0..=data.len())
                .map(|n| saved(alg, &data[..n]).len())
                .collect();
            assert_eq!(*sizes.iter().min().unwrap(), min);
            assert_eq!(*sizes.iter().max().unwrap(), max);
        }
    }

    #[test]
    fn resumes_at_every_small_offset() {
        let data = Rng(1).bytes(600);
        for alg in BOTH {
            let want = Digest::of(alg, &data);
            for off in 0..=200 {
                let state = saved(alg, &data[..off]);
                let mut h = Hasher::restore_state(&state).expect("own state restores");
                assert_eq!(h.algorithm(), alg);
                assert_eq!(h.len(), off as u64);
                h.update(&data[off..]);
                assert_eq!(h.finish(), want, "{alg:?} at offset {off}");
            }
        }
    }

    #[test]
    fn resumes_across_a_chain_of_random_chunks() {
        // Like a chunked upload: every PATCH ends with save, every next one starts with restore.
        let mut rng = Rng(0x5eed);
        let data = rng.bytes(1_000_000);
        for alg in BOTH {
            let want = Digest::of(alg, &data);
            for _round in 0..4 {
                let mut cuts: Vec<usize> = (0..24).map(|_| rng.below(data.len())).collect();
                cuts.push(data.len());
                cuts.sort_unstable();
                let mut state = Hasher::new(alg).save_state();
                let mut at = 0;
                for cut in cuts {
                    let mut h = Hasher::restore_state(&state).unwrap();
                    assert_eq!(h.len(), at as u64);
                    h.update(&data[at..cut]);
                    at = cut;
                    state = h.save_state();
                }
                assert_eq!(Hasher::restore_state(&state).unwrap().finish(), want);
            }
        }
    }

    #[test]
    fn state_is_canonical_whatever_the_chunking() {
        // Equal input gives equal bytes: no stale buffer contents, no dependence on update sizes.
        let data = Rng(9).bytes(5000);
        for alg in BOTH {
            let whole = saved(alg, &data);
            let mut h = Hasher::new(alg);
            for piece in data.chunks(77) {
                h.update(piece);
            }
            assert_eq!(h.save_state(), whole);
        }
    }

    #[test]
    fn round_trips_through_clone() {
        let data = Rng(3).bytes(10_000);
        for alg in BOTH {
            let mut h = Hasher::new(alg);
            h.update(&data[..4321]);
            let c = h.clone();
            assert_eq!(c.save_state(), h.save_state());
            let mut r = Hasher::restore_state(&c.save_state()).unwrap();
            assert_eq!(r.clone().save_state(), h.save_state());
            r.update(&data[4321..]);
            h.update(&data[4321..]);
            assert_eq!(r.finish(), h.finish());
        }
    }

    #[test]
    fn refuses_truncated_and_extended() {
        for alg in BOTH {
            let s = saved(alg, b"some bytes that leave a tail");
            for n in 0..s.len() {
                assert!(
                    Hasher::restore_state(&s[..n]).is_none(),
                    "{alg:?} prefix {n}"
                );
                if n + CHECKSUM == s.len() {
                    // Resealing the untouched body just rebuilds the original.
                    continue;
                }
                let resealed = reseal(s[..n].iter().copied().chain([0; 8]).collect());
                assert!(
                    Hasher::restore_state(&resealed).is_none(),
                    "{alg:?} resealed {n}"
                );
            }
            let mut longer = s.clone();
            longer.push(0);
            assert!(Hasher::restore_state(&longer).is_none());
            assert!(Hasher::restore_state(&reseal(longer)).is_none());
        }
    }

    #[test]
    fn refuses_every_single_bit_flip() {
        // The checksum catches damage anywhere, including in the chaining value and tail, where
        // no structural check could.
        for alg in BOTH {
            let s = saved(alg, &[0xa5; 300]);
            for i in 0..s.len() * 8 {
                let mut bad = s.clone();
                bad[i / 8] ^= 1 << (i % 8);
                assert!(Hasher::restore_state(&bad).is_none(), "{alg:?} bit {i}");
            }
        }
    }

    #[test]
    fn refuses_foreign_header_fields_even_when_resealed() {
        for alg in BOTH {
            let s = saved(alg, b"abc");
            let edit = |at: usize, v: u8| {
                let mut b = s.clone();
                b[at] = v;
                reseal(b)
            };
            assert!(Hasher::restore_state(&reseal(s.clone())).is_some());
            assert!(Hasher::restore_state(&edit(0, b'X')).is_none(), "magic");
            assert!(
                Hasher::restore_state(&edit(4, 2)).is_none(),
                "other version"
            );
            assert!(
                Hasher::restore_state(&edit(4, 0)).is_none(),
                "other version"
            );
            assert!(
                Hasher::restore_state(&edit(5, 2)).is_none(),
                "other backend"
            );
            assert!(
                Hasher::restore_state(&edit(6, 0)).is_none(),
                "unknown algorithm"
            );
            let other = if alg == Algorithm::Sha256 { 2 } else { 1 };
            assert!(
                Hasher::restore_state(&edit(6, other)).is_none(),
                "other algorithm"
            );
            assert!(Hasher::restore_state(&edit(7, 2)).is_none(), "tail length");
            assert!(
                Hasher::restore_state(&edit(15, 4)).is_none(),
                "count vs tail"
            );
        }
    }

    #[test]
    fn tail_length_must_stay_below_the_block_size() {
        // A full block as "tail" would be an out-of-bounds write in C if it got through.
        for alg in BOTH {
            let (cv, block) = geometry(alg);
            let mut b = saved(alg, &vec![1u8; block - 1]);
            b.truncate(b.len() - CHECKSUM);
            b[7] = block as u8;
            b[8..16].copy_from_slice(&(block as u64).to_be_bytes());
            b.push(1);
            assert_eq!(b.len(), HEADER + cv + block);
            b.extend_from_slice(&[0; CHECKSUM]);
            assert!(Hasher::restore_state(&reseal(b)).is_none());
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let seeds = [
            saved(Algorithm::Sha256, b""),
            saved(Algorithm::Sha256, &[3; 63]),
            saved(Algorithm::Sha512, b"x"),
            saved(Algorithm::Sha512, &[4; 255]),
        ];
        let mut accepted = 0;
        for i in 0..200_000 {
            let input = match i % 4 {
                // Pure noise, sometimes with a valid-looking header.
                0 => {
                    let n = rng.below(260);
                    rng.bytes(n)
                }
                1 => {
                    let n = rng.below(260).max(8);
                    let mut b = rng.bytes(n);
                    b[..4].copy_from_slice(MAGIC);
                    b
                }
                // Mutations of real states, resealed so only the structural checks stand guard.
                _ => {
                    let mut b = seeds[rng.below(seeds.len())].clone();
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(b.len());
                        b[at] = rng.next() as u8;
                    }
                    if rng.below(4) == 0 {
                        b.truncate(rng.below(b.len()));
                    }
                    if b.len() >= HEADER + CHECKSUM && i % 4 == 3 {
                        b = reseal(b);
                    }
                    b
                }
            };
            if let Some(mut h) = Hasher::restore_state(&input) {
                // Whatever got through must still be usable.
                accepted += 1;
                h.update(b"more");
                let _ = h.save_state();
                let _ = h.finish();
            }
        }
        // Resealed edits of the chaining value are indistinguishable from real states.
        assert!(accepted > 0);
    }
}
