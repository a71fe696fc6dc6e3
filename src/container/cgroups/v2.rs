//! A container's cgroup in the unified (v2) hierarchy: its controllers enabled in every
//! ancestor's `cgroup.subtree_control`, its limits written, its device rules attached as eBPF.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceCgroup;

use super::resources::{Setting, v2_controllers_needed, v2_writes};
use super::tree::create_dir_racing;
use super::{Place, write};
use crate::container::Result;

/// A v2 directory: `controllers` are those available at the hierarchy's root
/// (`cgroup.controllers`).
pub type Dir = Place;

impl Dir {
    /// The cgroup `rel` below the unified hierarchy mounted at `mount`.
    pub fn new_v2(mount: &Path, rel: &Path) -> Dir {
        let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default().split_whitespace().map(String::from).collect();
        Dir { mount: mount.to_path_buf(), path: mount.join(rel), controllers }
    }

    /// Create the directory, write the settings and attach the device filter.
    pub fn create_v2(&self, wanted: &[Setting], devices: &[LinuxDeviceCgroup]) -> Result<()> {
        self.enable_controllers(&v2_controllers_needed(wanted))?;
        create_dir_racing(&self.path)?;
        for (file, value) in v2_writes(wanted, &self.controllers) {
            write(&self.path.join(file), &value)?;
        }
        if !devices.is_empty() {
            crate::container::device_filter::attach(&self.path, devices)?;
        }
        Ok(())
    }

    /// Controllers must be enabled in `cgroup.subtree_control` of every ancestor before a
    /// child's files exist.
    fn enable_controllers(&self, need: &[&str]) -> Result<()> {
        if need.is_empty() {
            return Ok(());
        }
        let rel = self.path.strip_prefix(&self.mount).unwrap_or(Path::new(""));
        let mut cur = self.mount.clone();
        for comp in rel.components() {
            create_dir_racing(&cur)?;
            let enabled = fs::read_to_string(cur.join("cgroup.subtree_control")).unwrap_or_default();
            for c in need {
                if !enabled.split_whitespace().any(|e| e == *c) {
                    write(&cur.join("cgroup.subtree_control"), &format!("+{c}"))?;
                }
            }
            cur.push(comp);
        }
        Ok(())
    }

    /// The kernel's count of OOM kills in the cgroup, where the memory controller is available.
    pub fn oom_kills_v2(&self) -> Option<u64> {
        self.controllers.iter().any(|c| c == "memory").then(|| super::oom_kill_count(&self.path.join("memory.events")))
    }

    /// `cgroup.kill` (Linux 5.14+), which kills the whole subtree in one write.
    pub fn kill_file(&self) -> Option<PathBuf> {
        Some(self.path.join("cgroup.kill")).filter(|p| p.exists())
    }
}
