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
use super::{ContainerError, ProcRef, Result, sync, sys};

/// Run `process` inside the container whose init is `target`, with the caller's standard
/// streams; returns the process's exit code. `cgroup_procs` are joined first; `seccomp` is the
/// container's profile (the spec's `linux.seccomp`), which binds exec'd processes as well.
pub fn exec(target: ProcRef, process: &Process, seccomp: Option<&LinuxSeccomp>, cgroup_procs: &[std::path::PathBuf]) -> Result<i32> {
    if !target.alive() {
        return Err(ContainerError::NotRunning(target.pid.to_string()));
    }
    let filters = super::seccomp::compile(seccomp)?;
    // Open every namespace before entering any (the mount namespace changes what paths mean).
    let mut nss = Vec::new();
    for (name, flag) in [("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS), ("net", CloneFlags::CLONE_NEWNET), ("pid", CloneFlags::CLONE_NEWPID), ("cgroup", CloneFlags::CLONE_NEWCGROUP), ("mnt", CloneFlags::CLONE_NEWNS)] {
        let p = format!("/proc/{}/ns/{name}", target.pid);
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
            for p in cgroup_procs {
                if let Err(e) = std::fs::write(p, "0") {
                    fail(format!("joining cgroup {}: {e}", p.display()));
                }
            }
            for (name, flag, f) in &nss {
                if let Err(e) = setns(f.as_fd(), *flag) {
                    fail(format!("joining the container's {name} namespace: {e}"));
                }
            }
            // Entering the PID namespace takes effect for children: fork once more.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => exec_child(process, &filters, fd),
                Ok(ForkResult::Parent { child }) => {
                    drop(w);
                    let code = wait_forwarding(child, child);
                    unsafe { libc::_exit(code) }
                }
                Err(e) => fail(format!("fork: {e}")),
            }
        }
        ForkResult::Parent { child } => {
            drop(w);
            if let Some((code, msg)) = sync::read(r).error {
                let _ = waitpid(child, None);
                return Err(ContainerError::StartFailed { code, msg });
            }
            Ok(wait_forwarding(child, child))
        }
    }
}

fn exec_child(process: &Process, seccomp: &[seccompiler::BpfProgram], fd: i32) -> ! {
    let result = (|| -> Result<std::convert::Infallible> {
        let env = process.env().clone().unwrap_or_default();
        let argv = process.args().clone().unwrap_or_default();
        if argv.is_empty() {
            return Err(ContainerError::Spec { field: "process.args".into(), msg: "empty command".into() });
        }
        let exe = init::resolve_executable(&argv[0], &env)?;
        init::set_rlimits(process.rlimits().as_deref().unwrap_or(&[]))?;
        init::become_process(process, seccomp, &exe, &argv, &env)
    })();
    let (code, msg) = match result {
        Ok(never) => match never {},
        Err(ContainerError::StartFailed { code, msg }) => (code, msg),
        Err(e) => (CODE_RUNTIME, e.to_string()),
    };
    sync::fail(fd, code, &msg)
}
