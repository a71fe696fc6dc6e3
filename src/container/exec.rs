//! `exec`: run another process in a running container — join all of its init's namespaces,
//! apply the container's user, capabilities, no_new_privs and seccomp filter, and exec.

use std::fs::File;

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::init::{self, CODE_RUNTIME};
use super::monitor::wait_forwarding;
use super::plan::ProcessPlan;
use super::spawn::{self, Failure, PidNs, Spawn};
use super::{ContainerError, ProcRef, Result, Stdio};

/// Run `process` inside the container whose init is `target`, with the caller's standard
/// streams; returns the process's exit code. `cgroup_procs` are joined first; `seccomp` is the
/// container's profile (the spec's `linux.seccomp`), which binds exec'd processes as well.
pub fn exec(target: ProcRef, process: &Process, seccomp: Option<&LinuxSeccomp>, cgroup_procs: &[std::path::PathBuf]) -> Result<i32> {
    match spawn(target, process, seccomp, cgroup_procs, &Stdio::Inherit, false, 0)? {
        Spawned::Exited(code) => Ok(code),
        Spawned::Detached(_) => unreachable!("spawn waits unless detached"),
    }
}

/// How `spawn` returned.
pub enum Spawned {
    /// Waited for: the process's exit code.
    Exited(i32),
    /// Detached: the running process, already reparented to the caller's subreaper (or init).
    Detached(ProcRef),
}

/// `exec` with a choice of standard streams (`Inherit` or `Terminal`) and, with `detach`, no
/// waiting: the caller gets the process's PID once it has exec'd (OCI `exec --detach`, whose
/// supervisor reaps the process itself). The process inherits descriptors 3 to 3 + `preserve_fds`
/// - 1 of the caller (OCI `exec --preserve-fds`), no others.
pub fn spawn(target: ProcRef, process: &Process, seccomp: Option<&LinuxSeccomp>, cgroup_procs: &[std::path::PathBuf], stdio: &Stdio, detach: bool, preserve_fds: u32) -> Result<Spawned> {
    if !target.alive() {
        return Err(ContainerError::NotRunning(target.pid.to_string()));
    }
    // The plan, and any error of the process's spec, before anything is forked.
    let plan = ProcessPlan::build(process, super::seccomp::compile(seccomp)?)?;
    // A user namespace of the container's own is joined first: it owns the others.
    let userns = super::userns::of_process(target.pid)?;
    // Open every namespace before entering any (the mount namespace changes what paths mean).
    let mut join = Vec::new();
    let mut pid_ns = PidNs::Inherit;
    for (name, flag) in [("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS), ("net", CloneFlags::CLONE_NEWNET), ("pid", CloneFlags::CLONE_NEWPID), ("cgroup", CloneFlags::CLONE_NEWCGROUP), ("mnt", CloneFlags::CLONE_NEWNS)] {
        let p = format!("/proc/{}/ns/{name}", target.pid);
        // In the container's user namespace, one the container shares with the caller (e.g.
        // the cgroup namespace of a spec without one) belongs to the caller's user namespace and
        // can no longer be joined; the process is in it already.
        if userns.is_some() && super::userns::same_file(&p, &format!("/proc/self/ns/{name}")) {
            continue;
        }
        let f = File::open(&p).map_err(|e| ContainerError::Io { what: format!("opening {p}"), source: e })?;
        match flag {
            CloneFlags::CLONE_NEWPID => pid_ns = PidNs::Join(f),
            _ => join.push((flag, f)),
        }
    }
    // Opened first, checked after: were the PID reused in between, these are not its namespaces.
    if !target.alive() {
        return Err(ContainerError::NotRunning(target.pid.to_string()));
    }
    let user = userns.map_or(spawn::UserNs::Inherit, spawn::UserNs::Join);
    let desc = Spawn { cgroups: cgroup_procs, user, join, pid_ns, ..Spawn::default() };
    let child = spawn::spawn(desc, |_| exec_child(&plan, stdio, preserve_fds))?;
    // End-of-file at exec (the channel is CLOEXEC), or the error from before it.
    if let Err(failure) = child.outcome() {
        child.wait();
        return Err(failure.into());
    }
    if detach {
        // The process is ours until we exit; then the caller's subreaper, which waits for it.
        // A zero start time stands for "already gone".
        return Ok(Spawned::Detached(child.proc_ref()));
    }
    let me = child.proc_ref();
    Ok(Spawned::Exited(wait_forwarding(Pid::from_raw(child.pid), &|| Some(me))))
}

fn exec_child(plan: &ProcessPlan, stdio: &Stdio, preserve_fds: u32) -> std::result::Result<(), Failure> {
    let result = (|| -> Result<std::convert::Infallible> {
        if let Stdio::Terminal(slave) = stdio {
            super::terminal::attach(*slave)?;
        }
        init::run_process(&super::kernel::Linux, plan, None, preserve_fds)
    })();
    Err(match result {
        Ok(never) => match never {},
        Err(ContainerError::StartFailed { code, msg }) => Failure { code, msg },
        Err(e) => Failure { code: CODE_RUNTIME, msg: e.to_string() },
    })
}
