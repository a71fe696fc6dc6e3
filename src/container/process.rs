//! Process identity and signalling: a PID plus its start time, so that podbox never signals a
//! process that merely reused the PID of one it started.

use serde::{Deserialize, Serialize};

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

    /// Send `sig` if this is still our process. Returns false if it is gone.
    pub fn signal(&self, sig: i32) -> bool {
        if !self.alive() {
            return false;
        }
        // SAFETY: kill(2) with a PID we verified a moment ago.
        unsafe { libc::kill(self.pid, sig) == 0 }
    }

    /// Poll until the process is gone or `timeout` passes; true if gone.
    pub fn wait_gone(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut nap = std::time::Duration::from_micros(200);
        loop {
            if !self.alive() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(20));
        }
    }
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

/// Exit code a shell would report for a wait status: the code, or 128 + signal.
pub fn shell_code(status: nix::sys::wait::WaitStatus) -> (i32, Option<i32>) {
    use nix::sys::wait::WaitStatus::*;
    match status {
        Exited(_, c) => (c, None),
        Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
        _ => (-1, None),
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
}
