//! Freezing and thawing a cgroup's processes: v1's freezer controller (`freezer.state`) or v2's
//! `cgroup.freeze`, chosen by which file the recorded directory has.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::write;
use crate::container::{ContainerError, Result};

/// Freeze (or thaw) every process of the cgroups recorded with `paths()`: v1's freezer
/// controller (`freezer.state`), or v2's `cgroup.freeze`. Returns once the kernel reports the
/// change done (v1 passes through FREEZING while tasks are stopped).
pub fn set_frozen(paths: &[PathBuf], frozen: bool) -> Result<()> {
    let mut found = false;
    for p in paths {
        let (file, value, done): (PathBuf, &str, Box<dyn Fn() -> bool>) = if p.join("freezer.state").exists() {
            let f = p.join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            (f.clone(), want, Box::new(move || fs::read_to_string(&f).is_ok_and(|s| s.trim() == want)))
        } else if p.join("cgroup.freeze").exists() {
            let events = p.join("cgroup.events");
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            (p.join("cgroup.freeze"), if frozen { "1" } else { "0" }, Box::new(move || fs::read_to_string(&events).is_ok_and(|s| s.lines().any(|l| l == want))))
        } else {
            continue;
        };
        found = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        write(&file, value)?;
        while !done() {
            if Instant::now() > deadline {
                return Err(ContainerError::Io { what: format!("waiting for {} to become {value}", file.display()), source: std::io::Error::from(std::io::ErrorKind::TimedOut) });
            }
            // v1 retries the freeze of tasks that were busy: writing again nudges it.
            if frozen && file.ends_with("freezer.state") {
                write(&file, value)?;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if !found {
        let what = "freezing or thawing: the container's cgroup has no freezer (no v1 freezer controller, no v2 cgroup.freeze)".to_string();
        return Err(ContainerError::Io { what, source: std::io::ErrorKind::Unsupported.into() });
    }
    Ok(())
}

/// Whether the cgroups recorded with `paths()` are frozen.
pub fn is_frozen(paths: &[PathBuf]) -> bool {
    paths.iter().any(|p| {
        fs::read_to_string(p.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN") || fs::read_to_string(p.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    })
}
