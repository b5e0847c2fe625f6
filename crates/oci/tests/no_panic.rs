//! Every parser in `stowage-oci` takes attacker-controlled input. Feed each a large number of
//! random and mutated inputs and require an answer (Ok or Err), never a panic.

use stowage_oci::range::{apply_range, parse_content_range};
use stowage_oci::reference::Reference;
use stowage_oci::{Digest, RepoName, Tag, manifest};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &'a [&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// Random strings over an alphabet rich in the characters the grammars care about.
fn random_string(rng: &mut Rng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "9",
        ".",
        "_",
        "__",
        "-",
        "/",
        ":",
        "=",
        ",",
        " ",
        "%",
        "+",
        "bytes",
        "sha256",
        "sha512",
        "ü",
        "\u{0}",
        "*",
        "{",
        "}",
        "\"",
        "[",
        "]",
        "999999999999999999999",
    ];
    let len = (rng.next() % max as u64) as usize;
    (0..len).map(|_| rng.pick(PIECES)).collect()
}

#[test]
fn parsers_never_panic_on_random_input() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..50_000 {
        let s = random_string(&mut rng, 40);
        let _ = RepoName::parse(&s);
        let _ = Tag::parse(&s);
        let _ = Reference::parse(&s);
        let _ = s.parse::<Digest>();
        let len = rng.next() % 1000;
        let _ = apply_range(&s, len);
        let _ = apply_range(&format!("bytes={s}"), len);
        let _ = parse_content_range(&s);
    }
}

#[test]
fn manifest_parser_never_panics_on_mutated_manifests() {
    let base = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"urls":["https://x"]}],"subject":{"mediaType":"a","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":1},"annotations":{"a":"b"}}"#;
    assert!(manifest::parse(base, None).is_ok());
    let types = [
        None,
        Some("application/vnd.oci.image.manifest.v1+json"),
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        Some("application/json"),
        Some("text/plain; charset=utf-8"),
    ];
    let mut rng = Rng(42);
    for i in 0..20_000 {
        let mut m = base.to_vec();
        for _ in 0..(1 + rng.next() % 4) {
            let pos = (rng.next() % m.len() as u64) as usize;
            match rng.next() % 3 {
                0 => m[pos] = (rng.next() % 256) as u8,
                1 => {
                    m.remove(pos);
                }
                _ => m.insert(pos, b"{}[]\":,0-"[(rng.next() % 9) as usize]),
            }
        }
        let _ = manifest::parse(&m, types[i % types.len()]);
    }
}
