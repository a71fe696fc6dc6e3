//! A container of a pod → an OCI runtime spec. The pod's namespaces appear as `path`s to join
//! (as containerd's CRI plugin does), everything else is the container engines' usual defaults:
//! capability set, masked and read-only paths, minimal /dev, read-only /sys, no_new_privs.

use std::path::Path;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use super::PodError;
use super::model::{ContainerSpec, PodRecord};

/// The capability set container engines grant by default.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

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
    let mut env = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={}", pod.hostname)];
    for (k, v) in &c.env {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    let (uid, gid) = c.user.unwrap_or((0, 0));
    let caps: oci_spec::runtime::Capabilities = DEFAULT_CAPS.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .map_err(build_err)?;
    // Open files: as high as container engines go, but never above what this process may set.
    let nofile = hard_nofile().min(1_048_576);
    let process = ProcessBuilder::default()
        .args(c.args.clone())
        .env(env)
        .cwd(c.working_dir.clone().unwrap_or_else(|| "/".into()))
        .user(UserBuilder::default().uid(uid).gid(gid).build().map_err(build_err)?)
        .capabilities(capabilities)
        .no_new_privileges(true)
        .rlimits(vec![PosixRlimitBuilder::default().typ(PosixRlimitType::RlimitNofile).soft(nofile).hard(nofile).build().map_err(build_err)?])
        .build()
        .map_err(build_err)?;

    let etc = pod_dir.join("etc");
    let bind = |dest: &str, src: &Path, extra: &[&str]| {
        let mut o = vec!["rbind", "nosuid", "nodev", "noexec"];
        o.extend_from_slice(extra);
        mount(dest, "bind", &src.to_string_lossy(), &o)
    };
    let mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount("/dev/pts", "devpts", "devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        bind("/dev/shm", &pod_dir.join("shm"), &[]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        bind("/etc/hostname", &etc.join("hostname"), &["ro"]),
        bind("/etc/hosts", &etc.join("hosts"), &[]),
        bind("/etc/resolv.conf", &etc.join("resolv.conf"), &[]),
    ];

    let ns = |t: LinuxNamespaceType, key: &str| -> Result<_, PodError> {
        let mut b = LinuxNamespaceBuilder::default().typ(t);
        if let Some(p) = pod.namespaces.get(key) {
            b = b.path(p.clone());
        }
        b.build().map_err(build_err)
    };
    let mut namespaces = vec![ns(LinuxNamespaceType::Mount, "-")?, ns(LinuxNamespaceType::Network, "net")?, ns(LinuxNamespaceType::Ipc, "ipc")?, ns(LinuxNamespaceType::Uts, "uts")?, ns(LinuxNamespaceType::Cgroup, "-")?];
    namespaces.push(if pod.share_pid { ns(LinuxNamespaceType::Pid, "pid")? } else { ns(LinuxNamespaceType::Pid, "-")? });

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(MASKED_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READONLY_PATHS.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(build_err)?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(rootfs).readonly(false).build().map_err(build_err)?)
        .hostname(pod.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(build_err)
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
            attachment: None,
            pause: None,
            declared_ports: BTreeMap::new(),
        }
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
}
