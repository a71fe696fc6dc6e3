//! A pseudo-terminal from a container's own devpts, for `exec -t`: the master is opened through
//! /proc/PID/root/dev/pts/ptmx of the container's init, so the slave is /dev/pts/N *inside* the
//! container (`tty` names it, programs find it) while the server holds the master. Resized with
//! TIOCSWINSZ as the client's terminal changes.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// devpts' statfs magic: what the opened ptmx must live on.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Open a master/slave pair in the devpts mounted at /dev/pts of process `pid`'s root.
pub fn open_in(pid: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let root = File::open(format!("/proc/{pid}/root"))?;
    let path = c"dev/pts/ptmx";
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    // The container's own symlinks resolve inside its root, never to the host's files.
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with a valid directory fd, a NUL-terminated path and a filled open_how of
    // the size passed; the result is a new descriptor we own (or -1).
    let fd = unsafe { libc::syscall(libc::SYS_openat2, root.as_raw_fd(), path.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>()) };
    if fd < 0 {
        return Err(io::Error::other(format!("opening the container's /dev/pts/ptmx: {}", io::Error::last_os_error())));
    }
    // SAFETY: fd was just returned by openat2 and is owned by nothing else.
    let master = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: fstatfs into a zeroed statfs on a descriptor we hold.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(master.as_raw_fd(), &mut st) } != 0 || st.f_type as i64 != DEVPTS_SUPER_MAGIC {
        return Err(io::Error::other("the container's /dev/pts/ptmx is not on a devpts file system"));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int; the master is ours.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(io::Error::other(format!("unlocking the pty: {}", io::Error::last_os_error())));
    }
    // SAFETY: TIOCGPTPEER opens the master's peer (the slave) and returns a new descriptor.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if slave < 0 {
        return Err(io::Error::other(format!("opening the pty's slave: {}", io::Error::last_os_error())));
    }
    // SAFETY: a fresh descriptor from TIOCGPTPEER, owned by nothing else.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Set the terminal's size (the kernel sends SIGWINCH to its foreground process group).
pub fn resize(master: RawFd, width: u16, height: u16) {
    let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer; a failure only leaves the size as it was.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
}

/// In the forked child before exec: a new session whose controlling terminal is stdin (the
/// slave), so the command in the container gets job control and SIGWINCH.
pub fn make_controlling_terminal() -> io::Result<()> {
    // SAFETY: setsid and ioctl are async-signal-safe; called between fork and exec.
    unsafe {
        if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
