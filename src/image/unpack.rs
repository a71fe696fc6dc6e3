//! Unpack one layer (tar, tar+gzip or tar+zstd, recognised by its first bytes) into a fresh
//! directory that becomes an overlayfs lowerdir: whiteouts `.wh.NAME` become whiteout devices
//! (char 0:0), `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr; hard links, modes (setuid
//! too), ownership, xattrs, device nodes and file times are kept.
//!
//! Safety: nothing is created by path. Every entry is made relative to a descriptor of its parent
//! directory, reached from the layer's root one component at a time with O_NOFOLLOW, so an entry
//! can never land outside the layer: `..` components and absolute paths are refused outright, and
//! a parent that is a symlink (planted by an earlier entry) makes the layer fail instead of being
//! followed. The uncompressed stream is hashed on the way and must match the layer's diff ID.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, makedev, mkdirat, mknodat};
use nix::fcntl::AtFlags;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

use super::digest::HashingReader;
use super::{ImageError, Result};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpack the layer read from `src` into `dest` (which must not exist). `layer` names it in
/// errors. Returns the diff ID (digest of the uncompressed tar); with `expect`, a different one
/// is an error. On error `dest` is left for the caller to remove.
pub fn unpack<R: BufRead>(mut src: R, dest: &Path, layer: &str, expect: Option<&str>) -> Result<String> {
    let lerr = |msg: String| ImageError::Layer { layer: layer.into(), msg };
    let magic = src.fill_buf().map_err(|e| lerr(format!("reading: {e}")))?.to_vec();
    let decoded: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(src))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(src).map_err(|e| lerr(format!("zstd: {e}")))?)
    } else {
        Box::new(src)
    };
    let mut hashed = HashingReader::new(decoded);
    fs::create_dir(dest).map_err(|e| lerr(format!("creating {}: {e}", dest.display())))?;
    let root = open_dir(None, dest.as_os_str()).map_err(|e| lerr(format!("opening {}: {e}", dest.display())))?;
    {
        let mut ar = tar::Archive::new(&mut hashed);
        let entries = ar.entries().map_err(|e| lerr(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| lerr(format!("reading the tar: {e}")))?;
            unpack_entry(&root, dest, entry, layer)?;
        }
    }
    // What follows the end-of-archive blocks still counts towards the diff ID.
    std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| lerr(format!("reading: {e}")))?;
    let diff_id = hashed.digest();
    if let Some(e) = expect
        && e != diff_id
    {
        return Err(ImageError::DigestMismatch { what: format!("layer {layer} (uncompressed, its diff ID)"), expected: e.into(), actual: diff_id });
    }
    Ok(diff_id)
}

/// The components of an entry's path, refusing absolute paths and `..`.
fn components<'a>(raw: &'a [u8], layer: &str) -> Result<Vec<&'a OsStr>> {
    let unsafe_entry = |msg: &str| ImageError::UnsafeEntry { layer: layer.into(), entry: String::from_utf8_lossy(raw).into_owned(), msg: msg.into() };
    if raw.starts_with(b"/") {
        return Err(unsafe_entry("is an absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry("leaves the layer through '..'")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn open_dir(at: Option<&OwnedFd>, name: &OsStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match at {
        Some(fd) => openat(fd, name, flags, Mode::empty()),
        None => openat(nix::fcntl::AT_FDCWD, name, flags, Mode::empty()),
    }
}

/// Walk from `root` through `parents` without following symlinks; `create` makes missing
/// directories (a tar need not list every parent).
fn walk(root: &OwnedFd, parents: &[&OsStr], create: bool, raw: &[u8], layer: &str) -> Result<OwnedFd> {
    let unsafe_entry = |msg: String| ImageError::UnsafeEntry { layer: layer.into(), entry: String::from_utf8_lossy(raw).into_owned(), msg };
    let mut cur = root.try_clone().map_err(|e| ImageError::Io { what: "duplicating a descriptor".into(), source: e })?;
    for (i, c) in parents.iter().enumerate() {
        let shown = || parents[..=i].iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
        let next = match open_dir(Some(&cur), c) {
            Err(Errno::ENOENT) if create => {
                mkdirat(&cur, *c, Mode::from_bits_truncate(0o755)).map_err(|e| unsafe_entry(format!("needs directory {}: {e}", shown())))?;
                open_dir(Some(&cur), c)
            }
            other => other,
        };
        cur = match next {
            Ok(fd) => fd,
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => return Err(unsafe_entry(format!("goes through {}, which is a symlink or not a directory", shown()))),
            Err(e) => return Err(unsafe_entry(format!("cannot open {}: {e}", shown()))),
        };
    }
    Ok(cur)
}

fn cstr(s: &[u8]) -> CString {
    CString::new(s).unwrap_or_default()
}

fn set_xattr_fd(fd: &impl AsRawFd, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    let n = cstr(name);
    // SAFETY: n is a NUL-terminated string and value a live slice of the given length.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Remove whatever is at `name` in `parent` (a file, or a directory tree).
fn remove_existing(parent: &OwnedFd, name: &OsStr, path_for_tree: &Path) -> std::io::Result<()> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => fs::remove_dir_all(path_for_tree),
        Err(e) => Err(e.into()),
    }
}

fn unpack_entry<R: Read>(root: &OwnedFd, dest: &Path, mut entry: tar::Entry<'_, R>, layer: &str) -> Result<()> {
    let raw = entry.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let fail = |msg: String| ImageError::Layer { layer: layer.into(), msg: format!("entry {shown:?}: {msg}") };
    let comps = components(&raw, layer)?;
    let kind = entry.header().entry_type();
    if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink) {
        return Ok(());
    }
    let h = entry.header().clone();
    let meta = entry_meta(&mut entry, &h, &fail)?;
    let (mode, uid, gid) = (meta.mode, meta.uid, meta.gid);
    let Some((name, parents)) = comps.split_last() else {
        // "./": the layer's root directory itself.
        if kind.is_dir() {
            set_owner_mode(root, uid, gid, mode).map_err(|e| fail(e.to_string()))?;
        }
        return Ok(());
    };
    let parent = walk(root, parents, true, &raw, layer)?;
    let tree_path = comps.iter().fold(dest.to_path_buf(), |p, c| p.join(c));
    let name_bytes = name.as_bytes();

    if name_bytes == OPAQUE_MARKER.as_bytes() {
        return set_xattr_fd(&parent, b"trusted.overlay.opaque", b"y").map_err(|e| fail(format!("marking the directory opaque: {e}")));
    }
    if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(ImageError::UnsafeEntry { layer: layer.into(), entry: shown, msg: "is a whiteout of nothing".into() });
        }
        let hidden = OsStr::from_bytes(hidden);
        remove_existing(&parent, hidden, &tree_path.with_file_name(hidden)).map_err(|e| fail(e.to_string()))?;
        return mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|e| fail(format!("creating the whiteout: {e}")));
    }

    // A later entry of the same name replaces an earlier one (a directory is kept and updated).
    let existing_dir = open_dir(Some(&parent), name).is_ok();
    if !(kind.is_dir() && existing_dir) {
        remove_existing(&parent, name, &tree_path).map_err(|e| fail(e.to_string()))?;
    }
    match kind {
        tar::EntryType::Directory => make_dir(&parent, name, existing_dir, &meta, &fail)?,
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => write_regular(&parent, name, &mut entry, &meta, &fail)?,
        tar::EntryType::Symlink => make_symlink(&parent, name, &entry, &meta, &fail)?,
        tar::EntryType::Link => {
            let target = entry.link_name_bytes().ok_or_else(|| fail("a hard link without a target".into()))?.into_owned();
            hard_link(root, &parent, name, &target, layer, &fail)?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => make_node(&parent, name, kind, &h, &meta, &fail)?,
        other => return Err(fail(format!("unsupported tar entry type {other:?}"))),
    }
    Ok(())
}

/// A directory entry: made (unless an earlier entry made it), then given the entry's owner,
/// mode and extended attributes.
fn make_dir(parent: &OwnedFd, name: &OsStr, existing: bool, meta: &EntryMeta, fail: &dyn Fn(String) -> ImageError) -> Result<()> {
    if !existing {
        mkdirat(parent, name, Mode::from_bits_truncate(0o700)).map_err(|e| fail(e.to_string()))?;
    }
    let fd = open_dir(Some(parent), name).map_err(|e| fail(e.to_string()))?;
    set_owner_mode(&fd, meta.uid, meta.gid, meta.mode).map_err(|e| fail(e.to_string()))?;
    set_xattrs(&fd, &meta.xattrs, fail)
}

/// An entry's owner, mode, mtime and extended attributes: the tar header's, with PAX records
/// over them.
struct EntryMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>, h: &tar::Header, fail: &dyn Fn(String) -> ImageError) -> Result<EntryMeta> {
    let mode = h.mode().map_err(|e| fail(e.to_string()))? & 0o7777;
    let (mut uid, mut gid) = (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32);
    let mtime = h.mtime().unwrap_or(0) as i64;
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax.flatten() {
            let k = ext.key_bytes();
            if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                // overlayfs' own attributes (opaque, redirect, metacopy, origin) steer how it
                // reads the lower layers: only the whiteout conversion may set them.
                if !name.starts_with(b"trusted.overlay.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                }
            } else if k == b"uid" {
                uid = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse().ok()).unwrap_or(uid);
            } else if k == b"gid" {
                gid = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse().ok()).unwrap_or(gid);
            }
        }
    }
    Ok(EntryMeta { mode, uid, gid, mtime, xattrs })
}

fn set_xattrs(fd: &impl AsRawFd, xattrs: &[(Vec<u8>, Vec<u8>)], fail: &dyn Fn(String) -> ImageError) -> Result<()> {
    for (k, v) in xattrs {
        set_xattr_fd(fd, k, v).map_err(|e| fail(format!("xattr {}: {e}", String::from_utf8_lossy(k))))?;
    }
    Ok(())
}

/// A regular file `name` in `parent`, created (never opened through a link), filled, then given
/// its owner, mode, attributes and mtime.
fn write_regular<R: Read>(parent: &OwnedFd, name: &OsStr, entry: &mut tar::Entry<'_, R>, meta: &EntryMeta, fail: &dyn Fn(String) -> ImageError) -> Result<()> {
    let io_fail = |e: std::io::Error| fail(e.to_string());
    let fd = openat(parent, name, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o600)).map_err(|e| fail(e.to_string()))?;
    let mut f = File::from(fd);
    // Large writes: the decoder hands out small pieces.
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, &mut f);
    std::io::copy(entry, &mut w).map_err(io_fail)?;
    w.flush().map_err(io_fail)?;
    drop(w);
    // chown before chmod: chown clears the setuid and setgid bits.
    set_owner_mode(&f, meta.uid, meta.gid, meta.mode).map_err(io_fail)?;
    set_xattrs(&f, &meta.xattrs, fail)?;
    let t = nix::sys::time::TimeSpec::new(meta.mtime, 0);
    nix::sys::stat::futimens(f.as_fd(), &t, &t).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// A symbolic link `name` in `parent` (its target is not followed, ever), owned as the entry says.
fn make_symlink<R: Read>(parent: &OwnedFd, name: &OsStr, entry: &tar::Entry<'_, R>, meta: &EntryMeta, fail: &dyn Fn(String) -> ImageError) -> Result<()> {
    let target = entry.link_name_bytes().ok_or_else(|| fail("a symlink without a target".into()))?.into_owned();
    symlinkat(OsStr::from_bytes(&target), parent, name).map_err(|e| fail(e.to_string()))?;
    fchownat(parent, name, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| fail(e.to_string()))?;
    let t = nix::sys::time::TimeSpec::new(meta.mtime, 0);
    let _ = nix::sys::stat::utimensat(parent, name, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink);
    Ok(())
}

/// A hard link `name` in `parent` to `target`, an earlier entry of the layer, walked to below
/// `root` without following symlinks.
fn hard_link(root: &OwnedFd, parent: &OwnedFd, name: &OsStr, target: &[u8], layer: &str, fail: &dyn Fn(String) -> ImageError) -> Result<()> {
    let tcomps = components(target, layer)?;
    let (tname, tparents) = tcomps.split_last().ok_or_else(|| fail("a hard link to the layer's root".into()))?;
    let tparent = walk(root, tparents, false, target, layer)?;
    linkat(&tparent, *tname, parent, name, AtFlags::empty()).map_err(|e| fail(format!("hard link to {:?} (it must be an earlier entry of this layer): {e}", String::from_utf8_lossy(target))))?;
    Ok(())
}

/// A character or block device node or a FIFO `name` in `parent`.
fn make_node(parent: &OwnedFd, name: &OsStr, kind: tar::EntryType, h: &tar::Header, meta: &EntryMeta, fail: &dyn Fn(String) -> ImageError) -> Result<()> {
    let sflag = match kind {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let major = h.device_major().ok().flatten().unwrap_or(0) as u64;
    let minor = h.device_minor().ok().flatten().unwrap_or(0) as u64;
    mknodat(parent, name, sflag, Mode::from_bits_truncate(0o600), makedev(major, minor)).map_err(|e| fail(e.to_string()))?;
    fchownat(parent, name, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| fail(e.to_string()))?;
    nix::sys::stat::fchmodat(parent, name, Mode::from_bits_truncate(meta.mode), nix::sys::stat::FchmodatFlags::FollowSymlink).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

fn set_owner_mode(fd: &impl AsFd, uid: u32, gid: u32, mode: u32) -> std::io::Result<()> {
    nix::unistd::fchown(fd.as_fd(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_layer_are_refused() {
        assert!(components(b"/etc/passwd", "l").is_err());
        assert!(components(b"a/../../x", "l").is_err());
        assert!(components(b"..", "l").is_err());
        assert_eq!(components(b"./a//b/", "l").unwrap(), vec![OsStr::new("a"), OsStr::new("b")]);
    }
}
