//! `logs` of a pod's container: its rotated log files read oldest first, and followed across
//! rotations with `-f`.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;
use crate::pod::{Ctx, PodError, Result};
use crate::container::{self};

use super::*;

/// Copy the container's log to `out`, oldest rotated file first; with `follow`, keep copying
/// (across rotations) until the container has exited.
pub fn logs(ctx: &Ctx, key: &str, name: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
    let (pod, _) = find(ctx, key, name)?;
    let dir = ctx.root.container_dir(&pod.id, name);
    let path = dir.join(LOG_FILE);
    // Where we are: the file (by identity, as rotation renames it) and the offset in it.
    let mut at: Option<(FileId, u64)> = None;
    loop {
        // The status is read before the log so that the last bytes written before exit are seen.
        // The monitor writes the log: it may still be copying output after the process ended.
        let done = !follow || ctx.container_status(&pod, name)?.map(|s| !s.state.is_active() && !s.record.monitor.is_some_and(|m| m.alive())).unwrap_or(true);
        let files = log_files(&path);
        // Continue in the file we were reading, wherever rotation moved it; if it has been
        // rotated away altogether, from the oldest there is.
        let start = at.and_then(|(ino, _)| files.iter().position(|(_, i, _)| *i == ino)).unwrap_or(0);
        for (file, ino, mut f) in files.into_iter().skip(start) {
            let from = match at {
                Some((i, off)) if i == ino => off,
                _ => 0,
            };
            match copy_from(&mut f, from, out) {
                Ok(Some(end)) => at = Some((ino, end)),
                Ok(None) => return Ok(()), // reader went away (e.g. `| head`)
                Err(e) => return Err(PodError::Kernel(format!("reading {}: {e}", file.display()))),
            }
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The log's files that exist, oldest first, opened, with their identities (from the open
/// descriptor: a rotation between a look-up and an open cannot swap one file for another). Read
/// newest first: rotation only moves a file to an older name, further along this scan, so a
/// rotation during it can show a file twice (kept once) but never hide one.
pub(super) fn log_files(path: &std::path::Path) -> Vec<(std::path::PathBuf, FileId, fs::File)> {
    use std::os::unix::fs::MetadataExt;
    let mut newest_first: Vec<(std::path::PathBuf, FileId, fs::File)> = Vec::new();
    for n in 0..MAX_LOG_FILES_SCANNED {
        let p = container::tee::rotated(path, n);
        let Ok(f) = fs::File::open(&p) else { continue };
        let Ok(m) = f.metadata() else { continue };
        let id = (m.ino(), m.created().ok());
        if !newest_first.iter().any(|(_, i, _)| *i == id) {
            newest_first.push((p, id, f));
        }
    }
    newest_first.reverse();
    newest_first
}

/// More rotated files than anyone keeps; `logs` looks this far.
pub(super) const MAX_LOG_FILES_SCANNED: u32 = 100;

/// Copy `f` from `from` to its end into `out`; the end offset, or None if `out` is gone.
pub(super) fn copy_from(f: &mut fs::File, from: u64, out: &mut dyn Write) -> std::io::Result<Option<u64>> {
    f.seek(SeekFrom::Start(from))?;
    let mut pos = from;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(Some(pos));
        }
        pos += n as u64;
        if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            return Ok(None);
        }
    }
}
