//! A container's cgroup in one cgroup v1 hierarchy: created level by level (cpuset levels get
//! their parent's CPUs and memory nodes), its limits written as the hierarchy spells them.

use std::fs;
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
        for (file, value) in v1_writes(wanted, &self.controllers) {
            write(&self.path.join(file), &value)?;
        }
        Ok(())
    }

    /// The kernel's count of OOM kills in the cgroup (memory hierarchy only).
    pub fn oom_kills_v1(&self) -> Option<u64> {
        self.controllers.iter().any(|c| c == "memory").then(|| super::oom_kill_count(&self.path.join("memory.oom_control")))
    }
}

/// A v1 cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and a process cannot
/// join it so: give each level below the mount down to `path` its parent's (as runc does;
/// setting `cgroup.clone_children` instead would change the parent's own behaviour).
pub fn init_cpuset(mount: &Path, path: &Path) -> Result<()> {
    let rel = path.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut cur = mount.to_path_buf();
    for comp in rel.components() {
        let parent = cur.clone();
        cur.push(comp);
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read_to_string(cur.join(f)).unwrap_or_default().trim().is_empty() {
                let from = fs::read_to_string(parent.join(f)).map_err(io_err(format!("reading {}", parent.join(f).display())))?;
                write(&cur.join(f), from.trim())?;
            }
        }
    }
    Ok(())
}
