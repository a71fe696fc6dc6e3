//! `subPath` mounts: the path resolved one component at a time below the volume without
//! following symlinks, and the opened file bind-mounted through `/proc/self/fd/N` onto a staging
//! point in the container's state directory.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use nix::mount::{MsFlags, mount};
use crate::pod::PodError;
use crate::pod::sandbox;

use super::*;

/// Unmount the subPath staging points of the container whose state directory is `cdir`.
pub fn unstage_subpaths(cdir: &Path) {
    let dir = cdir.join("subpaths");
    for n in crate::state::list_dir(&dir).unwrap_or_default() {
        sandbox::unmount(&dir.join(n));
    }
}

/// The staging point of mount `j` of a container: the subPath bind-mounted there is what the
/// container's spec mounts.
pub(super) fn staging(cdir: &Path, j: usize) -> PathBuf {
    cdir.join("subpaths").join(j.to_string())
}

/// Resolve each subPath of `mounts` inside its volume and bind-mount it on its staging point.
/// Missing directories on the way are created (as the kubelet does); a symlink anywhere is
/// refused, so nothing a container wrote into a volume can redirect the mount.
pub fn stage_subpaths(pod_dir: &Path, volumes: &[Volume], cdir: &Path, mounts: &[VolumeMount]) -> Result<(), PodError> {
    for (j, m) in mounts.iter().enumerate() {
        let Some(sub) = &m.sub_path else { continue };
        let v = volumes.iter().find(|v| v.name == m.name).ok_or_else(|| PodError::Invalid(format!("volume mount {j}: no volume {:?} in the pod", m.name)))?;
        check_relative(sub).map_err(|e| PodError::Invalid(format!("subPath {sub:?}: {e}")))?;
        let fd = open_beneath(&source_of(pod_dir, v), sub)
            .map_err(|e| PodError::Invalid(format!("volume {} subPath {sub:?}: {e}", m.name)))?;
        let is_dir = fstat_mode(&fd).map(|m| m & libc::S_IFMT == libc::S_IFDIR).map_err(kernel("fstat"))?;
        let at = staging(cdir, j);
        fs::create_dir_all(at.parent().unwrap_or(cdir)).map_err(kernel(format!("creating {}", cdir.display())))?;
        if is_dir {
            fs::create_dir_all(&at).map_err(kernel(format!("creating {}", at.display())))?;
        } else {
            fs::write(&at, b"").map_err(kernel(format!("creating {}", at.display())))?;
        }
        let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
        mount(Some(src.as_str()), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| PodError::Kernel(format!("bind-mounting subPath {sub:?} of volume {}: {e}", m.name)))?;
    }
    Ok(())
}

pub(super) fn fstat_mode(fd: &OwnedFd) -> std::io::Result<u32> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the call, st is ours.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.st_mode)
}

/// Open `rel` below the directory `root` with O_PATH, one component at a time and never following
/// a symlink: each component is opened relative to the previous one with O_NOFOLLOW, and a
/// component that is a symlink is refused. Missing components are created as directories.
pub fn open_beneath(root: &Path, rel: &str) -> Result<OwnedFd, String> {
    let c = CString::new(root.as_os_str().as_encoded_bytes()).map_err(|_| "path holds a NUL byte".to_string())?;
    // SAFETY: c is a valid C string; the fd returned is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("opening {}: {}", root.display(), std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let mut cur = unsafe { OwnedFd::from_raw_fd(fd) };
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    for (k, part) in parts.iter().enumerate() {
        if *part == ".." {
            return Err("'..' is not allowed".into());
        }
        let name = CString::new(*part).map_err(|_| "path holds a NUL byte".to_string())?;
        let open = |dir: &OwnedFd| {
            // SAFETY: dir is an open directory fd, name a valid C string.
            unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) }
        };
        let mut next = open(&cur);
        if next < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
            // SAFETY: as above; mkdirat creates a directory relative to an open directory fd.
            if unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o755) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(format!("creating {}: {e}", parts[..=k].join("/")));
                }
            }
            next = open(&cur);
        }
        if next < 0 {
            return Err(format!("{}: {}", parts[..=k].join("/"), std::io::Error::last_os_error()));
        }
        // SAFETY: next was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(next) };
        let mode = fstat_mode(&fd).map_err(|e| e.to_string())?;
        if mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(format!("{} is a symbolic link: a subPath may not go through one (it could lead out of the volume)", parts[..=k].join("/")));
        }
        if k + 1 < parts.len() && mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(format!("{} is not a directory", parts[..=k].join("/")));
        }
        cur = fd;
    }
    Ok(cur)
}
