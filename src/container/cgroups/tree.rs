//! A cgroup's directory tree on disk, whatever the version: creating it against a racing
//! remover, listing the processes in it and below, and removing it deepest first.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::io_err;
use crate::container::{ContainerError, Result};

/// mkdir -p that survives another podbox pruning an empty shared parent at the same moment.
pub fn create_dir_racing(p: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match fs::create_dir_all(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
            other => return other.map_err(io_err(format!("creating cgroup {}", p.display()))),
        }
    }
}

fn collect_dirs(p: &Path, out: &mut Vec<PathBuf>) {
    if !p.is_dir() {
        return;
    }
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
    out.push(p.to_path_buf());
}

fn rmdir_retrying(p: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match fs::remove_dir(p) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let procs = fs::read_to_string(p.join("cgroup.procs")).unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
                return Err(ContainerError::Io { what: format!("removing cgroup {} (processes still in it: [{procs}])", p.display()), source: e });
            }
        }
    }
}

/// Remove cgroup directories recorded earlier with `paths()` (and everything below them).
pub fn remove_paths(paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        let mut tree = Vec::new();
        collect_dirs(p, &mut tree);
        tree.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in tree {
            rmdir_retrying(&d)?;
        }
    }
    Ok(())
}

/// The PIDs in `cgroup.procs` of every cgroup at or below `paths`.
pub fn procs_below(paths: &[PathBuf]) -> Vec<i32> {
    let mut tree = Vec::new();
    for p in paths {
        collect_dirs(p, &mut tree);
    }
    let mut out: Vec<i32> = tree
        .iter()
        .flat_map(|d| fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().split_whitespace().filter_map(|x| x.parse().ok()).collect::<Vec<i32>>())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
