//! Byte ranges: the `Range` request header on blob GETs (RFC 9110 section 14) and the
//! `Content-Range` header on chunked-upload PATCHes (distribution spec: `<start>-<end>`).

/// The outcome of applying a `Range` header to a blob of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Serve the whole blob with 200 (no header, another unit, or several ranges).
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Apply a `Range` header value to a blob of `len` bytes.
///
/// A range whose end is past the blob is truncated; only a first byte at or past the length is
/// unsatisfiable. Malformed byte ranges are unsatisfiable too, so bad input gets a 4xx.
pub fn apply_range(header: &str, len: u64) -> RangeOutcome {
    let header = header.trim();
    let Some(spec) = header.strip_prefix("bytes=") else {
        // RFC 9110: a server ignores a Range with a unit it does not understand.
        return if header.contains('=') {
            RangeOutcome::Full
        } else {
            RangeOutcome::Unsatisfiable
        };
    };
    if spec.contains(',') {
        // Multiple ranges: allowed to answer with the whole representation, but only when each
        // part is well-formed.
        return if spec.split(',').all(|p| parse_one(p.trim()).is_some()) {
            RangeOutcome::Full
        } else {
            RangeOutcome::Unsatisfiable
        };
    }
    match parse_one(spec.trim()) {
        None => RangeOutcome::Unsatisfiable,
        Some(Spec::From { start, end }) => {
            if start >= len {
                return RangeOutcome::Unsatisfiable;
            }
            // `start < len` here, so `len >= 1`.
            let last = len - 1;
            let end = end.map_or(last, |e| e.min(last));
            RangeOutcome::Partial { start, end }
        }
        Some(Spec::Suffix(n)) => {
            if n == 0 || len == 0 {
                return RangeOutcome::Unsatisfiable;
            }
            let n = n.min(len);
            RangeOutcome::Partial {
                start: len - n,
                end: len - 1,
            }
        }
    }
}

enum Spec {
    From { start: u64, end: Option<u64> },
    Suffix(u64),
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_one(s: &str) -> Option<Spec> {
    let (a, b) = s.split_once('-')?;
    if a.is_empty() {
        return digits(b).map(Spec::Suffix);
    }
    let start = digits(a)?;
    if b.is_empty() {
        return Some(Spec::From { start, end: None });
    }
    let end = digits(b)?;
    (end >= start).then_some(Spec::From {
        start,
        end: Some(end),
    })
}

/// The number of bytes in the inclusive range `start..=end`: None when `end < start` or the
/// count does not fit in a `u64` (`0-18446744073709551615`), so callers never wrap.
pub fn range_len(start: u64, end: u64) -> Option<u64> {
    end.checked_sub(start)?.checked_add(1)
}

/// Parse the `Content-Range` of a chunk upload into inclusive `(start, end)`.
///
/// The spec form is `<start>-<end>`; the RFC forms `bytes <start>-<end>/<len|*>` and the
/// occasional `bytes=<start>-<end>` are accepted too since real clients send them.
pub fn parse_content_range(header: &str) -> Option<(u64, u64)> {
    let s = header.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s)
        .trim();
    let s = match s.split_once('/') {
        Some((r, total)) => {
            if total != "*" && digits(total).is_none() {
                return None;
            }
            r
        }
        None => s,
    };
    let (a, b) = s.split_once('-')?;
    let (start, end) = (digits(a)?, digits(b)?);
    (end >= start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::*;

    #[test]
    fn single_ranges() {
        assert_eq!(apply_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            apply_range("bytes=90-200", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            apply_range("bytes=50-", 100),
            Partial { start: 50, end: 99 }
        );
        assert_eq!(
            apply_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            apply_range("bytes=-1000", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            apply_range("bytes=99-99", 100),
            Partial { start: 99, end: 99 }
        );
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(apply_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(apply_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(apply_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(apply_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(apply_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn malformed_and_multi() {
        for bad in [
            "bytes=",
            "bytes=abc",
            "bytes=5-2",
            "bytes=1-2-3",
            "bytes=--1",
            "bytes= x",
            "garbage",
            "bytes=0x1-2",
        ] {
            assert_eq!(apply_range(bad, 100), Unsatisfiable, "{bad}");
        }
        assert_eq!(apply_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(apply_range("bytes=0-1,x", 100), Unsatisfiable);
        assert_eq!(apply_range("items=0-1", 100), Full);
    }

    #[test]
    fn lengths_never_wrap() {
        assert_eq!(range_len(0, 0), Some(1));
        assert_eq!(range_len(5, 9), Some(5));
        assert_eq!(range_len(9, 5), None);
        assert_eq!(range_len(0, u64::MAX), None);
        assert_eq!(range_len(1, u64::MAX), Some(u64::MAX));
        assert_eq!(range_len(u64::MAX, u64::MAX), Some(1));
        // Parsing accepts such a range (it is well-formed); the upload refuses it.
        assert_eq!(
            parse_content_range("0-18446744073709551615"),
            Some((0, u64::MAX))
        );
        assert_eq!(parse_content_range("0-18446744073709551616"), None);
        assert_eq!(
            apply_range("bytes=0-18446744073709551615", 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            apply_range("bytes=-18446744073709551615", 10),
            Partial { start: 0, end: 9 }
        );
        assert_eq!(
            apply_range("bytes=18446744073709551615-", 10),
            Unsatisfiable
        );
    }

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("0-21"), Some((0, 21)));
        assert_eq!(parse_content_range("bytes 22-41/42"), Some((22, 41)));
        assert_eq!(parse_content_range("bytes 22-41/*"), Some((22, 41)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        for bad in [
            "",
            "-",
            "5-",
            "-5",
            "10-5",
            "a-b",
            "1-2/x",
            "1 - 2",
            "bytes 1-2/",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }
}
