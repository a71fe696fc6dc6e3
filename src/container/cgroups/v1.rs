//! A container's cgroup in one cgroup v1 hierarchy: created level by level (cpuset levels get
//! their parent's CPUs and memory nodes), its limits written as the hierarchy spells them.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::resources::{Setting, v1_writes};
use super::tree::create_dir_racing;
use super::{Place, io_err, write};
use crate::container::Result;

/// A v1 directory: `controllers` are the hierarchy's.
pub type Dir = Place;

impl Dir {
    /// Create the directory and write the settings of this hierarchy's controllers.
    pub fn create_v1(&self, wanted: &[Setting]) -> Result<()> {
        create_dir_racing(&self.path)?;
        if self.controllers.iter().any(|c| c == "cpuset") {
            init_cpuset(&self.mount, &self.path)?;
        }
        write_runs(&self.path, &v1_writes(wanted, &self.controllers))
    }

    /// The kernel's count of OOM kills in the cgroup (memory hierarchy only).
    pub fn oom_kills_v1(&self) -> Option<u64> {
        self.controllers.iter().any(|c| c == "memory").then(|| super::oom_kill_count(&self.path.join("memory.oom_control")))
    }
}

/// Write `writes` into the files of directory `dir`, in order. Consecutive writes to one file
/// (the device rules: the v1 devices controller takes one rule per write(2)) share one open:
/// each value is still its own write(2), as the kernel parses one per call.
fn write_runs(dir: &Path, writes: &[(&'static str, String)]) -> Result<()> {
    let mut i = 0;
    while i < writes.len() {
        let file = writes[i].0;
        let path = dir.join(file);
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).open(&path).map_err(io_err(format!("writing {:?} to {}", writes[i].1, path.display())))?;
        while i < writes.len() && writes[i].0 == file {
            f.write_all(writes[i].1.as_bytes()).map_err(io_err(format!("writing {:?} to {}", writes[i].1, path.display())))?;
            i += 1;
        }
    }
    Ok(())
}

/// A v1 cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and a process cannot
/// join it so: give each empty level below the mount down to `path` its parent's (as runc
/// does). Walked from `path` upwards, stopping at the first level that has a value: a new
/// container's cgroup below a pod's costs three file operations per file, not one read per level.
///
/// Each level filled here (so one podbox made, or found empty) also gets `cgroup.clone_children`:
/// the kernel then gives its future children their parent's CPUs and memory nodes at mkdir.
/// That matters at scale: every write of `cpuset.cpus` in v1 rebuilds the scheduler domains,
/// a walk over every cpuset of the machine (`rebuild_sched_domains_locked`), so with writes a
/// pod's cgroups cost O(pods) (2 → 18 ms at 700 pods, issue 19); inherited they cost two
/// reads. Levels that already had values (the machine's, a user's) are left as they are.
pub fn init_cpuset(mount: &Path, path: &Path) -> Result<()> {
    if !path.starts_with(mount) {
        return Ok(());
    }
    for f in ["cpuset.cpus", "cpuset.mems"] {
        inherit_cpuset(mount, path, f)?;
    }
    Ok(())
}

/// The value of cpuset file `f` of `dir`, first copied from the nearest ancestor with one if empty.
fn inherit_cpuset(mount: &Path, dir: &Path, f: &str) -> Result<String> {
    let own = fs::read_to_string(dir.join(f));
    if let Ok(v) = &own
        && !v.trim().is_empty() {
            return Ok(v.trim().to_string());
        }
    let parent = match dir.parent() {
        Some(p) if dir != mount && p.starts_with(mount) => p,
        // The mount's root always has CPUs and memory nodes; an error reading it is real.
        _ => return own.map(|v| v.trim().to_string()).map_err(io_err(format!("reading {}", dir.join(f).display()))),
    };
    let from = inherit_cpuset(mount, parent, f)?;
    write(&dir.join(f), &from)?;
    if f == "cpuset.cpus" {
        write(&dir.join("cgroup.clone_children"), "1")?;
    }
    Ok(from)
}
