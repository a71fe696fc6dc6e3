//! The init's plan: everything the forked init does that the spec decides, resolved in the
//! PARENT before anything is forked — namespaces, hostname, sysctls, rlimits (as resource
//! numbers), user, capability sets (parsed), no_new_privs, the compiled seccomp program, argv,
//! env and cwd. A spec error surfaces here, to the caller, instead of in a half-built container;
//! the init (`init.rs`) then only executes the plan through the `Kernel` seam.

use std::path::PathBuf;

use caps::CapsHashSet;
use oci_spec::runtime::{Capabilities, PosixRlimit, Process, Spec};
use seccompiler::BpfProgram;

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
    pub process: ProcessPlan,
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
        super::init::check_sysctls(spec, &ns)?;
        let process = spec.process().as_ref().ok_or_else(|| ContainerError::Spec { field: "process".into(), msg: "missing".into() })?;
        let seccomp = super::seccomp::compile(spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
        let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().clone()).unwrap_or_default().into_iter().collect();
        Ok(InitPlan {
            hostname: spec.hostname().clone().filter(|_| ns.new_uts),
            domainname: spec.domainname().clone().filter(|_| ns.new_uts),
            namespaces: ns,
            oom_score_adj: process.oom_score_adj(),
            sysctls,
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

/// The ambient capabilities of `process` that cannot be raised because they are not both
/// permitted and inheritable (the plan skips them), by name.
pub fn unraisable_ambient(process: &Process) -> Vec<String> {
    let Some(c) = process.capabilities() else { return vec![] };
    let (Ok(amb), Ok(p), Ok(i)) = (caps_of(c.ambient()), caps_of(c.permitted()), caps_of(c.inheritable())) else { return vec![] };
    let mut out: Vec<String> = amb.into_iter().filter(|a| !p.contains(a) || !i.contains(a)).map(|a| a.to_string()).collect();
    out.sort();
    out
}
