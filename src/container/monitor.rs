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
use super::{CURRENT_FILE, ContainerError, CurrentRun, EXIT_FILE, ExitRecord, ProcRef, RestartPolicy, STOP_FILE, Result, Rootfs, Stdio, cgroups, namespaces, probe, process, seccomp, sync, sys, tee, userns};

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
    pub restart: RestartPolicy,
    /// Called with the monitor's identity before the monitor may start anything: the caller
    /// records it, so that every process of the container is findable even if the caller dies
    /// right after (a monitor whose caller dies before this returns exits without starting the
    /// container). An error stops the start.
    pub record_monitor: Option<&'a dyn Fn(ProcRef) -> std::result::Result<(), String>>,
    /// Health checks, run by a prober beside each run (see `probe`).
    pub probes: probe::Probes,
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
    init::check_sysctls(opts.spec, &plan)?;
    let filters = seccomp::compile(opts.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
    let cgroup = cgroups::setup(opts.spec)?;
    let result = fork_monitor(&opts, &plan, &filters, cgroup.as_ref());
    if result.is_err()
        && let Some(cg) = &cgroup {
            let _ = cg.remove();
        }
    result
}

fn fork_monitor(opts: &StartOptions, plan: &namespaces::Plan, filters: &[seccompiler::BpfProgram], cgroup: Option<&cgroups::Cgroup>) -> Result<Started> {
    let (r, w) = sync::pipe().map_err(sys("creating sync pipe"))?;
    // The caller's go-ahead, sent once it has recorded the monitor.
    let (go_r, go_w) = sync::pipe().map_err(sys("creating sync pipe"))?;
    // SAFETY: the caller is single-threaded (no tokio runtime on this path), so the child may
    // allocate and run ordinary Rust code until it execs or exits.
    match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(r);
            drop(go_w);
            let mut b = [0u8; 1];
            // EOF: the caller died (or gave up) before recording us; start nothing.
            // SAFETY: read into a one-byte buffer of ours.
            while unsafe { libc::read(go_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) } != 1 {
                if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                    // SAFETY: _exit in a forked child.
                    unsafe { libc::_exit(CODE_RUNTIME) }
                }
            }
            drop(go_r);
            monitor_main(opts, plan, filters, cgroup, w)
        }
        ForkResult::Parent { child } => {
            drop(w);
            drop(go_r);
            let monitor = ProcRef::of(child.as_raw()).unwrap_or(ProcRef { pid: child.as_raw(), start_time: 0 });
            if let Some(record) = opts.record_monitor
                && let Err(msg) = record(monitor) {
                    drop(go_w);
                    let _ = waitpid(child, None);
                    return Err(ContainerError::StartFailed { code: CODE_RUNTIME, msg });
                }
            let mut go = std::fs::File::from(go_w);
            let _ = std::io::Write::write_all(&mut go, b"g");
            drop(go);
            let sync::Report { pid, error: err } = sync::read(r);
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
    // It enters the container's PID namespace (for its children): not dumpable, see sealed_exe.
    if let Err(e) = super::sealed_exe::set_undumpable() {
        sync::fail(fd, CODE_RUNTIME, &format!("PR_SET_DUMPABLE 0 in the monitor: {e}"));
    }
    // The monitor lives long and never execs: drop every descriptor it inherited (the caller's
    // lock file above all) but the standard streams and the sync pipe.
    // (Descriptors of our own table that nothing in this process uses any more.)
    let closed = if fd > 3 { process::close_range(3, (fd - 1) as u32, false) } else { Ok(()) }.and_then(|_| process::close_range((fd + 1) as u32, u32::MAX, false));
    if let Err(e) = closed {
        sync::fail(fd, CODE_RUNTIME, &format!("closing inherited descriptors in the monitor: {e}"));
    }
    let _ = setsid();
    if opts.detach {
        process::stdio_to_null();
    }
    // Kept to return to before a restart can create a fresh PID namespace.
    let own_pid_ns = std::fs::File::open("/proc/self/ns/pid").ok();
    let mut attempt = match spawn_init(opts, plan, filters, cgroup, fd, None) {
        Ok(a) => a,
        Err(msg) => sync::fail(fd, CODE_RUNTIME, &msg),
    };
    sync::send(fd, &format!("pid {}\n", attempt.pid.as_raw()));
    drop(w);
    // The running process, also for a caller that dies before recording it.
    let first = CurrentRun { pid: ProcRef::of(attempt.pid.as_raw()), restarts: 0, started_at: Some(crate::state::now_rfc3339()), last_exit: None, next_start_at: None };
    let _ = crate::state::write_json(&opts.state_dir.join(CURRENT_FILE), &first);
    let mut restarts = 0u32;
    let mut backoff = RESTART_BACKOFF_MIN;
    let procs = cgroup.map(|c| c.procs_files()).unwrap_or_default();
    let prober_of = |pid: Pid| {
        // The prober must not be forked into the container's PID namespace: that namespace's
        // init would wait, as it exits, for the prober to be reaped while we wait for the init.
        if let (false, Some(own)) = (opts.probes.is_empty(), own_pid_ns.as_ref()) {
            let _ = namespaces::reset_pid(own);
        }
        ProcRef::of(pid.as_raw()).and_then(|p| probe::spawn(&opts.probes, p, opts.spec, procs.clone(), &opts.state_dir))
    };
    let mut prober = prober_of(attempt.pid);
    loop {
        let started = std::time::Instant::now();
        let oom_before = cgroup.map(|c| c.oom_kills()).unwrap_or(0);
        let status = match (attempt.pipes.take(), &opts.stdio) {
            (Some(p), Stdio::Tee(log, limits)) => p.copy_until_exit(log, *limits, attempt.pid),
            _ => wait_for(attempt.pid),
        };
        probe::stop(prober.take());
        let (code, signal) = process::shell_code(status);
        // The container's cgroup is its own, so an OOM kill counted there during this run
        // happened to it.
        let oom_killed = cgroup.map(|c| c.oom_kills() > oom_before).unwrap_or(false);
        let error = attempt.errors.take().and_then(|r| sync::read(r).error).map(|(_, m)| m);
        let mut record = ExitRecord { code, signal, finished_at: crate::state::now_rfc3339(), oom_killed, error, diagnosis: probe::killed_reason(&opts.state_dir) };
        if let Some(hook) = opts.on_exit {
            hook(&opts.state_dir, &mut record);
        }
        let stop = opts.state_dir.join(STOP_FILE);
        if !opts.restart.restarts_after(code) || stop.exists() {
            let _ = crate::state::write_json(&opts.state_dir.join(EXIT_FILE), &record);
            // SAFETY: _exit ends the forked monitor without running its parent's atexit state or unwinding.
            unsafe { libc::_exit(code.clamp(0, 255)) }
        }
        // Back off as the kubelet does (doubling, capped), starting over after a long run.
        if started.elapsed() > RESTART_BACKOFF_RESET {
            backoff = RESTART_BACKOFF_MIN;
        }
        let due = std::time::SystemTime::now() + backoff;
        let mut current = CurrentRun { pid: None, restarts, started_at: None, last_exit: Some(record.clone()), next_start_at: Some(crate::state::rfc3339_of(due)) };
        let _ = crate::state::write_json(&opts.state_dir.join(CURRENT_FILE), &current);
        let deadline = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < deadline && !stop.exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if stop.exists() {
            let _ = crate::state::write_json(&opts.state_dir.join(EXIT_FILE), &record);
            // SAFETY: _exit ends the forked monitor without running its parent's atexit state or unwinding.
            unsafe { libc::_exit(code.clamp(0, 255)) }
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        restarts += 1;
        // A restarted container is a new container, as in Kubernetes: it starts from the image
        // again, not from what the last run wrote. (The overlay was mounted in the last run's
        // own mount namespace, which went with it.)
        if let Rootfs::Overlay { upper, work, .. } = &opts.rootfs {
            for d in [upper, work] {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        attempt = match spawn_init(opts, plan, filters, cgroup, -1, own_pid_ns.as_ref()) {
            Ok(a) => a,
            Err(msg) => {
                record.error = Some(format!("restarting: {msg}"));
                let _ = crate::state::write_json(&opts.state_dir.join(EXIT_FILE), &record);
                // SAFETY: _exit ends the forked monitor without running its parent's atexit state or unwinding.
                unsafe { libc::_exit(CODE_RUNTIME) }
            }
        };
        prober = prober_of(attempt.pid);
        current.pid = ProcRef::of(attempt.pid.as_raw());
        current.restarts = restarts;
        current.started_at = Some(crate::state::now_rfc3339());
        current.next_start_at = None;
        let _ = crate::state::write_json(&opts.state_dir.join(CURRENT_FILE), &current);
    }
}

const RESTART_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const RESTART_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(300);
const RESTART_BACKOFF_RESET: std::time::Duration = std::time::Duration::from_secs(60);

/// One run of the container's process: its PID, the output pipes of a foreground container, and
/// (for restarts, when the caller's sync pipe is gone) the pipe its start errors arrive on.
struct Attempt {
    pid: Pid,
    pipes: Option<tee::Pipes>,
    errors: Option<OwnedFd>,
}

/// Fork the init of one run. `sync_fd` is the caller's sync pipe for the first run; later runs
/// (`sync_fd` < 0) get a pipe of their own, read after they end.
fn spawn_init(opts: &StartOptions, plan: &namespaces::Plan, filters: &[seccompiler::BpfProgram], cgroup: Option<&cgroups::Cgroup>, sync_fd: i32, reset_pid: Option<&std::fs::File>) -> std::result::Result<Attempt, String> {
    if let (Some(own), Some(None)) = (reset_pid, &plan.pid) {
        namespaces::reset_pid(own).map_err(|e| e.to_string())?;
    }
    namespaces::prepare_pid(&plan.pid).map_err(|e| e.to_string())?;
    let (errors, fd) = if sync_fd >= 0 {
        (None, sync_fd)
    } else {
        let (r, w) = sync::pipe().map_err(|e| format!("creating sync pipe: {e}"))?;
        let fd = w.as_raw_fd();
        std::mem::forget(w); // closed below in the parent, inherited by the child
        (Some(r), fd)
    };
    let pipes = match &opts.stdio {
        Stdio::Tee(..) => Some(tee::Pipes::new().map_err(|e| format!("creating output pipes: {e}"))?),
        _ => None,
    };
    let monitor = ProcRef::of(std::process::id() as i32);
    let userns = userns::handshake(plan).map_err(|e| e.to_string())?;
    // The monitor is single-threaded (see userns::fork).
    match userns::fork(plan, &userns) {
        Ok(ForkResult::Child) => {
            drop(errors);
            if let Some(p) = pipes {
                p.attach_child();
            }
            // Until the init is in its cgroup, only the monitor knows it: die with the monitor,
            // so that removal, which kills the monitor and then the cgroup, misses nothing.
            // SAFETY: prctl with integer arguments.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            }
            // The monitor may have died before the prctl. (getppid cannot tell: in a new PID
            // namespace it is 0 either way; /proc is still the node's here.)
            if monitor.is_some_and(|m| !m.alive()) {
                // SAFETY: _exit in a forked child.
                unsafe { libc::_exit(CODE_RUNTIME) }
            }
            // The spec's own cgroup first: the init is confined before it does anything else.
            join_cgroups(cgroup.map(|c| c.procs_files()).unwrap_or_default().iter().chain(&opts.cgroup_procs), fd);
            // From here on the cgroup finds it: it outlives a killed monitor.
            // SAFETY: as above.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
            if let Err(e) = userns::enter(plan, userns) {
                sync::fail(fd, CODE_RUNTIME, &e.to_string());
            }
            let stdio = if matches!(opts.stdio, Stdio::Tee(..)) { &Stdio::Inherit } else { &opts.stdio };
            init::run(InitArgs { spec: opts.spec, rootfs: &opts.rootfs, plan, stdio, sync_fd: fd, seccomp: filters, gate: None, preserve_fds: 0, no_pivot: false })
        }
        Ok(ForkResult::Parent { child }) => {
            userns::answer(plan, userns, child);
            if sync_fd < 0 {
                // SAFETY: the write end forgotten above; only the child keeps a copy.
                unsafe { libc::close(fd) };
            }
            Ok(Attempt { pid: child, pipes, errors })
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}

pub(crate) fn join_cgroups<'a>(procs: impl Iterator<Item = &'a PathBuf>, fd: i32) {
    for p in procs {
        if let Err(e) = std::fs::write(p, "0") {
            sync::fail(fd, CODE_RUNTIME, &format!("joining cgroup {}: {e}", p.display()));
        }
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
        if let Ok(sig) = set.wait()
            && sig != Signal::SIGCHLD {
                let _ = nix::sys::signal::kill(target, sig);
            }
    }
}
