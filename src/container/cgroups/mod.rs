//! A container's cgroup from the spec's `linux.cgroupsPath` and `linux.resources`: create it in
//! every mounted hierarchy (cgroup v1, also the v1 half of a hybrid layout) or in the unified
//! one (pure v2), write the limits, tell the init which `cgroup.procs` to join, read OOM kills,
//! and remove it again. A limit that cannot be applied is an error naming the spec field: a
//! container never runs less confined than its spec says.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};

use super::{ContainerError, Result};

/// v1 controllers podbox creates a cgroup in. A new cpuset cgroup has no CPUs and no memory
/// nodes, so nothing could join it: `init_cpuset` copies them down from the parent first.
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc"];

/// One directory of the container's cgroup: per v1 hierarchy, or the one of the unified tree.
#[derive(Debug, Clone, PartialEq)]
struct Dir {
    /// The hierarchy's mount point, and the cgroup's directory below it.
    mount: PathBuf,
    path: PathBuf,
    /// Controllers of this hierarchy (v1) or available at its root (v2).
    controllers: Vec<String>,
    v2: bool,
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

/// The cgroup hierarchies as lines in /proc/self/mountinfo's format. The usual places are
/// looked at first — `/sys/fs/cgroup` itself (pure v2) or its subdirectories, one per v1
/// hierarchy named after its controllers — by their file system magic: the kernel serves
/// mountinfo 4 KiB per read and walks the mount list from the start on each read, so on a node
/// with hundreds of pods (each with its pins) reading it would cost milliseconds per pod. Only
/// where nothing is found there is the mount table read.
fn cgroup_mount_table() -> Result<String> {
    const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let magic = |p: &Path| nix::sys::statfs::statfs(p).ok().map(|s| s.filesystem_type().0);
    let base = Path::new("/sys/fs/cgroup");
    let line = |mount: &Path, v2: bool, opts: &str| {
        if v2 { format!("0 0 0:0 / {} rw - cgroup2 cgroup2 rw\n", mount.display()) } else { format!("0 0 0:0 / {} rw - cgroup cgroup rw,{opts}\n", mount.display()) }
    };
    let mut table = String::new();
    match magic(base) {
        Some(CGROUP2_SUPER_MAGIC) => table.push_str(&line(base, true, "")),
        Some(_) => {
            for e in fs::read_dir(base).into_iter().flatten().flatten() {
                // "cpu" and "cpuacct" are symlinks to "cpu,cpuacct": the real directory counts.
                if e.file_type().map(|t| !t.is_dir()).unwrap_or(true) {
                    continue;
                }
                let (path, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
                match magic(&path) {
                    Some(CGROUP2_SUPER_MAGIC) => table.push_str(&line(&path, true, "")),
                    Some(CGROUP_SUPER_MAGIC) => {
                        // A named hierarchy without controllers ("systemd") is mounted name=...
                        let known = name.split(',').all(|c| V1_CONTROLLERS.contains(&c) || c == "cpuset");
                        table.push_str(&line(&path, false, &if known { name } else { format!("name={name}") }))
                    }
                    _ => {}
                }
            }
        }
        None => {}
    }
    if table.is_empty() {
        table = fs::read_to_string("/proc/self/mountinfo").map_err(io_err("reading /proc/self/mountinfo".into()))?;
    }
    Ok(table)
}

/// A mounted hierarchy: (mount point, v2?, controllers) from one line of /proc/self/mountinfo.
fn parse_mount(line: &str) -> Option<(PathBuf, bool, Vec<String>)> {
    let (left, right) = line.split_once(" - ")?;
    let mount = left.split(' ').nth(4)?;
    let mut r = right.split(' ');
    let fstype = r.next()?;
    let opts = r.nth(1)?;
    match fstype {
        "cgroup2" => Some((PathBuf::from(mount), true, vec![])),
        "cgroup" => {
            let ctrls: Vec<String> = opts.split(',').filter(|o| V1_CONTROLLERS.contains(o)).map(String::from).collect();
            (!ctrls.is_empty()).then(|| (PathBuf::from(mount), false, ctrls))
        }
        _ => None,
    }
}

/// The caller's own cgroup in the hierarchy with `controllers` (v1) or the unified one.
fn own_path(proc_cgroup: &str, v2: bool, controllers: &[String]) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let matches = if v2 { ctrls.is_empty() } else { ctrls.split(',').any(|c| controllers.iter().any(|x| x == c)) };
        matches.then(|| path.to_string())
    })
}

/// Where cgroup `cgroups_path` lives in each hierarchy, from the mount table and the caller's
/// own cgroups. A relative path is placed below the caller's own cgroup on v1 (the OCI spec
/// leaves relative paths to the runtime) and below the root on v2, whose "no processes in inner
/// cgroups" rule forbids delegating controllers below the cgroup the caller itself runs in.
fn plan(mountinfo: &str, proc_cgroup: &str, cgroups_path: &str) -> Result<Cgroup> {
    let rel = Path::new(cgroups_path.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(spec_err("linux.cgroupsPath", format!("{cgroups_path:?} must name a cgroup below the root without '..'")));
    }
    let mounts: Vec<_> = mountinfo.lines().filter_map(parse_mount).collect();
    // Unified mode when no v1 hierarchy has controllers: hybrid layouts also mount a cgroup2
    // (sometimes with a stray controller such as hugetlb), but keep the limits in v1.
    let unified = if mounts.iter().any(|(_, v2, _)| !v2) { None } else { mounts.iter().find(|(_, v2, _)| *v2) };
    let mut dirs = Vec::new();
    if let Some((mount, _, _)) = unified {
        let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default().split_whitespace().map(String::from).collect();
        dirs.push(Dir { mount: mount.clone(), path: mount.join(rel), controllers, v2: true });
    } else {
        let mut seen: Vec<Vec<String>> = Vec::new();
        for (mount, v2, ctrls) in mounts {
            if v2 || seen.contains(&ctrls) {
                continue;
            }
            let base = if cgroups_path.starts_with('/') {
                mount.clone()
            } else {
                let own = own_path(proc_cgroup, false, &ctrls).unwrap_or_else(|| "/".into());
                mount.join(own.trim_start_matches('/'))
            };
            seen.push(ctrls.clone());
            dirs.push(Dir { path: base.join(rel), mount, controllers: ctrls, v2: false });
        }
    }
    if dirs.is_empty() {
        return Err(spec_err("linux.cgroupsPath", "no cgroup hierarchy is mounted (looked for cgroup and cgroup2 in /proc/self/mountinfo)"));
    }
    Ok(Cgroup { dirs })
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(io_err(format!("writing {value:?} to {}", path.display())))
}

/// One device cgroup rule.
pub fn device_rule(allow: bool, typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow).set_typ(Some(typ)).set_major(major).set_minor(minor).set_access(Some(access.into()));
    d
}

/// The devices every container may use, whatever else its rules say: runc's built-in allow list
/// (runc 1.1 writes it to devices.list as: c *:* m, b *:* m, c 1:3, 1:5, 1:7, 1:8, 1:9, 5:0, 5:2,
/// 10:200, 136:* rwm) — creating any node, harmless when it cannot be opened, and /dev/null, zero,
/// full, random, urandom, tty, ptmx and the ptys — with one deliberate difference: no tun/tap
/// (10:200), which runc 1.2.0 dropped too as an accident of Docker's history; a container that
/// needs it is given it by its spec. Never /dev/console (5:1): that is the machine's console; a
/// container's terminal is its pty.
pub fn standard_device_allows() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut rules = vec![device_rule(true, C, None, None, "m"), device_rule(true, B, None, None, "m")];
    for (major, minor) in [(1, Some(3)), (1, Some(5)), (1, Some(7)), (1, Some(8)), (1, Some(9)), (5, Some(0)), (5, Some(2)), (136, None)] {
        rules.push(device_rule(true, C, Some(major), minor, "rwm"));
    }
    rules
}

fn device_rule_text(r: &LinuxDeviceCgroup) -> String {
    let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => "p",
    };
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "*".into());
    format!("{typ} {}:{} {}", num(r.major()), num(r.minor()), r.access().clone().unwrap_or_else(|| "rwm".into()))
}

/// OCI's `memory.swap` (the memory+swap total) as cgroup v2's `memory.swap.max` (swap alone):
/// swap - limit, as runc converts it; -1 ("max") stays unlimited, and an unlimited memory
/// with swap unset means swap unlimited too. None: nothing to write.
fn swap_v2(swap: i64, limit: Option<i64>) -> Result<Option<String>> {
    let f = "linux.resources.memory.swap";
    let limit = limit.unwrap_or(0);
    match (swap, limit) {
        (0, -1) | (-1, _) => Ok(Some("max".into())),
        (0, _) => Ok(None),
        (_, 0 | -1) => Err(spec_err(f, "a swap limit needs a memory limit (swap is the memory+swap total)")),
        (s, l) if l < 0 || s < l => Err(spec_err(f, format!("{s} is below memory.limit {l}: swap is the memory+swap total, so it must be at least the memory limit"))),
        (s, l) => Ok(Some((s - l).to_string())),
    }
}

/// One setting: (spec field, controller, v1 file, v2 file, value). The file is None where that
/// cgroup version has no equivalent.
type Setting = (&'static str, &'static str, Option<&'static str>, Option<&'static str>, String);

/// Every setting `r` asks for, in the order they must be written; fields podbox does not
/// implement are errors.
fn settings(r: &LinuxResources) -> Result<Vec<Setting>> {
    let mut out: Vec<Setting> = Vec::new();
    if let Some(m) = r.memory() {
        let f = "linux.resources.memory";
        if let Some(l) = m.limit() {
            // "max" is v2's "no limit"; `create` spells it -1 for v1.
            let v = if l < 0 { "max".to_string() } else { l.to_string() };
            out.push(("linux.resources.memory.limit", "memory", Some("memory.limit_in_bytes"), Some("memory.max"), v));
        }
        if let Some(s) = m.swap() {
            // OCI's swap is memory+swap (v1's memsw); v2 limits swap alone: two twins.
            out.push(("linux.resources.memory.swap", "memory", Some("memory.memsw.limit_in_bytes"), None, s.to_string()));
            if let Some(v2) = swap_v2(s, m.limit())? {
                out.push(("linux.resources.memory.swap", "memory", None, Some("memory.swap.max"), v2));
            }
        }
        if let Some(res) = m.reservation() {
            out.push(("linux.resources.memory.reservation", "memory", Some("memory.soft_limit_in_bytes"), Some("memory.low"), res.to_string()));
        }
        if let Some(s) = m.swappiness() {
            out.push(("linux.resources.memory.swappiness", "memory", Some("memory.swappiness"), None, s.to_string()));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(("linux.resources.memory.disableOOMKiller", "memory", Some("memory.oom_control"), None, "1".into()));
        }
        // Kernel memory limits are deprecated (v1 only, no-ops since Linux 5.16, gone in 6.x):
        // runc 1.1 ignores them with a warning, and specs written for it carry them.
        #[allow(deprecated)]
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            eprintln!("podbox: warning: {f}.kernel and kernelTCP are deprecated and ignored");
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 { p.limit().to_string() } else { "max".into() };
        out.push(("linux.resources.pids.limit", "pids", Some("pids.max"), Some("pids.max"), v));
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            // The v2 weight for v1 shares, as runc and the kernel documentation convert it.
            let weight = 1 + (s.clamp(2, 262_144) - 2) * 9999 / 262_142;
            out.push(("linux.resources.cpu.shares", "cpu", Some("cpu.shares"), None, s.to_string()));
            out.push(("linux.resources.cpu.shares", "cpu", None, Some("cpu.weight"), weight.to_string()));
        }
        if c.quota().is_some() || c.period().is_some() {
            let period = c.period().unwrap_or(100_000);
            let quota = c.quota().unwrap_or(-1);
            out.push(("linux.resources.cpu.period", "cpu", Some("cpu.cfs_period_us"), None, period.to_string()));
            out.push(("linux.resources.cpu.quota", "cpu", Some("cpu.cfs_quota_us"), None, quota.to_string()));
            let q = if quota < 0 { "max".to_string() } else { quota.to_string() };
            out.push(("linux.resources.cpu.quota", "cpu", None, Some("cpu.max"), format!("{q} {period}")));
        }
        if let Some(cpus) = c.cpus() {
            out.push(("linux.resources.cpu.cpus", "cpuset", Some("cpuset.cpus"), Some("cpuset.cpus"), cpus.clone()));
        }
        if let Some(mems) = c.mems() {
            out.push(("linux.resources.cpu.mems", "cpuset", Some("cpuset.mems"), Some("cpuset.mems"), mems.clone()));
        }
        if c.realtime_runtime().is_some() || c.realtime_period().is_some() || c.idle().is_some() || c.burst().is_some() {
            return Err(spec_err("linux.resources.cpu", "only shares, quota, period, cpus and mems are supported (not realtime, idle, burst)"));
        }
    }
    // The device cgroup governs block and character devices only: v1 refuses a rule of type
    // `p`, and a FIFO needs none (v2's filter skips it alike).
    for d in r.devices().iter().flatten().filter(|d| d.typ() != Some(LinuxDeviceType::P)) {
        let file = if d.allow() { "devices.allow" } else { "devices.deny" };
        out.push(("linux.resources.devices", "devices", Some(file), None, device_rule_text(d)));
    }
    let unsupported = [
        ("blockIO", r.block_io().is_some()),
        ("hugepageLimits", r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())),
        ("network", r.network().is_some()),
        ("rdma", r.rdma().as_ref().is_some_and(|h| !h.is_empty())),
        ("unified", r.unified().as_ref().is_some_and(|h| !h.is_empty())),
    ];
    if let Some((name, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(spec_err(&format!("linux.resources.{name}"), "not supported by podbox"));
    }
    Ok(out)
}

impl Cgroup {
    /// Where `cgroups_path` is on this machine (nothing is created).
    pub fn resolve(cgroups_path: &str) -> Result<Cgroup> {
        let mountinfo = cgroup_mount_table()?;
        let own = fs::read_to_string("/proc/self/cgroup").map_err(io_err("reading /proc/self/cgroup".into()))?;
        plan(&mountinfo, &own, cgroups_path)
    }

    /// Create the cgroup and apply `resources`. On error the caller removes it.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        let wanted = match resources {
            Some(r) => settings(r)?,
            None => vec![],
        };
        let devices = resources.and_then(|r| r.devices().as_deref()).unwrap_or_default();
        for (field, ctrl, v1, v2, _) in &wanted {
            // v2 has no devices controller: its device rules are an eBPF program (device_filter).
            let ok = self.dirs.iter().any(|d| if d.v2 { *ctrl == "devices" || d.controllers.iter().any(|c| c == ctrl) && v2.is_some() } else { d.controllers.iter().any(|c| c == ctrl) && v1.is_some() });
            // A setting with no file in this version (e.g. cpu.shares on v2) has its twin.
            let has_twin = wanted.iter().any(|(f, c, a, b, _)| f == field && c == ctrl && (a.is_some() != v1.is_some() || b.is_some() != v2.is_some()));
            if !ok && !has_twin {
                return Err(spec_err(field, format!("the {ctrl} cgroup controller is not available on this machine (not mounted, or not enabled in cgroup.controllers)")));
            }
        }
        for d in &self.dirs {
            if d.v2 {
                enable_controllers(d, &wanted)?;
            }
            create_dir_racing(&d.path)?;
            if !d.v2 && d.controllers.iter().any(|c| c == "cpuset") {
                init_cpuset(d)?;
            }
            for (_, ctrl, v1, v2, value) in &wanted {
                let file = if d.v2 { v2 } else { v1 };
                if let Some(file) = file.filter(|_| d.controllers.iter().any(|c| c == ctrl)) {
                    let value = if !d.v2 && value == "max" && !file.starts_with("pids") { "-1" } else { value.as_str() };
                    write(&d.path.join(file), value)?;
                }
            }
            if d.v2 && !devices.is_empty() {
                super::device_filter::attach(&d.path, devices)?;
            }
        }
        Ok(())
    }

    /// Remove the cgroup's directories if they are empty, and nothing else: for parents that
    /// several users share (e.g. `podbox`), where another pod may still have children.
    pub fn prune(&self) {
        for d in &self.dirs {
            let _ = fs::remove_dir(&d.path);
        }
    }

    /// The cgroup's directory in every hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }

    /// The `cgroup.procs` files a process writes "0" into to join the cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.join("cgroup.procs")).collect()
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let count = |text: String| text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
        self.dirs
            .iter()
            .filter(|d| d.controllers.iter().any(|c| c == "memory"))
            .map(|d| count(fs::read_to_string(d.path.join(if d.v2 { "memory.events" } else { "memory.oom_control" })).unwrap_or_default()))
            .sum()
    }

    /// Every process in the cgroup or below it, as the kernel lists them (PIDs in the
    /// caller's PID namespace). The cgroup is what finds a container's processes whatever the
    /// records say: a crashed CLI may never have written their PIDs down.
    ///
    /// Performance: only the first hierarchy is read (a pod with many containers has a dozen
    /// v1 hierarchies per container). That suffices: processes join `procs_files()` in order,
    /// so one that is in any of the cgroups is in the first; their children inherit all.
    pub fn procs(&self) -> Vec<i32> {
        procs_below(&self.paths()[..1.min(self.dirs.len())])
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
            let v2_kill: Vec<_> = self.dirs.iter().filter(|d| d.v2).map(|d| d.path.join("cgroup.kill")).filter(|p| p.exists()).collect();
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
fn procs_below(paths: &[PathBuf]) -> Vec<i32> {
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

/// The v1 controllers of the hierarchy that cgroup directory `dir` belongs to (empty for v2),
/// from the mount table: the hierarchy mounted at the longest prefix of `dir`.
pub fn controllers_of(dir: &Path) -> Result<Vec<String>> {
    let table = cgroup_mount_table()?;
    let best = table.lines().filter_map(parse_mount).filter(|(mount, _, _)| dir.starts_with(mount)).max_by_key(|(mount, _, _)| mount.components().count());
    Ok(best.map(|(_, _, ctrls)| ctrls).unwrap_or_default())
}

/// mkdir -p that survives another podbox pruning an empty shared parent at the same moment.
/// A v1 cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and a process cannot
/// join it so: give each level below the mount down to `d` its parent's (as runc does; setting
/// `cgroup.clone_children` instead would change the parent's own behaviour).
fn init_cpuset(d: &Dir) -> Result<()> {
    let rel = d.path.strip_prefix(&d.mount).unwrap_or(Path::new(""));
    let mut cur = d.mount.clone();
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

fn create_dir_racing(p: &Path) -> Result<()> {
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

/// v2: controllers must be enabled in `cgroup.subtree_control` of every ancestor before a
/// child's files exist.
fn enable_controllers(d: &Dir, wanted: &[Setting]) -> Result<()> {
    let mut need: Vec<&str> = wanted.iter().filter(|w| w.3.is_some()).map(|w| w.1).collect();
    need.sort();
    need.dedup();
    if need.is_empty() {
        return Ok(());
    }
    let rel = d.path.strip_prefix(&d.mount).unwrap_or(Path::new(""));
    let mut cur = d.mount.clone();
    for comp in rel.components() {
        create_dir_racing(&cur)?;
        let enabled = fs::read_to_string(cur.join("cgroup.subtree_control")).unwrap_or_default();
        for c in &need {
            if !enabled.split_whitespace().any(|e| e == *c) {
                write(&cur.join("cgroup.subtree_control"), &format!("+{c}"))?;
            }
        }
        cur.push(comp);
    }
    Ok(())
}

/// What a container's `/sys/fs/cgroup` shows of the calling process's own cgroups: one
/// (subdirectory name, directory of our cgroup) per mounted hierarchy, named like its mount
/// point ("memory", "cpu,cpuacct", "unified"), or a single ("", dir) when the machine is pure v2.
pub fn own_views() -> Result<Vec<View>> {
    let mountinfo = cgroup_mount_table()?;
    let own = fs::read_to_string("/proc/self/cgroup").map_err(io_err("reading /proc/self/cgroup".into()))?;
    Ok(views(&mountinfo, &own))
}

/// (subdirectory name, our cgroup's directory, hierarchy options for a fresh mount: its v1
/// controllers or `name=`, empty for v2).
pub type View = (String, PathBuf, String);

fn views(mountinfo: &str, proc_cgroup: &str) -> Vec<View> {
    let mut out = Vec::new();
    let mut any_v1 = false;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let (Some(mount), mut r) = (left.split(' ').nth(4), right.split(' ')) else { continue };
        let (fstype, opts) = (r.next().unwrap_or(""), r.nth(1).unwrap_or(""));
        // The hierarchy's line in /proc/self/cgroup: its controllers or name=, or "" for v2.
        let key = match fstype {
            "cgroup2" => String::new(),
            "cgroup" => {
                any_v1 = true;
                opts.split(',').filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name=") || *o == "cpuset").collect::<Vec<_>>().join(",")
            }
            _ => continue,
        };
        let Some(path) = proc_cgroup.lines().find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let mut a: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
            let mut b: Vec<&str> = key.split(',').filter(|c| !c.is_empty()).collect();
            a.sort();
            b.sort();
            (a == b).then(|| path.to_string())
        }) else { continue };
        let name = Path::new(mount).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.push((name, Path::new(mount).join(path.trim_start_matches('/')), key));
    }
    if !any_v1 {
        out.truncate(1);
        if let Some(v) = out.first_mut() {
            v.0 = String::new();
        }
    }
    out
}

/// The cgroup of `spec`, created with its resources; None when the spec has no cgroupsPath.
pub fn setup(spec: &Spec) -> Result<Option<Cgroup>> {
    let linux = spec.linux().as_ref();
    let resources = linux.and_then(|l| l.resources().as_ref());
    let Some(path) = linux.and_then(|l| l.cgroups_path().as_ref()) else {
        if resources.is_some() {
            return Err(spec_err("linux.resources", "limits need linux.cgroupsPath to say which cgroup to put them on"));
        }
        return Ok(None);
    };
    let cg = Cgroup::resolve(&path.to_string_lossy())?;
    if let Err(e) = cg.create(resources) {
        let _ = cg.remove();
        return Err(e);
    }
    Ok(Some(cg))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cgroup_table_found_without_mountinfo_matches_it() {
        // Both describe the same hierarchies (where /sys/fs/cgroup is the usual layout).
        let fast = super::cgroup_mount_table().unwrap();
        let full = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut a: Vec<_> = fast.lines().filter_map(super::parse_mount).collect();
        let mut b: Vec<_> = full.lines().filter_map(super::parse_mount).filter(|(m, _, _)| m.starts_with("/sys/fs/cgroup")).collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a, b);
    }

    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
";
    const OWN: &str = "4:memory:/session/x\n1:cpu:/\n9:name=systemd:/\n0::/\n";

    #[test]
    fn relative_paths_nest_below_our_own_v1_cgroups() {
        let cg = plan(HYBRID, OWN, "podbox/p1/c").unwrap();
        let paths: Vec<_> = cg.dirs.iter().map(|d| d.path.clone()).collect();
        assert_eq!(paths, vec![PathBuf::from("/sys/fs/cgroup/cpu/podbox/p1/c"), PathBuf::from("/sys/fs/cgroup/memory/session/x/podbox/p1/c"), PathBuf::from("/sys/fs/cgroup/cpuset/podbox/p1/c")]);
        let cg = plan(HYBRID, OWN, "/podbox/p1").unwrap();
        assert_eq!(cg.dirs[1].path, PathBuf::from("/sys/fs/cgroup/memory/podbox/p1"));
        assert!(plan(HYBRID, OWN, "../x").is_err());
        let v2 = "40 30 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let cg = plan(v2, "0::/user/session\n", "podbox/p1/c").unwrap();
        assert_eq!((cg.dirs.len(), cg.dirs[0].v2, cg.dirs[0].path.clone()), (1, true, PathBuf::from("/sys/fs/cgroup/podbox/p1/c")));
        assert!(plan("", OWN, "x").is_err());
    }

    #[test]
    fn container_views_of_own_cgroups() {
        let v = views(HYBRID, "4:memory:/session/x\n1:cpu:/\n9:name=systemd:/s\n0::/u\n3:cpuset:/\n");
        let names: Vec<_> = v.iter().map(|x| (x.0.as_str(), x.1.to_string_lossy().into_owned())).collect();
        assert!(v.iter().any(|x| x.2 == "name=systemd"));
        assert!(names.contains(&("memory", "/sys/fs/cgroup/memory/session/x".into())), "{names:?}");
        assert!(names.contains(&("systemd", "/sys/fs/cgroup/systemd/s".into())));
        assert!(names.contains(&("unified", "/sys/fs/cgroup/unified/u".into())));
        let v2 = views("40 30 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/a/b\n");
        assert_eq!(v2, vec![(String::new(), PathBuf::from("/sys/fs/cgroup/a/b"), String::new())]);
    }

    #[test]
    fn resources_become_cgroup_files() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(64i64 << 20).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
            .cpu(LinuxCpuBuilder::default().quota(50_000i64).period(100_000u64).build().unwrap())
            .devices(vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap()])
            .build()
            .unwrap();
        let s = settings(&r).unwrap();
        let v1: Vec<_> = s.iter().filter_map(|x| x.2.map(|f| (f, x.4.as_str()))).collect();
        assert!(v1.contains(&("memory.limit_in_bytes", "67108864")));
        assert!(v1.contains(&("pids.max", "100")));
        assert!(v1.contains(&("cpu.cfs_quota_us", "50000")));
        assert!(v1.contains(&("devices.deny", "a *:* rwm")));
        let v2: Vec<_> = s.iter().filter_map(|x| x.3.map(|f| (f, x.4.as_str()))).collect();
        assert!(v2.contains(&("cpu.max", "50000 100000")));
        let bad = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().idle(1i64).build().unwrap()).build().unwrap();
        assert!(matches!(settings(&bad), Err(ContainerError::Spec { field, .. }) if field == "linux.resources.cpu"));
    }

    /// A v2 cgroup in a temp dir (plain files stand in for the kernel's): OCI's memory+swap
    /// total becomes memory.swap.max = swap - memory; v1 gets the total in memsw.
    #[test]
    fn swap_is_memory_plus_swap_on_v1_and_swap_alone_on_v2() {
        let tmp = std::env::temp_dir().join(format!("podbox-swap-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let v2 = Dir { mount: tmp.join("v2"), path: tmp.join("v2/c"), controllers: vec!["memory".into()], v2: true };
        let v1 = Dir { mount: tmp.join("v1"), path: tmp.join("v1/c"), controllers: vec!["memory".into()], v2: false };
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
        let tmp = std::env::temp_dir().join(format!("podbox-cpuset-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("cpuset.cpus"), "0-1\n").unwrap();
        fs::write(tmp.join("cpuset.mems"), "0\n").unwrap();
        let cg = Cgroup { dirs: vec![Dir { mount: tmp.clone(), path: tmp.join("a/b"), controllers: vec!["cpuset".into()], v2: false }] };
        let r = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().cpus("1").mems("0").build().unwrap()).build().unwrap();
        cg.create(Some(&r)).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.join(f)).unwrap();
        assert_eq!((read("a/cpuset.cpus").as_str(), read("a/cpuset.mems").as_str()), ("0-1", "0"));
        assert_eq!((read("a/b/cpuset.cpus").as_str(), read("a/b/cpuset.mems").as_str()), ("1", "0"));
        fs::remove_dir_all(&tmp).unwrap();
    }
}
