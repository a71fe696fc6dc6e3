//! Starting a container and watching it: the caller forks a monitor, the monitor forks the init
//! and stays its parent, reaps it and records how it ended. The caller learns the init's PID (or
//! why it could not start) from the sync pipe, and may wait for the monitor to get the exit code.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, setsid};
use oci_spec::runtime::Spec;

use super::init::{self, CODE_RUNTIME, InitArgs};
use super::{ContainerError, EXIT_FILE, ExitRecord, ProcRef, Result, Rootfs, Stdio, cgroups, namespaces, process, seccomp, sync, sys, tee};

/// Called in the monitor once the init has ended, before `exit.json` is written.
pub type ExitHook = fn(state_dir: &Path, record: &mut ExitRecord);

pub struct StartOptions<'a> {
    pub spec: &'a Spec,
    pub rootfs: Rootfs,
    /// Where the monitor writes `exit.json`.
    pub state_dir: PathBuf,
    pub stdio: Stdio,
    /// Detach the monitor from the caller's terminal and standard streams.
    pub detach: bool,
    pub on_exit: Option<ExitHook>,
    /// Run in the init after its namespaces exist and before the root file system is set up,
    /// e.g. to join cgroups.
    pub cgroup_procs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// The container's init, in the caller's PID namespace numbering.
    pub pid: ProcRef,
    /// The monitor: a child of the caller until the caller exits.
    pub monitor: ProcRef,
}

/// Start a container from `opts.spec`. Must be called while the process has a single thread.
/// The spec's cgroup is created here and removed again if the container cannot start.
pub fn start(opts: StartOptions) -> Result<Started> {
    let plan = namespaces::plan(opts.spec)?;
    let filters = seccomp::compile(opts.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
    let cgroup = cgroups::setup(opts.spec)?;
    let result = fork_monitor(&opts, &plan, &filters, cgroup.as_ref());
    if result.is_err() {
        if let Some(cg) = &cgroup {
            let _ = cg.remove();
        }
    }
    result
}

fn fork_monitor(opts: &StartOptions, plan: &namespaces::Plan, filters: &[seccompiler::BpfProgram], cgroup: Option<&cgroups::Cgroup>) -> Result<Started> {
    let (r, w) = sync::pipe().map_err(sys("creating sync pipe"))?;
    // SAFETY: the caller is single-threaded (no tokio runtime on this path), so the child may
    // allocate and run ordinary Rust code until it execs or exits.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(r);
            monitor_main(opts, plan, filters, cgroup, w)
        }
        ForkResult::Parent { child } => {
            drop(w);
            let sync::Report { pid, error: err } = sync::read(r);
            let monitor = ProcRef::of(child.as_raw()).unwrap_or(ProcRef { pid: child.as_raw(), start_time: 0 });
            if let Some((code, msg)) = err {
                // The monitor ends right after its init; reap it so no zombie is left.
                let _ = waitpid(child, None);
                return Err(ContainerError::StartFailed { code, msg });
            }
            match pid {
                Some(pid) => Ok(Started { pid: ProcRef::of(pid).unwrap_or(ProcRef { pid, start_time: 0 }), monitor }),
                None => {
                    let _ = waitpid(child, None);
                    Err(ContainerError::StartFailed { code: CODE_RUNTIME, msg: "the container monitor died before starting the container".into() })
                }
            }
        }
    }
}

fn monitor_main(opts: &StartOptions, plan: &namespaces::Plan, filters: &[seccompiler::BpfProgram], cgroup: Option<&cgroups::Cgroup>, w: OwnedFd) -> ! {
    let fd = w.as_raw_fd();
    // The monitor lives long and never execs: drop every descriptor it inherited (the caller's
    // lock file above all) but the standard streams and the sync pipe.
    // SAFETY: closing descriptors of our own table that nothing in this process uses any more.
    unsafe {
        if fd > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (fd - 1) as u32, 0);
        }
        libc::syscall(libc::SYS_close_range, (fd + 1) as u32, u32::MAX, 0);
    }
    let _ = setsid();
    if opts.detach {
        detach_stdio();
    }
    if let Err(e) = namespaces::prepare_pid(&plan.pid) {
        sync::fail(fd, CODE_RUNTIME, &e.to_string());
    }
    let pipes = match &opts.stdio {
        Stdio::Tee(_) => match tee::Pipes::new() {
            Ok(p) => Some(p),
            Err(e) => sync::fail(fd, CODE_RUNTIME, &format!("creating output pipes: {e}")),
        },
        _ => None,
    };
    // SAFETY: the monitor is single-threaded.
    let init_pid = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            if let Some(p) = pipes {
                p.attach_child();
            }
            // The spec's own cgroup first: the init is confined before it does anything else.
            join_cgroups(cgroup.map(|c| c.procs_files()).unwrap_or_default().iter().chain(&opts.cgroup_procs), fd);
            let stdio = if matches!(opts.stdio, Stdio::Tee(_)) { &Stdio::Inherit } else { &opts.stdio };
            init::run(InitArgs { spec: opts.spec, rootfs: &opts.rootfs, plan, stdio, sync_fd: fd, seccomp: filters, gate: None })
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => sync::fail(fd, CODE_RUNTIME, &format!("fork: {e}")),
    };
    sync::send(fd, &format!("pid {}\n", init_pid.as_raw()));
    drop(w);
    let status = match (pipes, &opts.stdio) {
        (Some(p), Stdio::Tee(log)) => p.copy_until_exit(log, init_pid),
        _ => wait_for(init_pid),
    };
    let (code, signal) = process::shell_code(status);
    // The container's cgroup is its own, so any OOM kill counted there happened to it.
    let oom_killed = cgroup.map(|c| c.oom_kills() > 0).unwrap_or(false);
    let mut record = ExitRecord { code, signal, finished_at: crate::state::now_rfc3339(), oom_killed, error: None, diagnosis: None };
    if let Some(hook) = opts.on_exit {
        hook(&opts.state_dir, &mut record);
    }
    let _ = crate::state::write_json(&opts.state_dir.join(EXIT_FILE), &record);
    unsafe { libc::_exit(code.clamp(0, 255)) }
}

pub(crate) fn join_cgroups<'a>(procs: impl Iterator<Item = &'a PathBuf>, fd: i32) {
    for p in procs {
        if let Err(e) = std::fs::write(p, "0") {
            sync::fail(fd, CODE_RUNTIME, &format!("joining cgroup {}: {e}", p.display()));
        }
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

pub(crate) fn wait_for(pid: Pid) -> WaitStatus {
    loop {
        match waitpid(pid, None) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return s,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return WaitStatus::Exited(pid, CODE_RUNTIME),
        }
    }
}

/// Wait for our child `child` to exit while passing SIGINT, SIGTERM and SIGHUP on to `target`
/// (a foreground container or exec'd process). Returns the shell-style exit code of `child`.
pub fn wait_forwarding(child: Pid, target: Pid) -> i32 {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGCHLD] {
        set.add(s);
    }
    let _ = set.thread_block();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return process::shell_code(s).0,
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(_) => return CODE_RUNTIME,
        }
        if let Ok(sig) = set.wait() {
            if sig != Signal::SIGCHLD {
                let _ = nix::sys::signal::kill(target, sig);
            }
        }
    }
}
