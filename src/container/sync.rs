//! The sync pipe between a process that forks and the children it waits for: a CLOEXEC pipe
//! whose write end the children inherit. They write `pid N` lines or one `err CODE MESSAGE` line;
//! the reader reads until every write end is closed — by exit, or by a successful exec.

use std::io::Read;
use std::os::fd::{OwnedFd, RawFd};

/// What the children reported.
#[derive(Debug, Default)]
pub struct Report {
    pub pid: Option<i32>,
    pub error: Option<(i32, String)>,
}

pub fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// Write one message (one write: atomic below PIPE_BUF).
pub fn send(fd: RawFd, msg: &str) {
    let b = msg.as_bytes();
    // SAFETY: writing our own buffer to an fd we hold.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len().min(4000)) };
}

/// Report an error and end the (forked) process with `code`.
pub fn fail(fd: RawFd, code: i32, msg: &str) -> ! {
    send(fd, &format!("err {code} {}\n", msg.replace('\n', " ")));
    // SAFETY: _exit skips destructors and atexit handlers that belong to the parent's image.
    unsafe { libc::_exit(code) }
}

/// Read until EOF and parse the messages.
pub fn read(r: OwnedFd) -> Report {
    let mut buf = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut buf);
    let mut rep = Report::default();
    for line in buf.lines() {
        if let Some(p) = line.strip_prefix("pid ") {
            rep.pid = p.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("err ") {
            let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            rep.error.get_or_insert((code.parse().unwrap_or(1), msg.to_string()));
        }
    }
    rep
}
