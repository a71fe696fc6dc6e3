//! `exec`: run another process in a running container — join all of its init's namespaces,
//! apply the container's user, capabilities, no_new_privs and seccomp filter, and exec.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::init::{self, CODE_RUNTIME};
use super::monitor::wait_forwarding;
use super::{ContainerError, ProcRef, Result, Stdio, sync, sys};

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
    let filters = super::seccomp::compile(seccomp)?;
    // A user namespace of the container's own is joined first: it owns the others.
    let userns = super::userns::of_process(target.pid)?;
    // Open every namespace before entering any (the mount namespace changes what paths mean).
    let mut nss = Vec::new();
    for (name, flag) in [("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS), ("net", CloneFlags::CLONE_NEWNET), ("pid", CloneFlags::CLONE_NEWPID), ("cgroup", CloneFlags::CLONE_NEWCGROUP), ("mnt", CloneFlags::CLONE_NEWNS)] {
        let p = format!("/proc/{}/ns/{name}", target.pid);
        // In the container's user namespace, one the container shares with the caller (e.g.
        // the cgroup namespace of a spec without one) belongs to the caller's user namespace and
        // can no longer be joined; the process is in it already.
        if userns.is_some() && super::userns::same_file(&p, &format!("/proc/self/ns/{name}")) {
            continue;
        }
        let f = File::open(&p).map_err(|e| ContainerError::Io { what: format!("opening {p}"), source: e })?;
        nss.push((name, flag, f));
    }
    let (r, w) = sync::pipe().map_err(sys("creating sync pipe"))?;
    // SAFETY: single-threaded caller; see container::start.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(r);
            let fd = w.as_raw_fd();
            let fail = |msg: String| -> ! { sync::fail(fd, CODE_RUNTIME, &msg) };
            // Not dumpable before it joins the container (see sealed_exe); the exec'd program
            // becomes dumpable again.
            if let Err(e) = super::sealed_exe::set_undumpable() {
                fail(format!("PR_SET_DUMPABLE 0: {e}"));
            }
            super::monitor::join_cgroups(cgroup_procs.iter(), fd);
            if let Some(u) = &userns
                && let Err(e) = setns(u.as_fd(), CloneFlags::CLONE_NEWUSER) {
                    fail(format!("joining the container's user namespace: {e}"));
                }
            for (name, flag, f) in &nss {
                if let Err(e) = setns(f.as_fd(), *flag) {
                    fail(format!("joining the container's {name} namespace: {e}"));
                }
            }
            // Entering the PID namespace takes effect for children: fork once more.
            // SAFETY: this process is single-threaded here (a forked helper); the child only
            // sets itself up and execs.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => exec_child(process, &filters, stdio, fd, preserve_fds),
                Ok(ForkResult::Parent { child }) => {
                    if detach {
                        // Report the PID and leave: the process is reparented to the caller's
                        // subreaper, which is the one to wait for it.
                        sync::send(fd, &format!("pid {}\n", child.as_raw()));
                        // SAFETY: _exit ends this forked helper without running its parent's atexit state.
                        unsafe { libc::_exit(0) }
                    }
                    drop(w);
                    let code = wait_forwarding(child, child);
                    // SAFETY: as above: a forked helper leaves without unwinding into the parent's code.
                    unsafe { libc::_exit(code) }
                }
                Err(e) => fail(format!("fork: {e}")),
            }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let report = sync::read(r);
            if let Some((code, msg)) = report.error {
                let _ = waitpid(child, None);
                return Err(ContainerError::StartFailed { code, msg });
            }
            if detach {
                let _ = waitpid(child, None);
                let pid = report.pid.ok_or_else(|| ContainerError::StartFailed { code: CODE_RUNTIME, msg: "the exec'd process did not report its PID".into() })?;
                // The read ended at exec (the sync pipe is CLOEXEC), so the process exists or
                // has already exited; a zero start time stands for "already gone".
                return Ok(Spawned::Detached(ProcRef::of(pid).unwrap_or(ProcRef { pid, start_time: 0 })));
            }
            Ok(Spawned::Exited(wait_forwarding(child, child)))
        }
    }
}

fn exec_child(process: &Process, seccomp: &[seccompiler::BpfProgram], stdio: &Stdio, fd: i32, preserve_fds: u32) -> ! {
    let result = (|| -> Result<std::convert::Infallible> {
        if let Stdio::Terminal(slave) = stdio {
            super::terminal::attach(*slave)?;
        }
        let env = process.env().clone().unwrap_or_default();
        let argv = process.args().clone().unwrap_or_default();
        if argv.is_empty() {
            return Err(ContainerError::Spec { field: "process.args".into(), msg: "empty command".into() });
        }
        let exe = init::resolve_executable(&argv[0], &env, process.cwd())?;
        init::set_rlimits(process.rlimits().as_deref().unwrap_or(&[]))?;
        init::become_process(process, seccomp, &exe, &argv, &env, None, preserve_fds)
    })();
    let (code, msg) = match result {
        Ok(never) => match never {},
        Err(ContainerError::StartFailed { code, msg }) => (code, msg),
        Err(e) => (CODE_RUNTIME, e.to_string()),
    };
    sync::fail(fd, code, &msg)
}
