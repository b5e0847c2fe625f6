//! `stowage unpack`'s layer application (`Unpacker`): layers built from the fuzzer's bytes,
//! with hostile entries (`..`, absolute names, symlinks and hard links pointing out, whiteouts,
//! devices, FIFOs, extended attributes, truncated entries), gzip-compressed or not, unpacked
//! into a scratch directory. Nothing may appear or change outside the root.

use std::io::{Cursor, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use stowage_client::unpack::{UnpackError, Unpacker};
use stowage_oci::{Algorithm, Digest};

use crate::Target;
use crate::input::Input;

pub const UNPACK: Target = Target {
    name: "unpack",
    body: unpack,
    outcomes: &["ok", "io", "refused", "diff-id", "format"],
};

/// Flags of the first byte.
const GZIP: u8 = 1;
const WITH_DIFF_ID: u8 = 2;
const RIGHT_DIFF_ID: u8 = 4;
/// The rest of the input is the layer itself (not built from entries).
const RAW: u8 = 8;

/// At most this many entries are built, so one input stays quick.
const MAX_ENTRIES: usize = 64;

const CANARY: &[u8] = b"canary";

/// The input: a flags byte, then either the raw layer (`RAW`) or entries, each an op byte and
/// its fields (length-prefixed names, see [`build`]). In names and link targets, `@OUT` and
/// `@NEST` stand for the absolute paths of a directory beside the root and of the one above
/// both, so absolute escapes aim somewhere the check looks.
pub fn unpack(data: &[u8]) -> &'static str {
    let mut input = Input::new(data);
    let flags = input.byte();
    let nest = tempfile::Builder::new()
        .prefix("stowage-fuzz-unpack")
        .tempdir()
        .expect("a scratch directory");
    let run = nest.path().join("run");
    let root = run.join("root");
    let outside = run.join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    std::fs::write(outside.join("canary"), CANARY).expect("canary");
    let marks = [
        ("@OUT", outside.display().to_string()),
        ("@NEST", nest.path().display().to_string()),
    ];
    let layers = if flags & RAW != 0 {
        vec![input.rest().to_vec()]
    } else {
        build(&mut input, &marks)
    };
    let result = apply(&root, &layers, flags);
    check_nothing_escaped(nest.path(), &run, &outside);
    make_removable(nest.path());
    match result {
        Ok(()) => "ok",
        Err(UnpackError::Io { .. }) => "io",
        Err(UnpackError::Refused { .. }) => "refused",
        Err(UnpackError::DiffId { .. }) => "diff-id",
        Err(UnpackError::Format { .. }) => "format",
        Err(UnpackError::Image(m)) => panic!("applying layers failed as an image: {m}"),
    }
}

fn apply(root: &Path, layers: &[Vec<u8>], flags: u8) -> Result<(), UnpackError> {
    let mut u = Unpacker::new(root)?;
    for layer in layers {
        let diff_id = (flags & WITH_DIFF_ID != 0).then(|| {
            let of: &[u8] = if flags & RIGHT_DIFF_ID != 0 {
                layer
            } else {
                b"another layer"
            };
            Digest::of(Algorithm::Sha256, of)
        });
        let (blob, media_type) = if flags & GZIP != 0 {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(layer).expect("in memory");
            (
                gz.finish().expect("in memory"),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (layer.clone(), "application/vnd.oci.image.layer.v1.tar")
        };
        u.apply(Cursor::new(blob), media_type, None, diff_id.as_ref())?;
    }
    u.finish().map(|_| ())
}

/// Build layers from entries. Op byte (low 4 bits): 0 file (name, mode, content), 1 directory
/// (name, mode), 2 symlink (name, target), 3 hard link (name, target), 4 character device and
/// 5 block device (name, mode, major, minor), 6 FIFO (name, mode), 7 next layer, 8 file with an
/// extended attribute (name, key, value), 9 file whose header claims more bytes than follow
/// (name, content, extra), 10 the root itself (mode); anything else a file.
fn build(input: &mut Input<'_>, marks: &[(&str, String)]) -> Vec<Vec<u8>> {
    let mut layers = Vec::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut entries = 0;
    while !input.is_empty() && entries < MAX_ENTRIES {
        entries += 1;
        let op = input.byte() & 0x0f;
        if op == 7 {
            let done = std::mem::replace(&mut b, tar::Builder::new(Vec::new()));
            layers.push(done.into_inner().expect("in memory"));
            continue;
        }
        let name = if op == 10 {
            b"./".to_vec()
        } else {
            substitute(input.short(), marks)
        };
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        let mut content: Vec<u8> = Vec::new();
        let mut size = 0u64;
        let mut link: Option<Vec<u8>> = None;
        match op {
            1 | 10 => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(u32::from(input.u16()) & 0o7777);
            }
            2 | 3 => {
                h.set_entry_type(if op == 2 {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                link = Some(substitute(input.short(), marks));
            }
            4..=6 => {
                h.set_entry_type(match op {
                    4 => tar::EntryType::Char,
                    5 => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                h.set_mode(u32::from(input.u16()) & 0o7777);
                if op != 6 {
                    let _ = h.set_device_major(u32::from(input.byte()));
                    let _ = h.set_device_minor(u32::from(input.byte()));
                }
            }
            8 => {
                let key = format!("SCHILY.xattr.{}", String::from_utf8_lossy(input.short()));
                let value = input.short().to_vec();
                let _ = b.append_pax_extensions([(key.as_str(), value.as_slice())]);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
            }
            9 => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                content = input.short().to_vec();
                size = content.len() as u64 + u64::from(input.byte()) + 1;
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(u32::from(input.u16()) & 0o7777);
                content = input.short().to_vec();
            }
        }
        if size == 0 {
            size = content.len() as u64;
        }
        h.set_size(size);
        // Raw name bytes: `set_path` would refuse exactly the hostile names wanted here.
        let old = h.as_old_mut();
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
        if let Some(l) = &link {
            let n = l.len().min(old.linkname.len());
            old.linkname[..n].copy_from_slice(&l[..n]);
        }
        h.set_cksum();
        let _ = b.append(&h, content.as_slice());
    }
    layers.push(b.into_inner().expect("in memory"));
    layers
}

fn substitute(raw: &[u8], marks: &[(&str, String)]) -> Vec<u8> {
    let mut s = String::from_utf8_lossy(raw).into_owned();
    for (mark, path) in marks {
        s = s.replace(mark, path);
    }
    s.into_bytes()
}

/// The scratch directory holds the run directory alone, which holds the root and the
/// untouched `outside/canary` (same bytes, a plain file, not hard-linked from the root).
fn check_nothing_escaped(nest: &Path, run: &Path, outside: &Path) {
    assert_eq!(names(nest), ["run"], "something was written beside the run");
    let mut in_run = names(run);
    in_run.sort();
    assert_eq!(
        in_run,
        ["outside", "root"],
        "something was written beside the root"
    );
    assert_eq!(names(outside), ["canary"], "something was written outside");
    let canary = outside.join("canary");
    let meta = std::fs::symlink_metadata(&canary).expect("the canary");
    assert!(meta.is_file(), "the canary was replaced");
    assert_eq!(meta.nlink(), 1, "the canary was hard-linked");
    assert_eq!(std::fs::read(&canary).expect("canary"), CANARY);
    assert!(
        std::fs::symlink_metadata(outside)
            .expect("outside")
            .is_dir()
    );
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Give every directory its owner's full rights again (a layer may leave `0000` ones), so the
/// scratch directory can be removed without root.
fn make_removable(dir: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            make_removable(&e.path());
        }
    }
}
