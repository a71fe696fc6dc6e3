//! Output of a foreground container: its stdout and stderr go through pipes that the monitor
//! copies to the caller's own streams *and* to the container's log, so `logs` shows every
//! container, including those run in the foreground.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

pub struct Pipes {
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
}

impl Pipes {
    pub fn new() -> nix::Result<Pipes> {
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        Ok(Pipes { out: nix::unistd::pipe2(cloexec)?, err: nix::unistd::pipe2(cloexec)? })
    }

    /// In the init: make the pipes' write ends its stdout and stderr.
    pub fn attach_child(self) {
        let _ = nix::unistd::dup2_stdout(&self.out.1);
        let _ = nix::unistd::dup2_stderr(&self.err.1);
    }

    /// In the monitor: copy until both pipes are closed, and return how `init` ended. After the
    /// init has ended, output still held open by a leftover process (possible when the pod shares
    /// its PID namespace) is drained for a moment, not waited for forever.
    pub fn copy_until_exit(self, log: &Path, init: Pid) -> WaitStatus {
        let Pipes { out: (out_r, out_w), err: (err_r, err_w) } = self;
        drop(out_w);
        drop(err_w);
        let mut log = OpenOptions::new().create(true).append(true).open(log).ok();
        let mut sinks: Vec<(OwnedFd, File)> = Vec::new();
        // SAFETY: dup of our own standard streams, owned by the returned File.
        for (r, fd) in [(out_r, 1), (err_r, 2)] {
            let f = unsafe { std::os::fd::FromRawFd::from_raw_fd(libc::dup(fd)) };
            sinks.push((r, f));
        }
        let mut status = None;
        let mut idle_after_exit = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while !sinks.is_empty() {
            let mut fds: Vec<PollFd> = sinks.iter().map(|(r, _)| PollFd::new(r.as_fd(), PollFlags::POLLIN)).collect();
            let n = poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0);
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().map(|r| !r.is_empty()).unwrap_or(false)).collect();
            drop(fds);
            let mut closed = Vec::new();
            for (i, (r, sink)) in sinks.iter_mut().enumerate() {
                if !ready[i] {
                    continue;
                }
                // SAFETY: read into our buffer from a pipe we own.
                let k = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if k <= 0 {
                    closed.push(i);
                    continue;
                }
                let data = &buf[..k as usize];
                let _ = sink.write_all(data); // the caller may be gone; the log still gets it
                if let Some(l) = log.as_mut() {
                    let _ = l.write_all(data);
                }
            }
            for i in closed.into_iter().rev() {
                sinks.remove(i);
            }
            if status.is_none() {
                if let Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) = waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                    status = Some(s);
                }
            } else if n == 0 {
                idle_after_exit += 1;
                if idle_after_exit >= 2 {
                    break;
                }
            }
        }
        status.unwrap_or_else(|| super::monitor::wait_for(init))
    }
}
