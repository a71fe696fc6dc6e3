//! Run podbox from a read-only clone of its own executable before it starts or enters a
//! container (the CVE-2019-5736 class). podbox's init is the container's PID 1 until it execs
//! (in OCI mode it waits there for `start`); were it running from the host's writable file, a
//! process in the container could open `/proc/1/exe` and overwrite the runtime. So the commands
//! that start or enter containers first re-execute themselves from a clone nothing can write:
//! - a detached read-only bind mount of the executable (`open_tree(OPEN_TREE_CLONE)` +
//!   `mount_setattr(MOUNT_ATTR_RDONLY)`, Linux 5.12): the same file, reachable only through
//!   that mount, so every open for writing fails with EROFS; costs two syscalls;
//! - else a memfd copy sealed against every change (as the pause runs), which costs a copy of
//!   the ~10 MB binary per command.
//!
//! `PODBOX_EXE_CLONE=memfd` picks the copy. Together with PR_SET_DUMPABLE 0 (`set_undumpable`),
//! which keeps container processes without CAP_SYS_PTRACE from opening the exe at all.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

/// Set in the environment of the re-executed process, so that a copy whose seals somehow did
/// not take fails instead of re-executing forever. Removed again once checked.
pub(crate) const MARKER: &str = "_PODBOX_SEALED_EXE";

pub(crate) const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
/// memfd_create(2)'s MFD_EXEC (Linux 6.3): ask for an executable memfd explicitly where
/// `vm.memfd_noexec` would otherwise default to non-executable.
const MFD_EXEC: libc::c_uint = 0x10;

#[derive(Debug, thiserror::Error)]
#[error("running podbox from a sealed copy of its executable (protection of the runtime binary from the container): {what}: {source}")]
pub struct SealError {
    what: String,
    source: std::io::Error,
}

fn err(what: &str) -> impl FnOnce(std::io::Error) -> SealError + '_ {
    move |source| SealError { what: what.into(), source }
}

fn last(what: &str) -> SealError {
    SealError { what: what.into(), source: std::io::Error::last_os_error() }
}

/// True if this process runs from a memfd that carries all of `SEALS`, or from a file on a
/// read-only mount (our clone, or a binary installed on a read-only file system).
pub fn running_sealed() -> bool {
    let Ok(f) = File::open("/proc/self/exe") else { return false };
    // SAFETY: fcntl on a descriptor we own; F_GET_SEALS fails with EINVAL on a regular file.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & SEALS == SEALS {
        return true;
    }
    // SAFETY: fstatvfs into a zeroed struct of the right type.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    unsafe { libc::fstatvfs(f.as_raw_fd(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0 }
}

/// Make sure this process runs from a sealed copy of its executable: returns at once if it
/// does, else copies /proc/self/exe into a memfd, seals it and re-executes itself from it with
/// the same arguments and environment (it never returns then). Must be called while the
/// process is single-threaded (at start).
pub fn ensure() -> Result<(), SealError> {
    if running_sealed() {
        if std::env::var_os(MARKER).is_some() {
            // SAFETY: called at start, while the process is single-threaded.
            unsafe { std::env::remove_var(MARKER) };
            // An exec through a descriptor names the process after the descriptor ("3"):
            // give it its own name back for ps and top.
            let name = std::env::args_os().next().map(std::path::PathBuf::from).and_then(|p| p.file_name().map(|n| n.to_os_string())).unwrap_or_default();
            let mut comm = name.into_vec();
            comm.truncate(15);
            if let Ok(c) = CString::new(comm) {
                // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
                unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
            }
        }
        return Ok(());
    }
    if std::env::var_os(MARKER).is_some() {
        return Err(SealError { what: "the re-executed copy does not run from a sealed memfd".into(), source: std::io::Error::other("seals missing") });
    }
    let fd = match std::env::var("PODBOX_EXE_CLONE").as_deref() {
        Ok("memfd") => sealed_copy()?,
        // Where the kernel or the caller's privileges allow no mount clone: the copy.
        _ => read_only_clone().or_else(|_| sealed_copy())?,
    };
    let argv: Vec<CString> = std::env::args_os().map(cstring).collect();
    let mut envp: Vec<CString> = std::env::vars_os().map(|(k, v)| {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        cstring(kv)
    }).collect();
    envp.push(CString::new(format!("{MARKER}=1")).unwrap_or_default());
    let argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp_p: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    // SAFETY: fd is our clone (an O_PATH mount or a memfd); argv/envp are NUL-terminated arrays
    // of valid C strings that live until the call (which only returns on failure).
    unsafe { libc::syscall(libc::SYS_execveat, fd.as_raw_fd(), c"".as_ptr(), argv_p.as_ptr(), envp_p.as_ptr(), libc::AT_EMPTY_PATH) };
    Err(last("executing the read-only clone"))
}

fn cstring(s: OsString) -> CString {
    // Arguments and environment strings come from the kernel NUL-terminated: no inner NULs.
    CString::new(s.into_vec()).unwrap_or_default()
}

const OPEN_TREE_CLONE: libc::c_uint = 1;

/// An O_PATH descriptor of /proc/self/exe on a detached, read-only bind mount of it. The mount
/// belongs to no mount namespace; the kernel frees it with the last process running from it.
fn read_only_clone() -> Result<OwnedFd, SealError> {
    read_only_clone_of(c"/proc/self/exe")
}

fn read_only_clone_of(path: &std::ffi::CStr) -> Result<OwnedFd, SealError> {
    // SAFETY: open_tree with a valid path; the descriptor is owned right after.
    let raw = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint) } as libc::c_int;
    if raw < 0 {
        return Err(last("open_tree of /proc/self/exe"));
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Err(e) = super::mounts::mount_setattr(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH, super::mounts::MOUNT_ATTR_RDONLY, 0) {
        return Err(SealError { what: "making the clone of the executable read-only".into(), source: e.into() });
    }
    Ok(fd)
}

/// A memfd holding a copy of /proc/self/exe, sealed against writing, growing, shrinking and
/// further seal changes.
fn sealed_copy() -> Result<OwnedFd, SealError> {
    let src = File::open("/proc/self/exe").map_err(err("opening /proc/self/exe"))?;
    let len = src.metadata().map_err(err("stat of /proc/self/exe"))?.len() as usize;
    let name = c"podbox";
    // SAFETY: memfd_create with a valid name; the descriptor is owned right after.
    let mut raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING | MFD_EXEC) };
    if raw < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Kernels before 6.3 know no MFD_EXEC; their memfds are executable anyway.
        // SAFETY: as above.
        raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    }
    if raw < 0 {
        return Err(last("memfd_create"));
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut left = len;
    while left > 0 {
        // SAFETY: sendfile between two descriptors we own, copying in the kernel (page cache
        // to shmem) without a user-space buffer.
        let n = unsafe { libc::sendfile(fd.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), left) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SealError { what: "copying the executable into the memfd".into(), source: e });
        }
        if n == 0 {
            return Err(SealError { what: "copying the executable into the memfd".into(), source: std::io::Error::other("short copy") });
        }
        left -= n as usize;
    }
    // SAFETY: fcntl on our memfd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } != 0 {
        return Err(last("sealing the memfd"));
    }
    Ok(fd)
}

/// PR_SET_DUMPABLE 0: this process's /proc entries become root's and a process without
/// CAP_SYS_PTRACE can no longer open its `exe`, `fd/*`, `mem` or attach to it. Called by every
/// podbox process that enters a container's namespaces before it does; the exec of the
/// container's program makes it dumpable again (for a non-setuid, readable program).
pub fn set_undumpable() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_copy_is_an_identical_unwritable_executable() {
        let fd = sealed_copy().unwrap();
        let copy = std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(copy, std::fs::read("/proc/self/exe").unwrap());
        // SAFETY: fcntl on our memfd.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) } & SEALS, SEALS);
        // Sealed: neither written through a new descriptor nor resized.
        let mut w = std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert_eq!(std::io::Write::write(&mut w, b"x").unwrap_err().raw_os_error(), Some(libc::EPERM));
        // SAFETY: ftruncate on our memfd; it must fail.
        assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 1) }, 0);
        assert!(!running_sealed(), "the test binary runs from a file");
    }

    #[test]
    #[ignore = "needs root (open_tree(OPEN_TREE_CLONE) needs CAP_SYS_ADMIN): scripts/test.sh runs it"]
    fn read_only_clone_refuses_writes() {
        // SAFETY: geteuid has no failure mode and no memory effects.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
        // A file no process executes (open for writing of a running one fails with ETXTBSY first).
        let file = std::env::temp_dir().join(format!("podbox-clone-test-{}", std::process::id()));
        std::fs::write(&file, b"original").unwrap();
        let c = CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
        let fd = read_only_clone_of(&c).unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let e = std::fs::OpenOptions::new().append(true).open(&path).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
        assert_eq!(std::fs::read(&path).unwrap(), b"original");
        std::fs::remove_file(&file).unwrap();
    }
}
