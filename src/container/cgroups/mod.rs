//! A container's cgroup from the spec's `linux.cgroupsPath` and `linux.resources`: create it in
//! every mounted hierarchy (cgroup v1, also the v1 half of a hybrid layout) or in the unified
//! one (pure v2), write the limits, tell the init which `cgroup.procs` to join, read OOM kills,
//! kill what is in it, and remove it again. A limit that cannot be applied is an error naming
//! the spec field: a container never runs less confined than its spec says.
//!
//! `Cgroup` is the one interface; each of its directories is a v1 (`v1.rs`) or a v2 (`v2.rs`)
//! one. Where the hierarchies are: `discovery.rs`; what the spec's resources become as file
//! writes: `resources.rs`; the tree on disk: `tree.rs`; freezing: `freezer.rs`.

mod devices;
mod discovery;
mod freezer;
mod resources;
mod tree;
mod v1;
mod v2;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxResources, Spec};

use super::{ContainerError, Result};

pub use devices::{device_rule, standard_device_allows};
pub use discovery::View;
pub use freezer::{is_frozen, set_frozen};
pub use tree::remove_paths;

/// Where one directory of a cgroup is: the hierarchy's mount point, the directory below it,
/// and the controllers it can have.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub mount: PathBuf,
    pub path: PathBuf,
    pub controllers: Vec<String>,
}

/// One directory of the container's cgroup: per v1 hierarchy, or the one of the unified tree.
#[derive(Debug, Clone, PartialEq)]
enum Dir {
    V1(v1::Dir),
    V2(v2::Dir),
}

impl Dir {
    fn path(&self) -> &Path {
        match self {
            Dir::V1(d) => &d.path,
            Dir::V2(d) => &d.path,
        }
    }

    /// (v2?, controllers): what settings this directory can take.
    fn capability(&self) -> (bool, &[String]) {
        match self {
            Dir::V1(d) => (false, &d.controllers),
            Dir::V2(d) => (true, &d.controllers),
        }
    }

    fn create(&self, wanted: &[resources::Setting], devices: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<()> {
        match self {
            Dir::V1(d) => d.create_v1(wanted),
            Dir::V2(d) => d.create_v2(wanted, devices),
        }
    }

    fn oom_kills(&self) -> Option<u64> {
        match self {
            Dir::V1(d) => d.oom_kills_v1(),
            Dir::V2(d) => d.oom_kills_v2(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cgroup {
    dirs: Vec<Dir>,
}

fn spec_err(field: &str, msg: impl Into<String>) -> ContainerError {
    ContainerError::Spec { field: field.into(), msg: msg.into() }
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> ContainerError {
    move |source| ContainerError::Io { what, source }
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(io_err(format!("writing {value:?} to {}", path.display())))
}

/// The `oom_kill N` line of v1's memory.oom_control or v2's memory.events; 0 when unreadable.
fn oom_kill_count(file: &Path) -> u64 {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// What a container's `/sys/fs/cgroup` shows of the calling process's own cgroups: one
/// (subdirectory name, directory of our cgroup) per mounted hierarchy, named like its mount
/// point ("memory", "cpu,cpuacct", "unified"), or a single ("", dir) when the machine is pure v2.
pub fn own_views() -> Result<Vec<View>> {
    Ok(discovery::views(&discovery::mounts()?, &discovery::own_memberships()?))
}

/// The v1 controllers of the hierarchy that cgroup directory `dir` belongs to (empty for v2),
/// from the mount table: the hierarchy mounted at the longest prefix of `dir`.
pub fn controllers_of(dir: &Path) -> Result<Vec<String>> {
    Ok(discovery::controllers_of(&discovery::mounts()?, dir))
}

/// The cgroup of `spec`, created with its resources; None when the spec has no cgroupsPath.
pub fn setup(spec: &Spec) -> Result<Option<Cgroup>> {
    let Some(cg) = plan(spec)? else { return Ok(None) };
    if let Err(e) = cg.create(resources_of(spec)) {
        let _ = cg.remove();
        return Err(e);
    }
    Ok(Some(cg))
}

/// The cgroup of `spec` with its resources checked against this machine, nothing created
/// (`Cgroup::create` does that later: `monitor::start`, while the init sets up); None when the
/// spec has no cgroupsPath.
pub fn plan(spec: &Spec) -> Result<Option<Cgroup>> {
    let resources = resources_of(spec);
    let Some(path) = spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()) else {
        if resources.is_some() {
            return Err(spec_err("linux.resources", "limits need linux.cgroupsPath to say which cgroup to put them on"));
        }
        return Ok(None);
    };
    let cg = Cgroup::resolve(&path.to_string_lossy())?;
    cg.settings(resources)?;
    Ok(Some(cg))
}

/// The limits `spec` puts on its cgroup, if any.
pub fn resources_of(spec: &Spec) -> Option<&LinuxResources> {
    spec.linux().as_ref().and_then(|l| l.resources().as_ref())
}

impl Cgroup {
    /// Where `cgroups_path` is on this machine (nothing is created).
    pub fn resolve(cgroups_path: &str) -> Result<Cgroup> {
        Ok(Cgroup { dirs: discovery::plan(&discovery::mounts()?, &discovery::own_memberships()?, cgroups_path)? })
    }

    /// `resources` as file settings, or the spec error of the first one no hierarchy here takes.
    fn settings(&self, resources: Option<&LinuxResources>) -> Result<Vec<resources::Setting>> {
        let wanted = match resources {
            Some(r) => resources::settings(r)?,
            None => vec![],
        };
        let available: Vec<_> = self.dirs.iter().map(Dir::capability).collect();
        if let Some(s) = wanted.iter().find(|s| !resources::applicable(s, &wanted, &available)) {
            return Err(spec_err(s.field, format!("the {} cgroup controller is not available on this machine (not mounted, or not enabled in cgroup.controllers)", s.controller)));
        }
        Ok(wanted)
    }

    /// Create the cgroup and apply `resources`. On error the caller removes it.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        let wanted = self.settings(resources)?;
        let devices = resources.and_then(|r| r.devices().as_deref()).unwrap_or_default();
        for d in &self.dirs {
            d.create(&wanted, devices)?;
        }
        Ok(())
    }

    /// Remove the cgroup's directories if they are empty, and nothing else: for parents that
    /// several users share (e.g. `podbox`), where another pod may still have children.
    pub fn prune(&self) {
        for d in &self.dirs {
            let _ = fs::remove_dir(d.path());
        }
    }

    /// The cgroup's directory in every hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path().to_path_buf()).collect()
    }

    /// The `cgroup.procs` files a process writes "0" into to join the cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path().join("cgroup.procs")).collect()
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        self.dirs.iter().filter_map(Dir::oom_kills).sum()
    }

    /// Every process in the cgroup or below it, as the kernel lists them (PIDs in the
    /// caller's PID namespace). The cgroup is what finds a container's processes whatever the
    /// records say: a crashed CLI may never have written their PIDs down.
    ///
    /// Performance: only the first hierarchy is read (a pod with many containers has a dozen
    /// v1 hierarchies per container). That suffices: processes join `procs_files()` in order,
    /// so one that is in any of the cgroups is in the first; their children inherit all.
    pub fn procs(&self) -> Vec<i32> {
        tree::procs_below(&self.paths()[..1.min(self.dirs.len())])
    }

    /// Kill every process in the cgroup and below it, and wait until the kernel lists none
    /// (or `timeout` passes; then the PIDs still there are returned as the error). v2 with
    /// `cgroup.kill` does it in one write; otherwise the cgroup is frozen (v1 freezer or v2
    /// `cgroup.freeze`) so that nothing can fork while its members are listed and killed, then
    /// thawed so that the SIGKILLs take effect; without a freezer, kill and look again.
    pub fn kill_all(&self, timeout: Duration) -> std::result::Result<(), Vec<i32>> {
        let paths = self.paths();
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.procs();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(left);
            }
            let v2_kill: Vec<_> = self.dirs.iter().filter_map(|d| if let Dir::V2(d) = d { d.kill_file() } else { None }).collect();
            if !v2_kill.is_empty() {
                for k in v2_kill {
                    let _ = fs::write(k, "1");
                }
            } else {
                let frozen = set_frozen(&paths, true).is_ok();
                for pid in self.procs() {
                    // SAFETY: kill(2); the PID was read from the cgroup a moment ago and, the
                    // cgroup being frozen, cannot have exited and been reused in between.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                if frozen {
                    let _ = set_frozen(&paths, false);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Remove the cgroup and every cgroup below it, deepest first. Processes must be gone (or
    /// going: a killed process leaves its cgroup only once reaped, so EBUSY is retried briefly).
    pub fn remove(&self) -> Result<()> {
        remove_paths(&self.paths())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

    /// A fresh directory under the temp dir for one test's fake cgroup tree.
    fn fixture(name: &str) -> PathBuf {
        let tmp = std::env::temp_dir().join(format!("podbox-{name}-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        tmp
    }

    /// A v2 cgroup in a temp dir (plain files stand in for the kernel's): OCI's memory+swap
    /// total becomes memory.swap.max = swap - memory; v1 gets the total in memsw.
    #[test]
    fn swap_is_memory_plus_swap_on_v1_and_swap_alone_on_v2() {
        let tmp = fixture("swap");
        let v2 = Dir::V2(v2::Dir { mount: tmp.join("v2"), path: tmp.join("v2/c"), controllers: vec!["memory".into()] });
        let v1 = Dir::V1(v1::Dir { mount: tmp.join("v1"), path: tmp.join("v1/c"), controllers: vec!["memory".into()] });
        let cg = Cgroup { dirs: vec![v2, v1] };
        let mem = |limit: i64, swap: i64| LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(limit).swap(swap).build().unwrap()).build().unwrap();
        cg.create(Some(&mem(64 << 20, 96 << 20))).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.join(f)).unwrap();
        assert_eq!(read("v2/c/memory.swap.max"), (32i64 << 20).to_string());
        assert_eq!(read("v2/c/memory.max"), (64i64 << 20).to_string());
        assert_eq!(read("v1/c/memory.memsw.limit_in_bytes"), (96i64 << 20).to_string());
        cg.create(Some(&mem(64 << 20, -1))).unwrap();
        assert_eq!(read("v2/c/memory.swap.max"), "max");
        // swap below the memory limit, or without one: refused before anything is written.
        let _ = fs::remove_dir_all(&tmp);
        assert!(matches!(cg.create(Some(&mem(64 << 20, 32 << 20))), Err(ContainerError::Spec { field, .. }) if field == "linux.resources.memory.swap"));
        let no_limit = LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().swap(1i64 << 20).build().unwrap()).build().unwrap();
        assert!(cg.create(Some(&no_limit)).is_err());
        assert!(!tmp.exists());
    }

    /// v1 cpuset in a temp dir: every new level gets its parent's CPUs and memory nodes, then
    /// the spec's cpus/mems are written to the container's own.
    #[test]
    fn cpuset_levels_are_filled_from_the_parent_then_set() {
        let tmp = fixture("cpuset");
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(tmp.join("cpuset.mems"), "0\n").unwrap();
        let cg = Cgroup { dirs: vec![Dir::V1(v1::Dir { mount: tmp.clone(), path: tmp.join("a/b"), controllers: vec!["cpuset".into()] })] };
        let r = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().cpus("1").mems("0").build().unwrap()).build().unwrap();
        cg.create(Some(&r)).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.join(f)).unwrap();
        assert_eq!((read("a/cpuset.cpus").as_str(), read("a/cpuset.mems").as_str()), ("0-1", "0"));
        assert_eq!((read("a/b/cpuset.cpus").as_str(), read("a/b/cpuset.mems").as_str()), ("1", "0"));
        // The levels podbox filled pass their values on to their future children; the level
        // that already had values (not podbox's) is not changed.
        assert_eq!((read("a/cgroup.clone_children").as_str(), read("a/b/cgroup.clone_children").as_str()), ("1", "1"));
        assert!(!tmp.join("cgroup.clone_children").exists());
        fs::remove_dir_all(&tmp).unwrap();
    }

    /// v2 in a temp dir: the controllers a setting needs are enabled in every ancestor's
    /// cgroup.subtree_control (not the leaf's, which would forbid processes in it), only where
    /// not already enabled; cpu.shares becomes cpu.weight; OOM kills are read from memory.events.
    #[test]
    fn v2_enables_controllers_in_the_ancestors_then_writes_the_leaf() {
        let tmp = fixture("v2");
        fs::create_dir_all(tmp.join("pod")).unwrap();
        fs::write(tmp.join("cgroup.subtree_control"), "cpu pids memory").unwrap();
        let ctrls = vec!["cpu".to_string(), "pids".into(), "memory".into()];
        let cg = Cgroup { dirs: vec![Dir::V2(v2::Dir { mount: tmp.clone(), path: tmp.join("pod/c"), controllers: ctrls })] };
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().shares(1024u64).build().unwrap())
            .pids(oci_spec::runtime::LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap();
        cg.create(Some(&r)).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.join(f)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "cpu pids memory", "already enabled: left alone");
        // Plain files keep only the last write: "+cpu" was written before it.
        assert_eq!(read("pod/cgroup.subtree_control"), "+pids");
        assert!(!tmp.join("pod/c/cgroup.subtree_control").exists());
        assert_eq!((read("pod/c/cpu.weight").as_str(), read("pod/c/pids.max").as_str()), ("39", "10"));
        assert!(!tmp.join("pod/c/cpu.shares").exists(), "v1's file is not written on v2");
        fs::write(tmp.join("pod/c/memory.events"), "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n").unwrap();
        assert_eq!(cg.oom_kills(), 2);
        assert_eq!(cg.procs_files(), vec![tmp.join("pod/c/cgroup.procs")]);
        fs::remove_dir_all(&tmp).unwrap();
    }

    /// The freezer in a temp dir: v1's freezer.state and v2's cgroup.freeze are written, and
    /// the change counts as done when the kernel's report (here pre-written) says so.
    #[test]
    fn freezing_writes_the_versions_freezer_file() {
        let tmp = fixture("freezer");
        let (v1, v2, none) = (tmp.join("v1"), tmp.join("v2"), tmp.join("none"));
        for d in [&v1, &v2, &none] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(v1.join("freezer.state"), "THAWED\n").unwrap();
        fs::write(v2.join("cgroup.freeze"), "0\n").unwrap();
        fs::write(v2.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        set_frozen(&[v1.clone(), v2.clone()], true).unwrap();
        assert_eq!(fs::read_to_string(v1.join("freezer.state")).unwrap(), "FROZEN");
        assert_eq!(fs::read_to_string(v2.join("cgroup.freeze")).unwrap(), "1");
        assert!(is_frozen(std::slice::from_ref(&v1)) && is_frozen(std::slice::from_ref(&v2)));
        set_frozen(std::slice::from_ref(&v1), false).unwrap();
        assert!(!is_frozen(std::slice::from_ref(&v1)));
        // No freezer at all: an error, not a silent "done".
        assert!(set_frozen(std::slice::from_ref(&none), true).is_err());
        fs::remove_dir_all(&tmp).unwrap();
    }

    /// A v1 limit on a hierarchy without the controller, with no twin elsewhere: refused before
    /// any directory is made.
    #[test]
    fn a_limit_without_its_controller_is_refused_and_nothing_is_created() {
        let tmp = fixture("noctl");
        let cg = Cgroup { dirs: vec![Dir::V1(v1::Dir { mount: tmp.clone(), path: tmp.join("c"), controllers: vec!["memory".into()] })] };
        let r = LinuxResourcesBuilder::default().pids(oci_spec::runtime::LinuxPidsBuilder::default().limit(10).build().unwrap()).build().unwrap();
        assert!(matches!(cg.create(Some(&r)), Err(ContainerError::Spec { field, .. }) if field == "linux.resources.pids.limit"));
        assert!(!tmp.exists());
    }
}
