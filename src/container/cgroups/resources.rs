//! The spec's `linux.resources` as cgroup file writes: `settings` lists what the spec asks for
//! with each setting's v1 and v2 file; `v1_writes` and `v2_writes` turn that into the (file,
//! value) pairs one hierarchy gets. Plain functions: nothing here touches the file system.

use oci_spec::runtime::{LinuxDeviceType, LinuxResources};

use super::devices::device_rule_text;
use super::spec_err;
use crate::container::Result;

/// One setting the spec asks for. The file is None where that cgroup version has no
/// equivalent; a setting is then usually listed twice, once per version (its "twins").
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The spec field, for errors.
    pub field: &'static str,
    pub controller: &'static str,
    pub v1: Option<&'static str>,
    pub v2: Option<&'static str>,
    /// The value as v2 spells it ("max" for no limit); `v1_writes` converts.
    pub value: String,
}

fn setting(field: &'static str, controller: &'static str, v1: Option<&'static str>, v2: Option<&'static str>, value: String) -> Setting {
    Setting { field, controller, v1, v2, value }
}

/// OCI's `memory.swap` (the memory+swap total) as cgroup v2's `memory.swap.max` (swap alone):
/// swap - limit, as runc converts it; -1 ("max") stays unlimited, and an unlimited memory
/// with swap unset means swap unlimited too. None: nothing to write.
pub fn swap_v2(swap: i64, limit: Option<i64>) -> Result<Option<String>> {
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

/// The v2 `cpu.weight` for v1 `cpu.shares`, as runc and the kernel documentation convert it:
/// [2, 262144] maps linearly onto [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// v2's `cpu.max` ("$quota $period", quota "max" for none) from the spec's quota and period.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> String {
    let period = period.unwrap_or(100_000);
    match quota {
        Some(q) if q >= 0 => format!("{q} {period}"),
        _ => format!("max {period}"),
    }
}

/// Every setting `r` asks for, in the order they must be written; fields podbox does not
/// implement are errors.
pub fn settings(r: &LinuxResources) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    memory_settings(r, &mut out)?;
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 { p.limit().to_string() } else { "max".into() };
        out.push(setting("linux.resources.pids.limit", "pids", Some("pids.max"), Some("pids.max"), v));
    }
    cpu_settings(r, &mut out)?;
    // The device cgroup governs block and character devices only: v1 refuses a rule of type
    // `p`, and a FIFO needs none (v2's filter skips it alike).
    for d in r.devices().iter().flatten().filter(|d| d.typ() != Some(LinuxDeviceType::P)) {
        let file = if d.allow() { "devices.allow" } else { "devices.deny" };
        out.push(setting("linux.resources.devices", "devices", Some(file), None, device_rule_text(d)));
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

fn memory_settings(r: &LinuxResources, out: &mut Vec<Setting>) -> Result<()> {
    let Some(m) = r.memory() else { return Ok(()) };
    if let Some(l) = m.limit() {
        // "max" is v2's "no limit"; `v1_writes` spells it -1.
        let v = if l < 0 { "max".to_string() } else { l.to_string() };
        out.push(setting("linux.resources.memory.limit", "memory", Some("memory.limit_in_bytes"), Some("memory.max"), v));
    }
    if let Some(s) = m.swap() {
        // OCI's swap is memory+swap (v1's memsw); v2 limits swap alone: two twins.
        out.push(setting("linux.resources.memory.swap", "memory", Some("memory.memsw.limit_in_bytes"), None, s.to_string()));
        if let Some(v2) = swap_v2(s, m.limit())? {
            out.push(setting("linux.resources.memory.swap", "memory", None, Some("memory.swap.max"), v2));
        }
    }
    if let Some(res) = m.reservation() {
        out.push(setting("linux.resources.memory.reservation", "memory", Some("memory.soft_limit_in_bytes"), Some("memory.low"), res.to_string()));
    }
    if let Some(s) = m.swappiness() {
        out.push(setting("linux.resources.memory.swappiness", "memory", Some("memory.swappiness"), None, s.to_string()));
    }
    if m.disable_oom_killer() == Some(true) {
        out.push(setting("linux.resources.memory.disableOOMKiller", "memory", Some("memory.oom_control"), None, "1".into()));
    }
    // Kernel memory limits are deprecated (v1 only, no-ops since Linux 5.16, gone in 6.x):
    // runc 1.1 ignores them with a warning, and specs written for it carry them.
    #[allow(deprecated)]
    if m.kernel().is_some() || m.kernel_tcp().is_some() {
        eprintln!("podbox: warning: linux.resources.memory.kernel and kernelTCP are deprecated and ignored");
    }
    Ok(())
}

fn cpu_settings(r: &LinuxResources, out: &mut Vec<Setting>) -> Result<()> {
    let Some(c) = r.cpu() else { return Ok(()) };
    if let Some(s) = c.shares() {
        out.push(setting("linux.resources.cpu.shares", "cpu", Some("cpu.shares"), None, s.to_string()));
        out.push(setting("linux.resources.cpu.shares", "cpu", None, Some("cpu.weight"), shares_to_weight(s).to_string()));
    }
    if c.quota().is_some() || c.period().is_some() {
        out.push(setting("linux.resources.cpu.period", "cpu", Some("cpu.cfs_period_us"), None, c.period().unwrap_or(100_000).to_string()));
        out.push(setting("linux.resources.cpu.quota", "cpu", Some("cpu.cfs_quota_us"), None, c.quota().unwrap_or(-1).to_string()));
        out.push(setting("linux.resources.cpu.quota", "cpu", None, Some("cpu.max"), cpu_max(c.quota(), c.period())));
    }
    if let Some(cpus) = c.cpus() {
        out.push(setting("linux.resources.cpu.cpus", "cpuset", Some("cpuset.cpus"), Some("cpuset.cpus"), cpus.clone()));
    }
    if let Some(mems) = c.mems() {
        out.push(setting("linux.resources.cpu.mems", "cpuset", Some("cpuset.mems"), Some("cpuset.mems"), mems.clone()));
    }
    if c.realtime_runtime().is_some() || c.realtime_period().is_some() || c.idle().is_some() || c.burst().is_some() {
        return Err(spec_err("linux.resources.cpu", "only shares, quota, period, cpus and mems are supported (not realtime, idle, burst)"));
    }
    Ok(())
}

/// The (file, value) writes of a v1 hierarchy with `controllers`, in order. v1 spells "no
/// limit" -1, except pids.max, which takes "max" on both versions.
pub fn v1_writes(wanted: &[Setting], controllers: &[String]) -> Vec<(&'static str, String)> {
    wanted
        .iter()
        .filter(|s| controllers.iter().any(|c| c == s.controller))
        .filter_map(|s| {
            let file = s.v1?;
            let value = if s.value == "max" && !file.starts_with("pids") { "-1".to_string() } else { s.value.clone() };
            Some((file, value))
        })
        .collect()
}

/// The (file, value) writes of a v2 cgroup whose parent enables `controllers`, in order.
pub fn v2_writes(wanted: &[Setting], controllers: &[String]) -> Vec<(&'static str, String)> {
    wanted.iter().filter(|s| controllers.iter().any(|c| c == s.controller)).filter_map(|s| Some((s.v2?, s.value.clone()))).collect()
}

/// The controllers a v2 cgroup needs enabled in its ancestors' `cgroup.subtree_control`.
pub fn v2_controllers_needed(wanted: &[Setting]) -> Vec<&'static str> {
    let mut need: Vec<&str> = wanted.iter().filter(|w| w.v2.is_some()).map(|w| w.controller).collect();
    need.sort_unstable();
    need.dedup();
    need
}

/// Whether setting `s` can be written on some hierarchy whose version and controllers
/// `available` (v2?, controllers) lists, or has a twin for the other version. v2 has no
/// devices controller: its device rules are an eBPF program (device_filter).
pub fn applicable(s: &Setting, wanted: &[Setting], available: &[(bool, &[String])]) -> bool {
    let has = |ctrls: &[String]| ctrls.iter().any(|c| c == s.controller);
    let ok = available.iter().any(|(v2, ctrls)| if *v2 { s.controller == "devices" || has(ctrls) && s.v2.is_some() } else { has(ctrls) && s.v1.is_some() });
    // A setting with no file in this version (e.g. cpu.shares on v2) has its twin.
    let has_twin = wanted.iter().any(|t| t.field == s.field && t.controller == s.controller && (t.v1.is_some() != s.v1.is_some() || t.v2.is_some() != s.v2.is_some()));
    ok || has_twin
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerError;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    fn ctrls(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
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
        let v1 = v1_writes(&s, &ctrls(&["memory", "pids", "cpu", "devices"]));
        let pairs: Vec<_> = v1.iter().map(|(f, v)| (*f, v.as_str())).collect();
        assert_eq!(pairs, vec![("memory.limit_in_bytes", "67108864"), ("pids.max", "100"), ("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "50000"), ("devices.deny", "a *:* rwm")]);
        let v2 = v2_writes(&s, &ctrls(&["memory", "pids", "cpu"]));
        let pairs: Vec<_> = v2.iter().map(|(f, v)| (*f, v.as_str())).collect();
        assert_eq!(pairs, vec![("memory.max", "67108864"), ("pids.max", "100"), ("cpu.max", "50000 100000")]);
        assert_eq!(v2_controllers_needed(&s), vec!["cpu", "memory", "pids"]);
        // A hierarchy without the controller gets none of its files.
        assert!(v1_writes(&s, &ctrls(&["freezer"])).is_empty());
        let bad = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().idle(1i64).build().unwrap()).build().unwrap();
        assert!(matches!(settings(&bad), Err(ContainerError::Spec { field, .. }) if field == "linux.resources.cpu"));
    }

    #[test]
    fn no_limit_is_max_on_v2_and_minus_one_on_v1_except_pids() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        let s = settings(&r).unwrap();
        assert_eq!(v1_writes(&s, &ctrls(&["memory", "pids"])), vec![("memory.limit_in_bytes", "-1".to_string()), ("pids.max", "max".to_string())]);
        assert_eq!(v2_writes(&s, &ctrls(&["memory", "pids"])), vec![("memory.max", "max".to_string()), ("pids.max", "max".to_string())]);
    }

    #[test]
    fn swap_is_the_total_on_v1_and_swap_alone_on_v2() {
        let gib = 1i64 << 30;
        assert_eq!(swap_v2(3 * gib, Some(gib)).unwrap(), Some((2 * gib).to_string()));
        assert_eq!(swap_v2(gib, Some(gib)).unwrap(), Some("0".into()), "swap equal to memory: no swap at all");
        assert_eq!(swap_v2(-1, Some(gib)).unwrap(), Some("max".into()));
        assert_eq!(swap_v2(0, Some(-1)).unwrap(), Some("max".into()));
        assert_eq!(swap_v2(0, Some(gib)).unwrap(), None);
        assert!(swap_v2(gib, Some(2 * gib)).is_err(), "the total cannot be below the memory limit");
        assert!(swap_v2(gib, None).is_err(), "a total needs a memory limit to subtract");
        let r = LinuxResourcesBuilder::default().memory(LinuxMemoryBuilder::default().limit(gib).swap(3 * gib).build().unwrap()).build().unwrap();
        let s = settings(&r).unwrap();
        let mem = ctrls(&["memory"]);
        assert!(v1_writes(&s, &mem).contains(&("memory.memsw.limit_in_bytes", (3 * gib).to_string())));
        assert!(v2_writes(&s, &mem).contains(&("memory.swap.max", (2 * gib).to_string())));
    }

    #[test]
    fn cpu_shares_become_a_weight_and_quota_with_period_cpu_max() {
        assert_eq!((shares_to_weight(2), shares_to_weight(1024), shares_to_weight(262_144)), (1, 39, 10_000));
        assert_eq!((shares_to_weight(0), shares_to_weight(1 << 20)), (1, 10_000), "out-of-range shares are clamped");
        assert_eq!(cpu_max(Some(50_000), Some(100_000)), "50000 100000");
        assert_eq!(cpu_max(None, Some(20_000)), "max 20000");
        assert_eq!(cpu_max(Some(-1), None), "max 100000");
        let r = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().shares(512u64).period(50_000u64).cpus("0-1").mems("0").build().unwrap()).build().unwrap();
        let s = settings(&r).unwrap();
        let v2 = v2_writes(&s, &ctrls(&["cpu", "cpuset"]));
        assert_eq!(v2, vec![("cpu.weight", "20".to_string()), ("cpu.max", "max 50000".to_string()), ("cpuset.cpus", "0-1".to_string()), ("cpuset.mems", "0".to_string())]);
        let v1 = v1_writes(&s, &ctrls(&["cpu", "cpuacct"]));
        assert_eq!(v1, vec![("cpu.shares", "512".to_string()), ("cpu.cfs_period_us", "50000".to_string()), ("cpu.cfs_quota_us", "-1".to_string())]);
    }

    #[test]
    fn a_setting_without_its_controller_is_refused_unless_a_twin_applies() {
        let r = LinuxResourcesBuilder::default().cpu(LinuxCpuBuilder::default().shares(512u64).build().unwrap()).build().unwrap();
        let s = settings(&r).unwrap();
        let cpu = ctrls(&["cpu"]);
        // On v2, cpu.shares has no file but its twin cpu.weight does.
        assert!(s.iter().all(|x| applicable(x, &s, &[(true, &cpu)])));
        let none: Vec<String> = vec![];
        assert!(!applicable(&s[1], &s[1..], &[(true, &none)]), "no cpu controller on v2");
    }
}
