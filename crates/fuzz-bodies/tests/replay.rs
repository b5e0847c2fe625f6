//! Replays the committed corpora (`fuzz/corpus/<target>`) and crash reproducers
//! (`fuzz/regressions/<target>`, optional) through the fuzz targets' bodies on stable Rust: no
//! input may panic, and each target's corpus must produce exactly the outcomes the target
//! lists, every error variant of its parser included. A missing or empty corpus fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stowage_fuzz_bodies::{TARGETS, target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("a directory entry").path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn replay(name: &str) {
    let t = target(name);
    let corpus = fuzz_dir().join("corpus").join(name);
    let inputs = files(&corpus);
    assert!(
        !inputs.is_empty(),
        "{}: the corpus is missing or empty",
        corpus.display()
    );
    let mut seen: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for path in &inputs {
        let data = std::fs::read(path).expect("a corpus file");
        let label = (t.body)(&data);
        seen.entry(label).or_insert_with(|| path.clone());
    }
    for path in files(&fuzz_dir().join("regressions").join(name)) {
        let data = std::fs::read(&path).expect("a reproducer");
        (t.body)(&data);
    }
    for (label, path) in &seen {
        eprintln!("{name}: {label} (first: {})", path.display());
    }
    let missing: Vec<&str> = t
        .outcomes
        .iter()
        .copied()
        .filter(|o| !seen.contains_key(o))
        .collect();
    let unlisted: Vec<String> = seen
        .iter()
        .filter(|(l, _)| !t.outcomes.contains(l))
        .map(|(l, p)| format!("{l} ({})", p.display()))
        .collect();
    assert!(
        missing.is_empty() && unlisted.is_empty(),
        "{name}: the corpus never reaches {missing:?}; outcomes not listed by the target: {unlisted:?}"
    );
}

macro_rules! replay_tests {
    ($($t:ident),* $(,)?) => {
        $(#[test] fn $t() { replay(stringify!($t)); })*

        /// Every target has a replay test here, a libFuzzer binary and a `[[bin]]` entry.
        #[test]
        fn every_target_is_replayed_and_fuzzed() {
            let mut tested = vec![$(stringify!($t)),*];
            tested.sort_unstable();
            let mut listed: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            listed.sort_unstable();
            assert_eq!(tested, listed);
            let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
            for name in listed {
                let src = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
                let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
                assert!(text.contains(&format!("target(\"{name}\")")), "{} runs another body", src.display());
                assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no bin {name}");
            }
        }
    };
}

replay_tests!(
    name,
    reference,
    digest,
    range,
    manifest,
    routes,
    scope,
    jwt,
    htpasswd,
    challenge,
    credentials,
    config,
    unpack,
);
