//! Process listing: every process of an OCI container.

use std::fs;

use super::Runtime;
use super::store::Record;

impl Runtime {
    /// Every process of the container: those of its PID namespace when it has its own, else
    /// those of its cgroup when it has one, else just the init.
    pub fn processes(&self, rec: &Record) -> Vec<i32> {
        let Some(init) = rec.pid.filter(|p| p.alive()) else { return vec![] };
        let ns = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let init_ns = ns(init.pid);
        if init_ns.is_some() && init_ns != ns(std::process::id() as i32) {
            let mut pids: Vec<i32> = fs::read_dir("/proc")
                .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_string_lossy().parse().ok()).filter(|p| ns(*p) == init_ns).collect())
                .unwrap_or_default();
            pids.sort();
            return pids;
        }
        if let Some(dir) = rec.cgroup.first() {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs.split_whitespace().filter_map(|p| p.parse().ok()).collect();
            if !pids.is_empty() {
                return pids;
            }
        }
        vec![init.pid]
    }
}
