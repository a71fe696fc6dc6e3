//! Process identity and signalling: a PID plus its start time, so that podbox never signals a
//! process that merely reused the PID of one it started. Signals and waits go through a pidfd
//! opened and then checked against the start time: once checked, the descriptor names that
//! very process, so there is no window between the check and the kill. (Only the PID and start
//! time are state on disk: another podbox invocation starts from those.)

use serde::{Deserialize, Serialize};

use super::spawn::Pidfd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    /// Field 22 of /proc/PID/stat (clock ticks since boot).
    pub start_time: u64,
}

impl ProcRef {
    /// Identify the live process `pid`; None if it does not exist.
    pub fn of(pid: i32) -> Option<ProcRef> {
        start_time(pid).map(|start_time| ProcRef { pid, start_time })
    }

    /// True while the very process we recorded still exists and is not a zombie.
    pub fn alive(&self) -> bool {
        match stat_fields(self.pid) {
            Some((state, st)) => st == self.start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }

    /// A pidfd on this very process: None if it is gone (or is another process by now), or
    /// where no pidfd can be had.
    pub fn pidfd(&self) -> Option<Pidfd> {
        match self.handle() {
            Handle::Pidfd(fd) => Some(fd),
            Handle::Gone | Handle::NoPidfd => None,
        }
    }

    fn handle(&self) -> Handle {
        match Pidfd::open(self.pid) {
            // Opened first, checked after: if the PID was reused in between, the check fails.
            Ok(fd) if self.alive() => Handle::Pidfd(fd),
            Ok(_) => Handle::Gone,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Handle::Gone,
            // ENOSYS before Linux 5.3, or out of descriptors.
            Err(_) => Handle::NoPidfd,
        }
    }

    /// Send `sig` if this is still our process. Returns false if it is gone.
    pub fn signal(&self, sig: i32) -> bool {
        match self.handle() {
            Handle::Pidfd(fd) => fd.signal(sig).is_ok(),
            Handle::Gone => false,
            // SAFETY: kill(2) with a PID verified a moment before (the window pidfds close).
            Handle::NoPidfd => self.alive() && unsafe { libc::kill(self.pid, sig) == 0 },
        }
    }

    /// Wait until the process is gone or `timeout` passes; true if gone. A timeout past what
    /// the clock can represent (`stop -t 18446744073709551615`) means no timeout.
    pub fn wait_gone(&self, timeout: std::time::Duration) -> bool {
        match self.handle() {
            Handle::Pidfd(fd) => fd.wait_exited(Some(timeout)) || !self.alive(),
            Handle::Gone => true,
            Handle::NoPidfd => self.poll_gone(timeout),
        }
    }

    /// `wait_gone` by polling /proc, for kernels without pidfds.
    fn poll_gone(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now().checked_add(timeout);
        let mut nap = std::time::Duration::from_micros(200);
        loop {
            if !self.alive() {
                return true;
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return false;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(20));
        }
    }
}

/// How a recorded process can be reached now.
enum Handle {
    Pidfd(Pidfd),
    Gone,
    NoPidfd,
}

fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid).map(|(_, st)| st)
}

/// (state, starttime) from /proc/PID/stat; the command name may hold spaces and parentheses, so
/// parse from the last ')'.
fn stat_fields(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    // after state: ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    // cutime cstime priority nice num_threads itrealvalue starttime  (starttime is the 20th after state)
    let st = it.nth(18)?.parse().ok()?;
    Some((state, st))
}

/// Mark every descriptor above stdin/stdout/stderr close-on-exec, so that an exec'd program
/// inherits nothing of its launcher (lock files, sync channels, sockets).
pub fn cloexec_above_stdio() -> std::io::Result<()> {
    cloexec_from(3)
}

/// Mark every descriptor from `first` on close-on-exec. An error means some may leak into
/// the program: callers that exec a container's process must not go on.
pub fn cloexec_from(first: u32) -> std::io::Result<()> {
    close_range(first, u32::MAX, true)
}

/// close_range(2) of `first..=last`, closing or (`cloexec`) marking close-on-exec. Where it
/// fails — no close_range (ENOSYS, before 5.9), no CLOSE_RANGE_CLOEXEC (EINVAL, before 5.11), a
/// seccomp filter — the same one descriptor at a time from /proc/self/fd.
pub fn close_range(first: u32, last: u32, cloexec: bool) -> std::io::Result<()> {
    let flags = if cloexec { libc::CLOSE_RANGE_CLOEXEC } else { 0 };
    // SAFETY: close_range only closes or flags descriptors of our own table; callers own them.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) } == 0 {
        return Ok(());
    }
    // ENOSYS, EINVAL, or EPERM from a seccomp filter that does not know close_range (the
    // container's own is installed before this runs without no_new_privs).
    close_range_by_proc(first, last, cloexec)
}

/// close_range through /proc/self/fd, one descriptor at a time.
fn close_range_by_proc(first: u32, last: u32, cloexec: bool) -> std::io::Result<()> {
    // Listed first, acted on after: closing while reading the directory would skip entries.
    let fds: Vec<u32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok())).filter(|fd| (first..=last).contains(fd)).collect(),
        // No /proc (a chroot without a mount namespace): every number the descriptor limit
        // allows, the absent ones answering EBADF.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(soft, _)| soft).unwrap_or(1024);
            (first..=last.min(limit.min(u32::MAX as u64) as u32)).collect()
        }
        Err(e) => return Err(e),
    };
    for fd in fds {
        // SAFETY: as above, one descriptor at a time (the directory's own is gone by now: EBADF).
        let rc = unsafe { if cloexec { libc::fcntl(fd as i32, libc::F_SETFD, libc::FD_CLOEXEC) } else { libc::close(fd as i32) } };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EBADF) {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Point stdin, stdout and stderr at /dev/null (a process that must not hold its caller's
/// terminal or pipes).
pub fn stdio_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Exit code a shell would report for a wait status: the code, or 128 + signal.
pub fn shell_code(status: nix::sys::wait::WaitStatus) -> (i32, Option<i32>) {
    use nix::sys::wait::WaitStatus::*;
    match status {
        Exited(_, c) => (c, None),
        Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
        _ => (-1, None),
    }
}

/// Reap our child `pid`, retrying on EINTR; how it ended (an unexpected error reads as the
/// runtime's own failure code).
pub(crate) fn wait_for(pid: nix::unistd::Pid) -> nix::sys::wait::WaitStatus {
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(s @ (nix::sys::wait::WaitStatus::Exited(..) | nix::sys::wait::WaitStatus::Signaled(..))) => return s,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return nix::sys::wait::WaitStatus::Exited(pid, super::init::CODE_RUNTIME),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_identity_changes_with_start_time() {
        let me = ProcRef::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let other = ProcRef { start_time: me.start_time + 1, ..me };
        assert!(!other.alive());
        assert!(ProcRef::of(i32::MAX).is_none());
    }

    #[test]
    fn signals_reach_the_recorded_process_and_never_one_with_another_start_time() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let me = ProcRef::of(child.id() as i32).unwrap();
        let impostor = ProcRef { start_time: me.start_time + 1, ..me };
        assert!(impostor.pidfd().is_none());
        assert!(!impostor.signal(libc::SIGKILL), "signalled a process by PID alone");
        assert!(!me.wait_gone(std::time::Duration::from_millis(20)), "gone before any signal");
        assert!(me.signal(libc::SIGTERM));
        assert!(me.wait_gone(std::time::Duration::from_secs(5)), "the pidfd never said it exited");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert!(!me.signal(libc::SIGTERM), "a reaped process counts as gone");
    }

    #[test]
    fn the_proc_fd_fallback_marks_and_closes_exactly_the_range() {
        use std::os::fd::IntoRawFd;
        let fds: Vec<i32> = (0..3).map(|_| std::fs::File::open("/dev/null").unwrap().into_raw_fd()).collect();
        // SAFETY: F_GETFD only reads a descriptor's flags.
        let flags = |fd: i32| unsafe { libc::fcntl(fd, libc::F_GETFD) };
        for fd in &fds {
            // SAFETY: our descriptors; clear CLOEXEC (std sets it).
            unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) };
        }
        // One-descriptor ranges: other test threads may hold descriptors in between.
        for fd in &fds[1..] {
            close_range_by_proc(*fd as u32, *fd as u32, true).unwrap();
        }
        assert_eq!((flags(fds[0]), flags(fds[1]), flags(fds[2])), (0, libc::FD_CLOEXEC, libc::FD_CLOEXEC));
        for fd in &fds[1..] {
            close_range_by_proc(*fd as u32, *fd as u32, false).unwrap();
        }
        assert_eq!((flags(fds[1]), flags(fds[2])), (-1, -1), "not closed");
        assert_eq!(flags(fds[0]), 0, "closed outside the range");
        // SAFETY: our descriptor.
        unsafe { libc::close(fds[0]) };
    }
}
