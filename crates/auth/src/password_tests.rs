//! Unit tests for `password`: hashing round trips, accepted formats, cost caps, garbage input,
//! timing, and the htpasswd parser.

use std::time::{Duration, Instant};

use super::*;

fn bcrypt_y(pw: &str, cost: u32) -> String {
    bcrypt::hash_with_result(pw, cost)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

#[test]
fn argon2_round_trip() {
    let h = hash_password("correct horse").unwrap();
    assert!(h.starts_with("$argon2id$v=19$m=4096,t=3,p=1$"), "{h}");
    assert!(verify_password(&h, "correct horse"));
    assert!(!verify_password(&h, "correct horse "));
    assert!(!verify_password(&h, ""));
    assert_ne!(
        h,
        hash_password("correct horse").unwrap(),
        "salts must differ"
    );

    let empty = hash_password("").unwrap();
    assert!(verify_password(&empty, ""));
    assert!(!verify_password(&empty, "x"));
}

#[test]
fn other_argon2_variants_verify() {
    let params = Params::new(1024, 1, 1, None).unwrap();
    for (alg, prefix) in [
        (Algorithm::Argon2i, "$argon2i$"),
        (Algorithm::Argon2d, "$argon2d$"),
    ] {
        let h = Argon2::new(alg, Version::V0x13, params.clone())
            .hash_password_with_salt(b"pw", b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(h.starts_with(prefix), "{h}");
        assert!(verify_password(&h, "pw"));
        assert!(!verify_password(&h, "pW"));
    }
}

#[test]
fn bcrypt_htpasswd_hashes_verify() {
    let h = bcrypt_y("s3cret", 5);
    assert!(h.starts_with("$2y$05$"), "{h}");
    assert!(verify_password(&h, "s3cret"));
    assert!(!verify_password(&h, "s3cret!"));
    // The other prefixes name the same algorithm for ASCII passwords.
    for prefix in ["$2a$", "$2b$", "$2x$"] {
        let other = format!("{prefix}{}", &h[4..]);
        assert!(verify_password(&other, "s3cret"), "{other}");
    }
    assert!(!verify_password(&format!("$2z${}", &h[4..]), "s3cret"));
}

#[test]
fn excessive_costs_are_refused_without_computing() {
    let start = Instant::now();
    let h = bcrypt_y("pw", 4);
    let huge = format!("$2y$31{}", &h[6..]);
    assert!(!verify_password(&huge, "pw"));
    let a = hash_password("pw").unwrap();
    for (from, to) in [
        ("m=4096", "m=4194304"),
        ("t=3", "t=100000"),
        ("p=1", "p=255"),
    ] {
        let bad = a.replace(from, to);
        assert_ne!(bad, a);
        assert!(!verify_password(&bad, "pw"), "{bad}");
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn garbage_is_false_and_never_panics() {
    let h = hash_password("pw").unwrap();
    let b = bcrypt_y("pw", 4);
    let mut inputs: Vec<String> = [
        "",
        "$",
        "pw",
        "$argon2id$",
        "$argon2id$v=19$m=4096,t=3,p=1$$",
        "$argon2id$v=19$m=0,t=0,p=0$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=99$m=4096,t=3,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=4096,t=3,p=1$!!$AAAA",
        "$argon2x$v=19$m=4096,t=3,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
        "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/",
        "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
        "$2y$05$",
        "$2y$ab$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk5bektyVVa5xnIi",
        "$2y$05$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk$5bektyVVa5xnIi",
        "$2y$03$n4Uy0eSnMfvnESYL.bLwuuj0U/ETSsoTpRT9GVk5bektyVVa5xnIi",
        "$2y$05$ééééééééééééééééééééééééééééééééééééééééééééééééééé",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Truncations and one-character corruptions of real hashes.
    for real in [&h, &b] {
        for cut in 0..real.len() {
            inputs.push(real[..cut].to_string());
        }
        for i in (0..real.len()).step_by(7) {
            let mut bytes = real.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            inputs.push(String::from_utf8(bytes).unwrap());
        }
    }
    for s in &inputs {
        if s != &h && s != &b {
            assert!(!verify_password(s, "pw"), "{s:?} verified");
        }
    }
}

#[test]
fn verify_cost_is_milliseconds() {
    let h = hash_password("timing").unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        assert!(verify_password(&h, "timing"));
        times.push(start.elapsed());
    }
    let burn_start = Instant::now();
    burn_equivalent_work("timing");
    burn_equivalent_work("timing");
    let burn = burn_start.elapsed() / 2;
    let min = *times.iter().min().unwrap();
    println!("argon2id m=4096 t=3 p=1 verify: {times:?} (min {min:?}); burn {burn:?}");
    assert!(min < Duration::from_millis(200), "{min:?}");
}

#[test]
fn htpasswd_accepts_bcrypt_only() {
    let a = bcrypt_y("a", 4);
    let b = bcrypt::hash("b", 4).unwrap();
    let text = format!("# users\n\nalice:{a}\r\n  bob.smith_2:{b}  \n");
    let entries = parse_htpasswd(&text).unwrap();
    assert_eq!(
        entries,
        [
            ("alice".to_string(), a.clone()),
            ("bob.smith_2".to_string(), b.clone())
        ]
    );
    assert!(verify_password(&entries[0].1, "a"));
    assert_eq!(parse_htpasswd("").unwrap(), []);

    let md5 = format!("alice:{a}\n# x\ncarol:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n");
    let err = parse_htpasswd(&md5).unwrap_err();
    assert_eq!(err, HtpasswdError::NotBcrypt { line: 3 });
    let msg = err.to_string();
    assert!(
        msg.contains("line 3") && msg.contains("htpasswd -B"),
        "{msg}"
    );

    let sha = "dave:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";
    assert_eq!(
        parse_htpasswd(sha),
        Err(HtpasswdError::NotBcrypt { line: 1 })
    );
    assert_eq!(
        parse_htpasswd("nocolon"),
        Err(HtpasswdError::Shape { line: 1 })
    );
    assert!(matches!(
        parse_htpasswd(&format!("-eve:{a}")),
        Err(HtpasswdError::Username { line: 1, .. })
    ));
    assert_eq!(
        parse_htpasswd(&format!("alice:{a}\nalice:{b}")),
        Err(HtpasswdError::Duplicate {
            line: 2,
            user: "alice".into(),
            first: 1
        })
    );
    let cost18 = format!("x:$2y$18{}", &a[6..]);
    assert_eq!(
        parse_htpasswd(&cost18),
        Err(HtpasswdError::Cost { line: 1, cost: 18 })
    );
}

#[test]
fn username_rules() {
    for good in ["a", "Alice", "bob.smith", "ci_bot-2", "0", &"x".repeat(64)] {
        assert!(valid_username(good), "{good:?}");
    }
    for bad in [
        "",
        "-a",
        ".a",
        "a b",
        "a:b",
        "a@b",
        "é",
        "a/b",
        &"x".repeat(65),
    ] {
        assert!(!valid_username(bad), "{bad:?}");
    }
}
