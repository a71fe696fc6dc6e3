//! Process file descriptors (pidfd_open, Linux 5.3): a handle on one process that a reused PID
//! cannot fool. Signals go through pidfd_send_signal; "has it exited" is a poll; our own
//! children are waited for with waitid(P_PIDFD).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

/// waitid(2)'s idtype for a pidfd (Linux 5.4); not in the libc crate.
const P_PIDFD: libc::idtype_t = 3;

#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: i32,
}

impl Pidfd {
    /// A pidfd for the process `pid` is now. Only race-free for our own unreaped child, or when
    /// the caller checks the process's identity afterwards (see `ProcRef::pidfd`).
    pub fn open(pid: i32) -> std::io::Result<Pidfd> {
        // SAFETY: pidfd_open with integer arguments; the result is a new descriptor we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor (CLOEXEC by the kernel), owned from here on.
        Ok(Pidfd { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) }, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Send `sig` to exactly this process; ESRCH once it has exited.
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal on our descriptor, no siginfo.
        if unsafe { libc::syscall(libc::SYS_pidfd_send_signal, self.fd.as_raw_fd(), sig, std::ptr::null::<libc::siginfo_t>(), 0) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Wait up to `timeout` (None: forever) for the process to exit; true if it has. A zombie
    /// counts as exited.
    pub fn wait_exited(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => d.saturating_duration_since(std::time::Instant::now()).as_millis().min(i32::MAX as u128) as i32,
            };
            let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: poll on one pollfd of ours.
            match unsafe { libc::poll(&mut p, 1, ms) } {
                1 => return true,
                0 => return false,
                _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
                _ => return false,
            }
        }
    }

    /// Reap our child: block until it has ended and return how.
    pub fn wait(&self) -> std::io::Result<WaitStatus> {
        loop {
            // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill in.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid on our pidfd with a valid siginfo_t to fill.
            if unsafe { libc::waitid(P_PIDFD, self.fd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: filled in by a successful waitid for an exited child.
            let status = unsafe { info.si_status() };
            let pid = Pid::from_raw(self.pid);
            return Ok(match info.si_code {
                libc::CLD_EXITED => WaitStatus::Exited(pid, status),
                code => match nix::sys::signal::Signal::try_from(status) {
                    Ok(sig) => WaitStatus::Signaled(pid, sig, code == libc::CLD_DUMPED),
                    Err(_) => WaitStatus::Exited(pid, 128 + status),
                },
            });
        }
    }
}
