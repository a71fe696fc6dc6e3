//! Mounts made differently for a container in a user namespace: idmapped views of host
//! directories (made outside, by the host's root, for the namespace), and the host's /sys bound
//! where the namespace may not mount sysfs.

use std::os::fd::OwnedFd;

use super::{ContainerError, Result, sys};

/// A sysfs mount needs the network namespace to be owned by the mounter's user namespace: a
/// container with a user namespace but the caller's network namespace gets the host's /sys
/// bound recursively instead, with the flags asked for (as runc does).
pub fn bind_host_sysfs(dest: &std::path::Path, remount_at: impl FnOnce() -> Result<std::os::fd::OwnedFd>, flags: nix::mount::MsFlags) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    mount(Some("/sys"), dest, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(sys(format!("bind-mounting the host's /sys on {} (sysfs cannot be mounted from a user namespace without its own network namespace)", dest.display())))?;
    let keep = flags & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    if !keep.is_empty() {
        // The bind now covers `dest`: the remount goes to the mount on top (by descriptor).
        let top = remount_at()?;
        mount(None::<&str>, super::safe_path::proc_fd_path(&top).as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | keep, None::<&str>).map_err(sys(format!("remounting the host's /sys on {} with {keep:?}", dest.display())))?;
    }
    Ok(())
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Mount a read-only view of directory `src` at `at` whose files appear owned as through the
/// maps of user namespace `userns` (an idmapped mount: a host root-owned image layer is owned
/// by the namespace's root, not by nobody). Must run as the host's root: only the owner of
/// the file system may idmap it. Fails, naming `src`, where its file system cannot be idmapped.
pub fn mount_idmapped(src: &std::path::Path, at: &std::path::Path, userns: &std::fs::File) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| ContainerError::Spec { field: "root.path".into(), msg: format!("NUL byte in {}", p.display()) });
    let (src_c, at_c) = (c(src)?, c(at)?);
    // SAFETY: open_tree with a valid NUL-terminated path; the descriptor is owned right after.
    let raw = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, src_c.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint) } as libc::c_int;
    if raw < 0 {
        return Err(sys(format!("cloning the mount of {} (open_tree)", src.display()))(nix::Error::last()));
    }
    // SAFETY: a fresh descriptor of ours.
    let tree = unsafe { OwnedFd::from_raw_fd(raw) };
    let empty = c"";
    let idmapped = super::mounts::mount_setattr_idmap(tree.as_raw_fd(), empty, libc::AT_EMPTY_PATH | libc::AT_RECURSIVE, super::mounts::MOUNT_ATTR_RDONLY, userns.as_raw_fd());
    if let Err(e) = idmapped {
        return Err(ContainerError::Sys { what: format!("idmapping {} for the pod's user namespace (its file system must support idmapped mounts, as ext4, xfs, btrfs and tmpfs do)", src.display()), source: e });
    }
    // SAFETY: move_mount of our detached tree onto a NUL-terminated path.
    let rc = unsafe { libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), empty.as_ptr(), libc::AT_FDCWD, at_c.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH) };
    if rc != 0 {
        return Err(sys(format!("attaching the idmapped view of {} at {}", src.display(), at.display()))(nix::Error::last()));
    }
    Ok(())
}
