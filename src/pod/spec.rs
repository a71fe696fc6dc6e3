//! A container of a pod → an OCI runtime spec. The pod's namespaces appear as `path`s to join
//! (as containerd's CRI plugin does), everything else is the container engines' usual defaults:
//! capability set, seccomp profile, masked and read-only paths, minimal /dev with its device
//! cgroup rules, read-only /sys, no_new_privs, and the container's cgroup with its limits.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Linux, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType, Process, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use super::PodError;
use super::model::{ContainerSpec, PodRecord, Resources};
use super::security;
use crate::container;

/// The cgroup of pod `pod_id` (relative: the container layer places it below podbox's own
/// cgroup), holding one child per container and one for the pause. Pods are spread over 256
/// middle levels by the first two hex digits of their ID (`podbox/3f/<id>`). Performance (issue
/// 19): making a v1 cpuset cgroup walks all its siblings (`cpuset_css_online`, as
/// `cgroup.clone_children` has it), and with every pod in one directory that walk grew with
/// the pods of the node: a few siblings per level now.
pub fn new_pod_cgroup(pod_id: &str) -> String {
    format!("{}/{pod_id}", pod_cgroup_bucket(pod_id))
}

/// The cgroup of `pod` as its record has it (see `new_pod_cgroup`).
pub fn pod_cgroup(pod: &PodRecord) -> String {
    pod.cgroup.clone().unwrap_or_else(|| legacy_pod_cgroup(&pod.id))
}

/// The middle level pod `pod_id`'s cgroup is in.
pub fn pod_cgroup_bucket(pod_id: &str) -> String {
    // IDs are podbox's own hex; anything else (never seen) goes to one level of its own.
    let bucket = pod_id.get(..2).filter(|b| b.bytes().all(|c| c.is_ascii_hexdigit())).unwrap_or("00");
    format!("{CGROUP_PARENT}/{bucket}")
}

/// Where podbox before the middle levels put pod `pod_id`'s cgroup: pods created then live on
/// there, and their removal must find them.
pub fn legacy_pod_cgroup(pod_id: &str) -> String {
    format!("{CGROUP_PARENT}/{pod_id}")
}

/// The cgroup below which every pod's is (shared by all podbox roots of the machine).
pub const CGROUP_PARENT: &str = "podbox";

pub fn container_cgroup(pod: &PodRecord, container: &str) -> String {
    format!("{}/{container}", pod_cgroup(pod))
}

/// The pause's cgroup: `_` cannot occur in a container name, so it never collides with one.
pub fn pause_cgroup(pod: &PodRecord) -> String {
    format!("{}/_pause", pod_cgroup(pod))
}

/// CFS period of podbox's CPU limits (the kernel's default, as Kubernetes uses it).
const CPU_PERIOD_US: u64 = 100_000;

fn resources(r: &Resources, devices: Vec<oci_spec::runtime::LinuxDeviceCgroup>) -> Result<LinuxResources, PodError> {
    let mut b = LinuxResourcesBuilder::default().devices(devices);
    if let Some(m) = r.memory_bytes {
        b = b.memory(LinuxMemoryBuilder::default().limit(m).build().map_err(build_err)?);
    }
    if let Some(p) = r.pids {
        b = b.pids(LinuxPidsBuilder::default().limit(p).build().map_err(build_err)?);
    }
    if r.cpu_millis.is_some() || r.cpu_request_millis.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(m) = r.cpu_millis {
            // At least 1ms per period: the kernel refuses smaller quotas.
            // (m is at most quantity::MAX_CPU_MILLIS: no overflow; checked all the same.)
            let quota = m.checked_mul(CPU_PERIOD_US).map(|q| q / 1000).and_then(|q| i64::try_from(q).ok())
                .ok_or_else(|| PodError::Invalid(format!("cpu limit of {m}m is too large")))?;
            cpu = cpu.quota(quota.max(1000)).period(CPU_PERIOD_US);
        }
        if let Some(m) = r.cpu_request_millis {
            // Kubernetes' MilliCPUToShares: 1024 shares per CPU, at least 2.
            cpu = cpu.shares((m.saturating_mul(1024) / 1000).clamp(2, 262_144));
        }
        b = b.cpu(cpu.build().map_err(build_err)?);
    }
    b.build().map_err(build_err)
}

pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn mount(dest: &str, typ: &str, source: &str, opts: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("static mount is valid")
}

fn build_err(e: oci_spec::OciSpecError) -> PodError {
    PodError::Invalid(format!("building the OCI spec: {e}"))
}

/// The OCI spec of container `c` in `pod`, whose state directory is `pod_dir`.
pub fn container_spec(pod: &PodRecord, pod_dir: &Path, c: &ContainerSpec, rootfs: &Path) -> Result<Spec, PodError> {
    let sec = &c.security;
    let caps = security::capabilities(&sec.cap_add, &sec.cap_drop, sec.privileged)?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(rootfs).readonly(sec.read_only).build().map_err(build_err)?)
        .hostname(pod.hostname.clone())
        .process(process_spec(pod, c, &caps)?)
        .mounts(container_mounts(pod, pod_dir, c)?)
        .linux(linux_spec(pod, c, &caps)?)
        .build()
        .map_err(build_err)
}

/// What the container runs, as whom, with which capabilities and limits.
fn process_spec(pod: &PodRecord, c: &ContainerSpec, caps: &Capabilities) -> Result<Process, PodError> {
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={}", pod.hostname)];
    container::env::merge(&mut env, container::env::entries(&c.env));
    let (uid, gid) = c.user.unwrap_or((0, 0));
    let sec = &c.security;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps.clone())
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(build_err)?;
    // Open files: as high as container engines go, but never above what this process may set.
    let nofile = hard_nofile().min(1_048_576);
    ProcessBuilder::default()
        .args(c.args.clone())
        .env(env)
        .cwd(c.working_dir.clone().unwrap_or_else(|| "/".into()))
        .user(UserBuilder::default().uid(uid).gid(gid).additional_gids(c.group_add.clone()).build().map_err(build_err)?)
        .capabilities(capabilities)
        // Kept for privileged containers too: it only stops gaining privileges through exec.
        // Only a manifest's explicit allowPrivilegeEscalation: true turns it off.
        .no_new_privileges(!sec.allow_privilege_escalation)
        .rlimits(vec![PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).soft(nofile).hard(nofile).build().map_err(build_err)?])
        .build()
        .map_err(build_err)
}

/// The container engines' default mounts, the pod's /etc files and /dev/shm, then the pod's volumes.
fn container_mounts(pod: &PodRecord, pod_dir: &Path, c: &ContainerSpec) -> Result<Vec<Mount>, PodError> {
    let etc = pod_dir.join("etc");
    let bind = |dest: &str, src: &Path, extra: &[&str]| {
        let mut o = vec!["rbind", "nosuid", "nodev", "noexec"];
        o.extend_from_slice(extra);
        mount(dest, "bind", &src.to_string_lossy(), &o)
    };
    // In the node's IPC namespace, the node's POSIX shared memory too (as containerd does).
    let shm = if pod.node_namespaces.contains("ipc") { PathBuf::from("/dev/shm") } else { pod_dir.join("shm") };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        bind("/dev/shm", &shm, &[]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", if c.security.privileged { &["nosuid", "noexec", "nodev"] } else { &["nosuid", "noexec", "nodev", "ro"] }),
        bind("/etc/hostname", &etc.join("hostname"), &["ro"]),
        bind("/etc/hosts", &etc.join("hosts"), &[]),
        bind("/etc/resolv.conf", &etc.join("resolv.conf"), &[]),
    ];
    // The pod's volumes, after the defaults so that one may be mounted below /dev or /etc.
    let cdir = pod_dir.join("containers").join(&c.name);
    for (dest, src, opts) in super::volumes::spec_mounts(pod_dir, &pod.volumes, &cdir, &c.mounts)? {
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        mounts.push(mount(&dest, "bind", &src.to_string_lossy(), &opts));
    }
    Ok(mounts)
}

/// The namespaces of a container of `pod`: the pod's to join by path, fresh mount and cgroup ones.
fn namespaces(pod: &PodRecord) -> Result<Vec<LinuxNamespace>, PodError> {
    let ns = |t: LinuxNamespaceType, key: &str| -> Result<_, PodError> {
        let mut b = LinuxNamespaceBuilder::default().typ(t);
        if let Some(p) = pod.namespaces.get(key) {
            b = b.path(p.clone());
        }
        b.build().map_err(build_err)
    };
    let mut namespaces = vec![ns(LinuxNamespaceType::Mount, "-")?, ns(LinuxNamespaceType::Cgroup, "-")?];
    // A namespace shared with the node is left out: the container stays in its runtime's, the node's.
    for (t, key) in [(LinuxNamespaceType::Network, "net"), (LinuxNamespaceType::Ipc, "ipc"), (LinuxNamespaceType::Uts, "uts"), (LinuxNamespaceType::Pid, "pid")] {
        if !pod.node_namespaces.contains(key) {
            namespaces.push(ns(t, if key == "pid" && !pod.share_pid { "-" } else { key })?);
        }
    }
    if pod.namespaces.contains_key("user") {
        namespaces.push(ns(LinuxNamespaceType::User, "user")?);
    }
    Ok(namespaces)
}

/// The Linux section: namespaces, cgroup and resources, sysctls, propagation, and (unless
/// privileged) masked/read-only paths and the seccomp profile.
fn linux_spec(pod: &PodRecord, c: &ContainerSpec, caps: &Capabilities) -> Result<Linux, PodError> {
    let sec = &c.security;
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(pod)?)
        .cgroups_path(container_cgroup(pod, &c.name))
        .resources(resources(&c.resources, security::device_rules(sec.privileged))?);
    if !sec.sysctls.is_empty() {
        linux = linux.sysctl(sec.sysctls.iter().cloned().collect::<std::collections::HashMap<_, _>>());
    }
    if c.mounts.iter().any(|m| m.bidirectional) {
        // A bidirectional mount stays a peer of the node's: the container's root is not made a
        // slave of the node's (see container::rootfs), as runc does for containerd.
        linux = linux.rootfs_propagation("rshared");
    }
    if !sec.privileged {
        let masked = sec.masked_paths.clone().unwrap_or_else(|| strs(MASKED_PATHS));
        let readonly = sec.readonly_paths.clone().unwrap_or_else(|| strs(READONLY_PATHS));
        linux = linux.masked_paths(masked).readonly_paths(readonly);
        if let Some(profile) = &sec.seccomp_profile {
            linux = linux.seccomp(profile.clone());
        } else if !sec.seccomp_unconfined {
            linux = linux.seccomp(security::default_seccomp(caps));
        }
    }
    linux.build().map_err(build_err)
}

fn hard_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    r.rlim_max
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn pod(share_pid: bool) -> PodRecord {
        let mut namespaces = BTreeMap::new();
        for n in ["net", "ipc", "uts", "pid"] {
            namespaces.insert(n.to_string(), PathBuf::from(format!("/r/pods/x/ns/{n}")));
        }
        PodRecord {
            id: "x".into(),
            name: "p".into(),
            hostname: "h".into(),
            phase: super::super::model::PodPhase::Ready,
            created_at: String::new(),
            share_pid,
            network: false,
            ports: vec![],
            namespaces,
            node_namespaces: Default::default(),
            attachment: None,
            pause: None,
            declared_ports: BTreeMap::new(),
            labels: BTreeMap::new(),
            ignored_fields: vec![],
            volumes: vec![],
            fs_group: None,
            grace_seconds: None, user_range: None, cgroup: None,
        }
    }

    #[test]
    fn pods_are_spread_over_middle_levels_and_old_records_keep_their_cgroup() {
        let id = "3f0a9c1b2d3e4f5a6b7c8d9e0f1a2b3c";
        let mut p = pod(false);
        p.id = id.into();
        // A record from before the middle levels.
        assert_eq!(container_cgroup(&p, "web"), format!("podbox/{id}/web"));
        p.cgroup = Some(new_pod_cgroup(id));
        assert_eq!(container_cgroup(&p, "web"), format!("podbox/3f/{id}/web"));
        assert_eq!(pause_cgroup(&p), format!("podbox/3f/{id}/_pause"));
        assert_eq!(pod_cgroup_bucket(id), "podbox/3f");
        assert_eq!(pod_cgroup_bucket("é"), "podbox/00", "never a panic on an odd id");
    }

    #[test]
    fn pod_namespaces_are_joined_by_path_and_the_rest_is_new() {
        let c = ContainerSpec { name: "c".into(), args: vec!["sh".into()], env: vec![("PATH".into(), "/bin".into())], ..Default::default() };
        for share in [false, true] {
            let spec = container_spec(&pod(share), Path::new("/r/pods/x"), &c, Path::new("/rootfs")).unwrap();
            let nss = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
            let path_of = |t| nss.iter().find(|n| n.typ() == t).unwrap().path().clone();
            assert_eq!(path_of(LinuxNamespaceType::Network), Some(PathBuf::from("/r/pods/x/ns/net")));
            assert_eq!(path_of(LinuxNamespaceType::Ipc), Some(PathBuf::from("/r/pods/x/ns/ipc")));
            assert_eq!(path_of(LinuxNamespaceType::Uts), Some(PathBuf::from("/r/pods/x/ns/uts")));
            assert_eq!(path_of(LinuxNamespaceType::Mount), None);
            assert_eq!(path_of(LinuxNamespaceType::Pid).is_some(), share);
            let p = spec.process().as_ref().unwrap();
            assert_eq!(p.env().as_ref().unwrap().iter().filter(|e| e.starts_with("PATH=")).collect::<Vec<_>>(), vec!["PATH=/bin"]);
            assert_eq!(p.capabilities().as_ref().unwrap().bounding().as_ref().unwrap().len(), 14);
            assert_eq!(p.no_new_privileges(), Some(true));
        }
    }

    #[test]
    fn namespaces_shared_with_the_node_are_neither_joined_nor_new() {
        let c = ContainerSpec { name: "c".into(), args: vec!["sh".into()], ..Default::default() };
        let mut rec = pod(true);
        rec.node_namespaces = ["net", "uts", "pid"].into_iter().map(String::from).collect();
        let spec = container_spec(&rec, Path::new("/r/pods/x"), &c, Path::new("/rootfs")).unwrap();
        let nss = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let has = |t| nss.iter().any(|n| n.typ() == t);
        assert!(!has(LinuxNamespaceType::Network) && !has(LinuxNamespaceType::Uts) && !has(LinuxNamespaceType::Pid), "{nss:?}");
        assert!(has(LinuxNamespaceType::Ipc) && has(LinuxNamespaceType::Mount), "{nss:?}");
        let shm_of = |rec: &PodRecord| {
            let spec = container_spec(rec, Path::new("/r/pods/x"), &c, Path::new("/rootfs")).unwrap();
            spec.mounts().as_ref().unwrap().iter().find(|m| m.destination() == Path::new("/dev/shm")).unwrap().source().clone().unwrap()
        };
        assert_eq!(shm_of(&rec), PathBuf::from("/r/pods/x/shm"));
        rec.node_namespaces.insert("ipc".into());
        assert_eq!(shm_of(&rec), PathBuf::from("/dev/shm"));
        let nss = container_spec(&rec, Path::new("/r/pods/x"), &c, Path::new("/rootfs")).unwrap().linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!nss.iter().any(|n| n.typ() == LinuxNamespaceType::Ipc), "{nss:?}");
    }
}
