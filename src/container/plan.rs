//! The init's plan: everything the forked init does that the spec decides, resolved in the
//! PARENT before anything is forked — namespaces, hostname, sysctls, rlimits (as resource
//! numbers), user, capability sets (parsed), no_new_privs, the compiled seccomp program, argv,
//! env and cwd. A spec error surfaces here, to the caller, instead of in a half-built container;
//! the init (`init.rs`) then only executes the plan through the `Kernel` seam.

use std::path::{Path, PathBuf};

use caps::CapsHashSet;
use oci_spec::runtime::{Capabilities, PosixRlimit, Process, Spec};
use seccompiler::BpfProgram;

use super::mounts::{self, MountOp};
use super::rootfs::{self, DeviceNode};
use super::{ContainerError, Result, namespaces};

/// What the container's init does, in the order `init::execute` does it.
#[derive(Debug, Clone)]
pub struct InitPlan {
    pub namespaces: namespaces::Plan,
    /// Set only with a UTS namespace of the container's own (else the host's would change).
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub oom_score_adj: Option<i32>,
    /// (name as in the spec, value), already checked to be namespaced (`init::check_sysctls`).
    pub sysctls: Vec<(String, String)>,
    pub rootfs: RootfsPlan,
    pub process: ProcessPlan,
}

/// The file system view, made only with a mount namespace of the container's own.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    pub mounts: Vec<MountOp>,
    /// The container has a cgroup namespace of its own (decides how cgroup mounts are made).
    pub cgroupns: bool,
    pub devices: Vec<DeviceNode>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub readonly_root: bool,
    /// `linux.rootfsPropagation` as mount flags (default: slave).
    pub propagation: nix::mount::MsFlags,
}

impl RootfsPlan {
    pub fn build(spec: &Spec) -> Result<RootfsPlan> {
        let linux = spec.linux().as_ref();
        Ok(RootfsPlan {
            mounts: spec.mounts().as_deref().unwrap_or(&[]).iter().map(mounts::plan).collect::<Result<_>>()?,
            cgroupns: linux.and_then(|l| l.namespaces().as_ref()).is_some_and(|n| n.iter().any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Cgroup)),
            devices: rootfs::device_nodes(spec)?,
            masked_paths: linux.and_then(|l| l.masked_paths().clone()).unwrap_or_default(),
            readonly_paths: linux.and_then(|l| l.readonly_paths().clone()).unwrap_or_default(),
            readonly_root: spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            propagation: rootfs::root_propagation(spec)?,
        })
    }
}

/// The last part of the init, shared with an exec'd process: limits, user, capabilities,
/// no_new_privs, seccomp, exec.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub rlimits: Vec<Rlimit>,
    pub user: User,
    /// None: the spec has no `process.capabilities` and the sets are left as they are.
    pub caps: Option<CapSets>,
    pub no_new_privs: bool,
    pub seccomp: Vec<BpfProgram>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// The spec's name (RLIMIT_NOFILE), for messages.
    pub name: String,
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The spec's umask, else 0022 as runc and crun give (not whatever the caller had).
    pub umask: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    /// Only those the kernel can raise (permitted and inheritable); the others are skipped,
    /// as runc does (`unraisable_ambient` names them for a warning).
    pub ambient: CapsHashSet,
}

impl InitPlan {
    /// The plan for `spec`, or the spec's first error. Compiles `linux.seccomp`.
    pub fn build(spec: &Spec) -> Result<InitPlan> {
        let ns = namespaces::plan(spec)?;
        check_sysctls(spec, &ns)?;
        let process = spec.process().as_ref().ok_or_else(|| ContainerError::Spec { field: "process".into(), msg: "missing".into() })?;
        let seccomp = super::seccomp::compile(spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
        let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().clone()).unwrap_or_default().into_iter().collect();
        Ok(InitPlan {
            hostname: spec.hostname().clone().filter(|_| ns.new_uts),
            domainname: spec.domainname().clone().filter(|_| ns.new_uts),
            namespaces: ns,
            oom_score_adj: process.oom_score_adj(),
            sysctls,
            rootfs: RootfsPlan::build(spec)?,
            process: ProcessPlan::build(process, seccomp)?,
        })
    }
}

impl ProcessPlan {
    /// The plan for `process` with the already compiled `seccomp` program.
    pub fn build(process: &Process, seccomp: Vec<BpfProgram>) -> Result<ProcessPlan> {
        let argv = process.args().clone().unwrap_or_default();
        if argv.is_empty() {
            return Err(ContainerError::Spec { field: "process.args".into(), msg: "empty command".into() });
        }
        Ok(ProcessPlan {
            argv,
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().clone(),
            rlimits: process.rlimits().as_deref().unwrap_or(&[]).iter().map(rlimit).collect::<Result<_>>()?,
            user: user(process)?,
            caps: process.capabilities().as_ref().map(cap_sets).transpose()?,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            seccomp,
        })
    }
}

fn user(process: &Process) -> Result<User> {
    let u = process.user();
    let additional_gids = u.additional_gids().clone().unwrap_or_default();
    // (uid_t)-1 means "leave unchanged" to setresuid/setresgid: the process would stay root.
    if let Some(id) = [u.uid(), u.gid()].into_iter().chain(additional_gids.iter().copied()).find(|id| *id == u32::MAX) {
        return Err(ContainerError::Spec { field: "process.user".into(), msg: format!("{id} is not an ID (the kernel reads it as \"leave unchanged\")") });
    }
    Ok(User { uid: u.uid(), gid: u.gid(), additional_gids, umask: u.umask().unwrap_or(0o022) })
}

fn rlimit(l: &PosixRlimit) -> Result<Rlimit> {
    let name = serde_json::to_value(l.typ()).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let resource = rlimit_resource(&name).ok_or_else(|| ContainerError::Spec { field: "process.rlimits".into(), msg: format!("unknown rlimit {name}") })?;
    Ok(Rlimit { name, resource, soft: l.soft(), hard: l.hard() })
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn caps_of(set: &Option<Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let cap = name.parse::<caps::Capability>().map_err(|_| ContainerError::Spec { field: "process.capabilities".into(), msg: format!("unknown capability {name}") })?;
        out.insert(cap);
    }
    Ok(out)
}

fn cap_sets(c: &oci_spec::runtime::LinuxCapabilities) -> Result<CapSets> {
    let (permitted, inheritable) = (caps_of(c.permitted())?, caps_of(c.inheritable())?);
    let ambient = caps_of(c.ambient())?.into_iter().filter(|a| permitted.contains(a) && inheritable.contains(a)).collect();
    Ok(CapSets { bounding: caps_of(c.bounding())?, effective: caps_of(c.effective())?, permitted, inheritable, ambient })
}

/// Refuse sysctls that are not isolated by a namespace of the container, as runc does: written
/// from the init they would change the host kernel. Namespaced are the IPC ones (`kernel.shm*`,
/// `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`) with an IPC namespace of the container's own,
/// `net.*` with its own network namespace, `kernel.domainname` with its own UTS namespace
/// (`kernel.hostname` conflicts with the `hostname` field). A namespace joined by path counts
/// only if it is not the runtime's own.
fn check_sysctls(spec: &Spec, plan: &namespaces::Plan) -> Result<()> {
    use nix::sched::CloneFlags;
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else { return Ok(()) };
    let same_as_ours = |path: &Path, name: &str| {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(path), std::fs::metadata(format!("/proc/self/ns/{name}"))) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    };
    let own = |flag: CloneFlags, name: &str| plan.new.contains(flag) || plan.join.iter().any(|(f, p)| *f == flag && !same_as_ours(p, name));
    const IPC: &[&str] = &["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];
    for key in map.keys() {
        let refuse = |msg: String| Err(ContainerError::Spec { field: "linux.sysctl".into(), msg: format!("{key}: {msg}") });
        if key.split(['.', '/']).any(|c| c.is_empty() || c == "..") {
            return refuse("not a sysctl name".into());
        }
        let (needs, flag, name) = if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            ("an IPC namespace", CloneFlags::CLONE_NEWIPC, "ipc")
        } else if key.starts_with("net.") {
            ("a network namespace", CloneFlags::CLONE_NEWNET, "net")
        } else if key == "kernel.domainname" {
            ("a UTS namespace", CloneFlags::CLONE_NEWUTS, "uts")
        } else if key == "kernel.hostname" {
            return refuse("conflicts with the spec's `hostname` field; set that instead".into());
        } else {
            return refuse("not isolated by any namespace: setting it would change the host's kernel".into());
        };
        if !own(flag, name) {
            return refuse(format!("needs {needs} of the container's own (it would change the host's)"));
        }
    }
    Ok(())
}

/// The ambient capabilities of `process` that cannot be raised because they are not both
/// permitted and inheritable (the plan skips them), by name.
pub fn unraisable_ambient(process: &Process) -> Vec<String> {
    let Some(c) = process.capabilities() else { return vec![] };
    let (Ok(amb), Ok(p), Ok(i)) = (caps_of(c.ambient()), caps_of(c.permitted()), caps_of(c.inheritable())) else { return vec![] };
    let mut out: Vec<String> = amb.into_iter().filter(|a| !p.contains(a) || !i.contains(a)).map(|a| a.to_string()).collect();
    out.sort();
    out
}
