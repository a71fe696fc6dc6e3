//! Usage of CRI's containers and sandboxes, read from their cgroups (ContainerStats,
//! PodSandboxStats and their lists).

use super::CriError;
use super::api;
use super::views::{Seen, containers_of, pod_labels, pod_metadata, sandbox_config};
use crate::pod::Ctx;
use crate::pod::model::PodRecord;

/// CPU time (ns) and memory working set (bytes) of a cgroup, from whichever of its hierarchies
/// has them (v1 cpuacct/memory or v2); the working set is usage minus inactive file pages, as
/// the kubelet computes it.
pub(super) fn cgroup_usage(cgroup: &str) -> (Option<u64>, Option<u64>) {
    let Ok(cg) = crate::container::cgroups::Cgroup::resolve(cgroup) else { return (None, None) };
    let field = |text: &str, key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok()));
    let (mut cpu, mut mem) = (None, None);
    for dir in cg.paths() {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        if cpu.is_none() {
            cpu = read("cpuacct.usage").and_then(|s| s.trim().parse().ok()).or_else(|| read("cpu.stat").and_then(|s| field(&s, "usage_usec ")).map(|us| us * 1000));
        }
        if mem.is_none()
            && let Some(usage) = read("memory.current").or_else(|| read("memory.usage_in_bytes")).and_then(|s| s.trim().parse::<u64>().ok())
        {
            let inactive = read("memory.stat").and_then(|s| field(&s, "total_inactive_file ").or_else(|| field(&s, "inactive_file "))).unwrap_or(0);
            mem = Some(usage.saturating_sub(inactive));
        }
    }
    (cpu, mem)
}

pub(super) fn container_stats(s: &Seen) -> api::ContainerStats {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    let cgroup = s.status.record.cgroup.clone().unwrap_or_else(|| crate::pod::spec::container_cgroup(&s.pod, &s.status.record.name));
    let (cpu, mem) = cgroup_usage(&cgroup);
    let v = |x: Option<u64>| x.map(|value| api::UInt64Value { value });
    api::ContainerStats {
        attributes: Some(api::ContainerAttributes { id: s.id(), metadata: Some(s.metadata()), labels: s.labels(), annotations: s.annotations() }),
        cpu: Some(api::CpuUsage { timestamp: now, usage_core_nano_seconds: v(cpu), usage_nano_cores: None }),
        memory: Some(api::MemoryUsage { timestamp: now, working_set_bytes: v(mem), ..Default::default() }),
        // The writable layer is a tmpfs inside the container's own mount namespace.
        writable_layer: None,
        swap: None,
    }
}

/// A sandbox's usage: its whole cgroup (pause and containers), its process count, and each
/// running container's own stats.
pub(super) fn pod_stats(ctx: &Ctx, pod: &PodRecord) -> Result<api::PodSandboxStats, CriError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    let cgroup = crate::pod::spec::pod_cgroup(pod);
    let (cpu, mem) = cgroup_usage(&cgroup);
    let processes = crate::container::cgroups::Cgroup::resolve(&cgroup).map(|c| c.procs().len() as u64).ok();
    let cfg = sandbox_config(ctx, pod);
    let v = |x: Option<u64>| x.map(|value| api::UInt64Value { value });
    let containers = containers_of(ctx, pod)?.iter().filter(|s| s.state() == api::ContainerState::ContainerRunning).map(container_stats).collect();
    Ok(api::PodSandboxStats {
        attributes: Some(api::PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: Some(pod_metadata(pod, cfg.as_ref())),
            labels: pod_labels(pod, cfg.as_ref()),
            annotations: cfg.as_ref().map(|c| c.annotations.clone()).unwrap_or_default(),
        }),
        linux: Some(api::LinuxPodSandboxStats {
            cpu: Some(api::CpuUsage { timestamp: now, usage_core_nano_seconds: v(cpu), usage_nano_cores: None }),
            memory: Some(api::MemoryUsage { timestamp: now, working_set_bytes: v(mem), ..Default::default() }),
            network: None,
            process: Some(api::ProcessUsage { timestamp: now, process_count: v(processes) }),
            containers,
        }),
        windows: None,
    })
}
