//! Tests of `unpack` with layers built here, byte by byte where a tar library would refuse.

use std::io::Write;

use super::*;
use stowage_oci::Algorithm;

/// Tar entry kinds for test layers.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn header(name: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    // Written raw, so names with `..` (which `set_path` refuses) can be made.
    let bytes = name.as_bytes();
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..bytes.len()].copy_from_slice(bytes);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(n, m) => {
                let mut h = header(n, tar::EntryType::Directory, *m, 0);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::File(n, m, body) => {
                let mut h = header(n, tar::EntryType::Regular, *m, body.len() as u64);
                h.set_cksum();
                b.append(&h, *body).unwrap();
            }
            E::Link(n, t) | E::Hard(n, t) => {
                let kind = if matches!(e, E::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(n, kind, 0o777, 0);
                let tb = t.as_bytes();
                h.as_old_mut().linkname = [0; 100];
                h.as_old_mut().linkname[..tb.len()].copy_from_slice(tb);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn apply_all(root: &Path, layers: &[Vec<u8>]) -> Result<Vec<String>, UnpackError> {
    let mut u = Unpacker::new(root)?;
    for l in layers {
        let id = Digest::of(Algorithm::Sha256, l);
        let blob = gz(l);
        u.apply(
            &blob[..],
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Some(&Digest::of(Algorithm::Sha256, &blob)),
            Some(&id),
        )?;
    }
    u.finish()
}

#[test]
fn files_links_modes_and_times() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    let l = layer(&[
        E::Dir("bin", 0o755),
        E::File("bin/tool", 0o4755, b"#!/bin/sh\n"),
        E::File("etc/config", 0o600, b"k=v"),
        E::Link("bin/alias", "tool"),
        E::Hard("bin/hard", "bin/tool"),
    ]);
    apply_all(&root, &[l]).unwrap();
    let m = std::fs::metadata(root.join("bin/tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(std::fs::read(root.join("etc/config")).unwrap(), b"k=v");
    assert_eq!(
        std::fs::read_link(root.join("bin/alias")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(inode(&root.join("bin/hard")), inode(&root.join("bin/tool")));
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(
        std::fs::metadata(root.join("bin")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn whiteouts_and_opaque_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let lower = layer(&[
        E::File("a/keep", 0o644, b"1"),
        E::File("a/gone", 0o644, b"2"),
        E::File("o/old1", 0o644, b"3"),
        E::Dir("o/olddir", 0o755),
    ]);
    let upper = layer(&[
        E::File("a/.wh.gone", 0o644, b""),
        E::File("o/new", 0o644, b"4"),
        E::File("o/.wh..wh..opq", 0o644, b""),
    ]);
    apply_all(&root, &[lower, upper]).unwrap();
    assert!(root.join("a/keep").exists());
    assert!(!root.join("a/gone").exists());
    assert!(
        !root.join("a/.wh.gone").exists(),
        "whiteout markers are not files"
    );
    assert!(!root.join("o/old1").exists() && !root.join("o/olddir").exists());
    assert!(
        root.join("o/new").exists(),
        "the opaque layer's own entries stay"
    );
}

#[test]
fn absolute_symlinks_resolve_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let base = layer(&[
        E::Dir("run", 0o755),
        E::Dir("var", 0o755),
        E::Link("var/run", "/run"),
    ]);
    let upper = layer(&[E::File("var/run/app.pid", 0o644, b"42")]);
    apply_all(&root, &[base, upper]).unwrap();
    assert_eq!(std::fs::read(root.join("run/app.pid")).unwrap(), b"42");
    assert!(
        std::fs::symlink_metadata(root.join("var/run"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A symlink pointing far above the root is clamped at it.
    let dir2 = tempfile::tempdir().unwrap();
    let root2 = dir2.path().join("r");
    let l1 = layer(&[E::Link("up", "../../../../..")]);
    let l2 = layer(&[E::File("up/escaped", 0o644, b"x")]);
    apply_all(&root2, &[l1, l2]).unwrap();
    assert!(
        root2.join("escaped").exists(),
        "written at the root, not above it"
    );
    assert!(!dir2.path().join("escaped").exists());
}

#[test]
fn escaping_entries_and_hard_links_are_refused() {
    for bad in [
        layer(&[E::File("../evil", 0o644, b"x")]),
        layer(&[E::File("a/../../evil", 0o644, b"x")]),
        layer(&[E::Hard("stolen", "../../../etc/passwd")]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let err = apply_all(&root, &[bad]).unwrap_err();
        assert!(matches!(err, UnpackError::Refused { .. }), "{err}");
        assert!(!dir.path().join("evil").exists());
    }
}

#[test]
fn diff_ids_and_compressions() {
    let dir = tempfile::tempdir().unwrap();
    let l = layer(&[E::File("f", 0o644, b"data")]);
    let mut u = Unpacker::new(&dir.path().join("r")).unwrap();
    let wrong = Digest::of(Algorithm::Sha256, b"nope");
    let err = u
        .apply(
            &gz(&l)[..],
            "application/vnd.oci.image.layer.v1.tar+gzip",
            None,
            Some(&wrong),
        )
        .unwrap_err();
    assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
    // zstd (two frames, as zstd:chunked writes) and plain tar.
    let id = Digest::of(Algorithm::Sha256, &l);
    let half = l.len() / 2;
    let mut z =
        ruzstd::encoding::compress_to_vec(&l[..half], ruzstd::encoding::CompressionLevel::Fastest);
    z.extend(ruzstd::encoding::compress_to_vec(
        &l[half..],
        ruzstd::encoding::CompressionLevel::Fastest,
    ));
    let mut u = Unpacker::new(&dir.path().join("z")).unwrap();
    u.apply(
        &z[..],
        "application/vnd.oci.image.layer.v1.tar+zstd",
        None,
        Some(&id),
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.path().join("z/f")).unwrap(), b"data");
    let mut u = Unpacker::new(&dir.path().join("p")).unwrap();
    u.apply(
        &l[..],
        "application/vnd.oci.image.layer.v1.tar",
        None,
        Some(&id),
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.path().join("p/f")).unwrap(), b"data");
}

/// A layer as `umoci insert` may write it: `entries` without the two end-of-archive blocks, and
/// the last entry's padding cut to `keep_padding` bytes.
fn unterminated(entries: &[E], keep_padding: usize) -> Vec<u8> {
    let full = layer(entries);
    // The builder ends with two zero blocks; before them, the last entry's bytes and padding.
    let mut body = full[..full.len() - 1024].to_vec();
    let pad = body.iter().rev().take_while(|&&b| b == 0).count().min(511);
    body.truncate(body.len() - pad + keep_padding.min(pad));
    body
}

fn apply_plain(root: &Path, l: &[u8]) -> Result<Vec<String>, UnpackError> {
    let mut u = Unpacker::new(root)?;
    u.apply(
        l,
        "application/vnd.oci.image.layer.v1.tar",
        Some(&Digest::of(Algorithm::Sha256, l)),
        Some(&Digest::of(Algorithm::Sha256, l)),
    )?;
    u.finish()
}

#[test]
fn layers_without_end_of_archive_blocks_are_accepted() {
    let entries = [
        E::Dir("etc", 0o755),
        E::File("etc/a", 0o644, b"first file"),
        E::File("etc/last", 0o600, b"the last entry's own bytes"),
    ];
    // No end-of-archive blocks but full padding; ending mid-padding; no padding at all.
    for keep in [511, 100, 0] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let l = unterminated(&entries, keep);
        let whole_blocks = l.len().is_multiple_of(512);
        assert_eq!(whole_blocks, keep == 511, "the stream ends where intended");
        apply_plain(&root, &l).unwrap_or_else(|e| panic!("padding kept {keep}: {e}"));
        assert_eq!(
            std::fs::read(root.join("etc/last")).unwrap(),
            b"the last entry's own bytes"
        );
        assert_eq!(std::fs::read(root.join("etc/a")).unwrap(), b"first file");
    }
    // The same through gzip, as the layer is stored.
    let dir = tempfile::tempdir().unwrap();
    let l = unterminated(&entries, 0);
    let mut u = Unpacker::new(&dir.path().join("g")).unwrap();
    u.apply(
        &gz(&l)[..],
        "application/vnd.oci.image.layer.v1.tar+gzip",
        None,
        Some(&Digest::of(Algorithm::Sha256, &l)),
    )
    .unwrap();
    assert!(dir.path().join("g/etc/last").exists());
}

#[test]
fn a_layer_cut_inside_an_entry_is_refused_and_named_by_digest() {
    let full = unterminated(&[E::File("big", 0o644, &[7u8; 2000])], 0);
    let dir = tempfile::tempdir().unwrap();
    // Cut inside the entry's bytes: 512 header bytes + 1500 of its 2000.
    let cut = &full[..512 + 1500];
    let digest = Digest::of(Algorithm::Sha256, cut);
    let mut u = Unpacker::new(&dir.path().join("r")).unwrap();
    let err = u
        .apply(
            cut,
            "application/vnd.oci.image.layer.v1.tar",
            Some(&digest),
            None,
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("truncated"), "{text}");
    assert!(
        text.contains(&digest.to_string()),
        "names the layer: {text}"
    );
    // Cut inside the first header, and inside the header of the entry after a complete one.
    let two = unterminated(&[E::File("a", 0o644, &[1u8; 2000]), E::Dir("d", 0o755)], 0);
    for cut in [&two[..300], &two[..two.len() - 200]] {
        let dir = tempfile::tempdir().unwrap();
        let mut u = Unpacker::new(&dir.path().join("r")).unwrap();
        assert!(
            u.apply(cut, "application/vnd.oci.image.layer.v1.tar", None, None)
                .is_err(),
            "a stream cut at {} bytes is refused",
            cut.len()
        );
    }
}
