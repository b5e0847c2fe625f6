//! Just enough DER reading to show a certificate's expiry and names in logs and to check the
//! development CA's expiry (rcgen cannot parse certificates without an extra dependency, and
//! webpki does not expose these fields). Anything unexpected yields `None`/nothing: these
//! values inform, they never decide whether a certificate is accepted.

use stowage_oci::time::days_from_civil;

/// One TLV: (tag, contents, rest of input).
fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = next(input)?;
    (t == tag).then_some((contents, rest))
}

const SEQUENCE: u8 = 0x30;

/// The TBSCertificate fields after the issuer: validity onwards.
fn from_validity(cert: &[u8]) -> Option<&[u8]> {
    let (cert, _) = expect(cert, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    // Optional explicit version [0].
    let tbs = match next(tbs)? {
        (0xa0, _, rest) => rest,
        _ => tbs,
    };
    let (_, tbs) = expect(tbs, 0x02)?; // serialNumber
    let (_, tbs) = expect(tbs, SEQUENCE)?; // signature algorithm
    let (_, tbs) = expect(tbs, SEQUENCE)?; // issuer
    Some(tbs)
}

/// The certificate's notAfter, in seconds since the Unix epoch.
pub(super) fn not_after(cert: &[u8]) -> Option<i64> {
    let (validity, _) = expect(from_validity(cert)?, SEQUENCE)?;
    let (_, _, rest) = next(validity)?; // notBefore
    let (tag, time, _) = next(rest)?;
    parse_time(tag, time)
}

/// The DNS names and IP addresses of the subjectAltName extension, as text.
pub(super) fn subject_alt_names(cert: &[u8]) -> Vec<String> {
    sans(cert).unwrap_or_default()
}

fn sans(cert: &[u8]) -> Option<Vec<String>> {
    let (_, mut rest) = expect(from_validity(cert)?, SEQUENCE)?; // validity
    let (_, r) = expect(rest, SEQUENCE)?; // subject
    let (_, r) = expect(r, SEQUENCE)?; // subjectPublicKeyInfo
    rest = r;
    // Skip the optional unique ids [1] and [2]; extensions are [3].
    let mut extensions = None;
    while let Some((tag, contents, r)) = next(rest) {
        if tag == 0xa3 {
            extensions = Some(contents);
            break;
        }
        rest = r;
    }
    let (mut list, _) = expect(extensions?, SEQUENCE)?;
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
    while let Some((ext, r)) = expect(list, SEQUENCE) {
        list = r;
        let (oid, mut fields) = expect(ext, 0x06)?;
        if oid != SAN_OID {
            continue;
        }
        if let Some((0x01, _, r)) = next(fields) {
            fields = r; // critical flag
        }
        let (value, _) = expect(fields, 0x04)?;
        let (mut names, _) = expect(value, SEQUENCE)?;
        let mut out = Vec::new();
        while let Some((tag, contents, r)) = next(names) {
            names = r;
            match (tag, contents.len()) {
                (0x82, _) => out.push(String::from_utf8_lossy(contents).into_owned()),
                (0x87, 4) => {
                    let octets: [u8; 4] = contents.try_into().ok()?;
                    out.push(std::net::Ipv4Addr::from(octets).to_string());
                }
                (0x87, 16) => {
                    let octets: [u8; 16] = contents.try_into().ok()?;
                    out.push(std::net::Ipv6Addr::from(octets).to_string());
                }
                _ => {}
            }
        }
        return Some(out);
    }
    Some(Vec::new())
}

fn digits(s: &[u8]) -> Option<i64> {
    s.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ), the only forms DER allows.
fn parse_time(tag: u8, time: &[u8]) -> Option<i64> {
    let (year, rest) = match (tag, time.len()) {
        (0x17, 13) => {
            let yy = digits(&time[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &time[2..])
        }
        (0x18, 15) => (digits(&time[..4])?, &time[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let hour = digits(&rest[4..6])?;
    let minute = digits(&rest[6..8])?;
    let second = digits(&rest[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}
