//! Output of a container: its stdout and stderr go through pipes that the monitor copies to the
//! caller's own streams (a foreground container; /dev/null when detached) *and* to the
//! container's log, so `logs` shows every container. The log is rotated with a size cap, as the
//! kubelet does: `<log>` plus `<log>.1` … `<log>.<files-1>` (oldest), each at most `max_size`.
//! With `cri_format` each line is written as the kubelet reads CRI logs: `TIME STREAM F LINE`,
//! `P` for a line that a read ended before its newline (the rest follows in the next entry).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::LogLimits;
use super::attach::Hub;

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

    /// Output read from `out` alone (a container's terminal: the attach hub's pty master);
    /// stderr is a pipe nothing writes to.
    pub fn reading(out: OwnedFd) -> nix::Result<Pipes> {
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (_, unused) = nix::unistd::pipe2(cloexec)?;
        Ok(Pipes { out: (out, unused), err: nix::unistd::pipe2(cloexec)? })
    }

    /// In the init: make the pipes' write ends its stdout and stderr.
    pub fn attach_child(self) {
        let _ = nix::unistd::dup2_stdout(&self.out.1);
        let _ = nix::unistd::dup2_stderr(&self.err.1);
    }

    /// In the monitor: copy until both pipes are closed, and return how `init` ended. After the
    /// init has ended, output still held open by a leftover process (possible when the pod shares
    /// its PID namespace) is drained for a moment, not waited for forever.
    /// With an attach `hub`, output also goes to its clients and the hub is served meanwhile.
    pub fn copy_until_exit(self, log: &Path, limits: LogLimits, init: Pid, mut hub: Option<&mut Hub>) -> WaitStatus {
        let Pipes { out: (out_r, out_w), err: (err_r, err_w) } = self;
        drop(out_w);
        drop(err_w);
        let mut log = RotatingLog::open(log, limits);
        let mut sinks = sinks(out_r, err_r);
        // Readable once the init has ended: a detached monitor sleeps in poll until there is
        // output or an exit, instead of waking every 100 ms to ask waitpid.
        let pidfd = pidfd_of(init);
        let mut status = None;
        let mut idle_after_exit = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while !sinks.is_empty() {
            let mut fds: Vec<PollFd> = sinks.iter().map(|(r, _, _)| PollFd::new(r.as_fd(), PollFlags::POLLIN)).collect();
            let hub_at = fds.len();
            if let Some(h) = hub.as_deref() {
                fds.extend(h.poll_fds().into_iter().map(|(fd, flags)| PollFd::new(fd, flags)));
            }
            let hub_end = fds.len();
            let watch_exit = status.is_none() && pidfd.is_some();
            if let (true, Some(p)) = (watch_exit, &pidfd) {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            let timeout = if watch_exit { PollTimeout::NONE } else { PollTimeout::from(100u16) };
            let n = poll(&mut fds, timeout).unwrap_or(0);
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().map(|r| !r.is_empty()).unwrap_or(false)).collect();
            drop(fds);
            if let Some(h) = hub.as_deref_mut() {
                h.service(&ready[hub_at..hub_end]);
            }
            let closed = copy_ready(&mut sinks, &ready, &mut buf, &mut log, limits.cri_format, hub.as_deref_mut());
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
        status.unwrap_or_else(|| super::process::wait_for(init))
    }
}

/// A pipe's read end, the caller's stream its output is copied to, and the stream's name.
type Sink = (OwnedFd, File, &'static str);

/// The read ends of the init's stdout and stderr, each with a duplicate of this process's own.
fn sinks(out_r: OwnedFd, err_r: OwnedFd) -> Vec<Sink> {
    let mut sinks = Vec::new();
    for (r, fd) in [(out_r, 1), (err_r, 2)] {
        // SAFETY: dup of our own standard streams, owned by the returned File.
        let f = unsafe { std::os::fd::FromRawFd::from_raw_fd(libc::dup(fd)) };
        sinks.push((r, f, if fd == 1 { "stdout" } else { "stderr" }));
    }
    sinks
}

/// A pidfd of our child `init`, readable once it has ended; None where the kernel has none.
fn pidfd_of(init: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open of our own child; the descriptor is owned by the OwnedFd.
    match unsafe { libc::syscall(libc::SYS_pidfd_open, init.as_raw(), 0) } {
        fd if fd >= 0 => Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) }),
        _ => None,
    }
}

/// Copies what the `ready` sinks' pipes hold to their streams, the log and the attach clients;
/// returns the indices of the pipes that were closed.
fn copy_ready(sinks: &mut [Sink], ready: &[bool], buf: &mut [u8], log: &mut RotatingLog, cri_format: bool, mut hub: Option<&mut Hub>) -> Vec<usize> {
    let mut closed = Vec::new();
    for (i, (r, sink, stream)) in sinks.iter_mut().enumerate() {
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
        if let Some(h) = hub.as_deref_mut() {
            h.broadcast(stream, data);
        }
        if cri_format {
            log.write(&cri_entries(stream, data, std::time::SystemTime::now()));
        } else {
            log.write(data);
        }
    }
    closed
}

/// `data` read from one stream as CRI log entries, one per line: `TIME STREAM F LINE\n` for a
/// whole line, `P` for a trailing piece without its newline (the kubelet joins P entries with
/// the next F entry of the stream).
fn cri_entries(stream: &str, data: &[u8], t: std::time::SystemTime) -> Vec<u8> {
    let ts = crate::state::rfc3339_nanos_of(t);
    let mut out = Vec::with_capacity(data.len() + 48);
    for piece in data.split_inclusive(|&b| b == b'\n') {
        let (line, tag) = match piece.strip_suffix(b"\n") {
            Some(l) => (l, "F"),
            None => (piece, "P"),
        };
        out.extend_from_slice(format!("{ts} {stream} {tag} ").as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

/// The path of rotated file `n` of `log` (0: the live file).
pub fn rotated(log: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return log.to_path_buf();
    }
    let mut p = log.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// The container's log with its size cap: appends to the live file until the next write would
/// pass `max_size`, then shifts the files (`.1` → `.2`, …, the oldest is dropped) and starts a
/// new live file. A write error (disk full) loses output, never blocks the container.
struct RotatingLog {
    path: PathBuf,
    limits: LogLimits,
    file: Option<File>,
    size: u64,
    /// The last byte written ended a line (or nothing was written yet).
    at_line_start: bool,
}

impl RotatingLog {
    fn open(path: &Path, limits: LogLimits) -> RotatingLog {
        let file = OpenOptions::new().create(true).append(true).open(path).ok();
        let size = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        RotatingLog { path: path.to_path_buf(), limits: LogLimits { max_size: limits.max_size.max(1), max_files: limits.max_files.max(1), cri_format: limits.cri_format }, file, size, at_line_start: true }
    }

    /// A CRI log is rotated by the kubelet, which renames the file and then asks for a new one
    /// (ReopenContainerLog): before each write, a file that is no longer the one at `path` is
    /// given up for the one there (made if missing).
    fn follow_path(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let open = self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| (m.dev(), m.ino()));
        let at_path = std::fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if open.is_none() || open != at_path {
            self.file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
            self.size = self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        }
    }

    fn write(&mut self, mut data: &[u8]) {
        if self.limits.cri_format {
            self.follow_path();
        }
        while !data.is_empty() {
            let room = self.limits.max_size.saturating_sub(self.size) as usize;
            if room == 0 {
                self.rotate();
                continue;
            }
            // Cut at a line end where one fits, so that lines stay whole where they can.
            let take = if data.len() <= room {
                data.len()
            } else {
                match data[..room].iter().rposition(|&b| b == b'\n') {
                    Some(i) => i + 1,
                    // No line end fits: start the line in a new file if this one ends with a
                    // whole line; split it only if it is longer than a file or already begun.
                    None if self.size > 0 && self.at_line_start => {
                        self.rotate();
                        continue;
                    }
                    None => room,
                }
            };
            if let Some(f) = self.file.as_mut() {
                let _ = f.write_all(&data[..take]);
            }
            self.size += take as u64;
            self.at_line_start = data[take - 1] == b'\n';
            data = &data[take..];
            if !data.is_empty() {
                self.rotate();
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let n = self.limits.max_files;
        if n <= 1 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, n - 1));
            for i in (0..n - 1).rev() {
                let _ = std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
        self.size = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_at_its_cap_and_keeps_the_newest_lines() {
        let dir = std::env::temp_dir().join(format!("podbox-tee-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("container.log");
        let mut w = RotatingLog::open(&log, LogLimits { max_size: 100, max_files: 3, cri_format: false });
        for i in 0..100 {
            w.write(format!("line {i:04}\n").as_bytes()); // 10 bytes each
        }
        w.write(&[b'x'; 250]); // longer than a file: split
        w.write(b"\nlast\n");
        let files: Vec<_> = (0..5).map(|n| rotated(&log, n)).filter(|p| p.exists()).collect();
        assert_eq!(files.len(), 3);
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 100);
        }
        let all: String = files.iter().rev().map(|f| std::fs::read_to_string(f).unwrap()).collect();
        assert!(all.ends_with("\nlast\n"), "{all:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cri_log_renamed_away_continues_in_a_new_file_at_its_path() {
        let dir = std::env::temp_dir().join(format!("podbox-tee-cri-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("c.log");
        let mut w = RotatingLog::open(&log, LogLimits { max_size: u64::MAX, max_files: 1, cri_format: true });
        w.write(b"before\n");
        std::fs::rename(&log, dir.join("c.log.rotated")).unwrap();
        w.write(b"after\n");
        assert_eq!(std::fs::read_to_string(dir.join("c.log.rotated")).unwrap(), "before\n");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "after\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cri_entries_tag_whole_lines_f_and_a_trailing_piece_p() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        let out = String::from_utf8(cri_entries("stderr", b"one\ntwo\nhalf", t)).unwrap();
        let ts = "2023-11-14T22:13:20.000000005Z";
        assert_eq!(out, format!("{ts} stderr F one\n{ts} stderr F two\n{ts} stderr P half\n"));
        let out = String::from_utf8(cri_entries("stdout", b"\n", t)).unwrap();
        assert_eq!(out, format!("{ts} stdout F \n"));
    }
}
