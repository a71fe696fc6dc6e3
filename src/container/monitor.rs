//! Starting a container and watching it: the caller spawns a monitor, the monitor spawns the
//! init and stays its parent, reaps it, records how it ended and starts it again as the restart
//! policy says (`supervise`). The caller learns the init's PID (or why it could not start) from
//! the sync channel, relayed by the monitor, and may wait for the monitor to get the exit code.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::init::{self, CODE_RUNTIME, InitArgs};
use super::plan::InitPlan;
use super::spawn::{self, Channel, Failure, Msg, Spawn, SpawnError};
use super::{CURRENT_FILE, ContainerError, CurrentRun, EXIT_FILE, ExitRecord, ProcRef, RestartPolicy, STOP_FILE, Result, Rootfs, Stdio, attach, cgroups, namespaces, probe, process, tee, userns};

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
    /// More cgroups (their `cgroup.procs` files) the init is moved into, after the spec's.
    pub cgroup_procs: Vec<PathBuf>,
    pub restart: RestartPolicy,
    /// Called with the monitor's identity before the monitor may start anything: the caller
    /// records it, so that every process of the container is findable even if the caller dies
    /// right after (a monitor whose caller dies before this returns exits without starting the
    /// container). An error stops the start.
    pub record_monitor: Option<&'a dyn Fn(ProcRef) -> std::result::Result<(), String>>,
    /// Health checks, run by a prober beside each run (see `probe`).
    pub probes: probe::Probes,
    /// Keep stdin (and a tty) open for `attach` clients (see `attach`); with `Stdio::Tee` only.
    pub attach: Option<attach::AttachOptions>,
}

#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// The container's init, in the caller's PID namespace numbering.
    pub pid: ProcRef,
    /// The monitor: a child of the caller until the caller exits.
    pub monitor: ProcRef,
}

/// Start a container from `opts.spec`. Must be called while the process has a single thread.
/// The spec's cgroup is created here (while the monitor starts the init, see
/// `init::Placement`) and removed again if the container cannot start.
pub fn start(opts: StartOptions) -> Result<Started> {
    let plan = InitPlan::build(opts.spec)?;
    crate::trace::step("start: init plan (seccomp compiled)");
    let cgroup = cgroups::plan(opts.spec)?;
    crate::trace::step("start: cgroup planned");
    let result = spawn_monitor(&opts, &plan, cgroup.as_ref());
    crate::trace::step("start: monitor spawned, init started");
    if result.is_err()
        && let Some(cg) = &cgroup {
            let _ = cg.remove();
        }
    result
}

fn spawn_monitor(opts: &StartOptions, plan: &InitPlan, cgroup: Option<&cgroups::Cgroup>) -> Result<Started> {
    let desc = Spawn { new_session: true, ..Spawn::default() };
    let monitor = spawn::spawn(desc, |chan| monitor_main(opts, plan, cgroup, chan))?;
    let monitor_ref = monitor.proc_ref();
    if let Some(record) = opts.record_monitor
        && let Err(msg) = record(monitor_ref)
    {
        // Without its `Go` (end-of-file) the monitor exits without starting anything.
        let pid = Pid::from_raw(monitor.pid);
        drop(monitor);
        let _ = waitpid(pid, None);
        return Err(ContainerError::StartFailed { code: CODE_RUNTIME, msg });
    }
    let _ = monitor.send(&Msg::Go);
    // The monitor asks for the cgroup once it has forked the init, which sets up meanwhile
    // (see `init::Placement`). Woken by the request, this process is usually moved to the idle
    // CPU, so the two run side by side.
    let mut not_made = None;
    let outcome = monitor.serve(|request| match request {
        Msg::CgroupDue => match cgroup.map(|cg| cg.create(cgroups::resources_of(opts.spec))) {
            Some(Err(e)) => {
                not_made = Some(e);
                Err(Failure { code: CODE_RUNTIME, msg: String::new() })
            }
            _ => {
                crate::trace::step("start: cgroup created");
                Ok(Some(Msg::CgroupsMade))
            }
        },
        other => Err(Failure { code: CODE_RUNTIME, msg: format!("unexpected message {other:?} from the container monitor") }),
    });
    if let Some(e) = not_made {
        // The init has not joined anything yet: it dies with its monitor.
        monitor.kill();
        monitor.wait();
        return Err(e);
    }
    match outcome {
        Ok(Some(pid)) => Ok(Started { pid: ProcRef::of(pid).unwrap_or(ProcRef { pid, start_time: 0 }), monitor: monitor_ref }),
        Ok(None) => {
            monitor.wait();
            Err(ContainerError::StartFailed { code: CODE_RUNTIME, msg: "the container monitor died before starting the container".into() })
        }
        Err(failure) => {
            // The monitor ends right after its init; reap it so no zombie is left.
            monitor.wait();
            Err(failure.into())
        }
    }
}

fn monitor_main(opts: &StartOptions, plan: &InitPlan, cgroup: Option<&cgroups::Cgroup>, chan: &Channel) -> ! {
    let (attempt, hub) = first_run(opts, plan, cgroup, chan);
    supervise(opts, plan, cgroup, attempt, hub)
}

/// Wait for the caller's go-ahead, start the first run and relay its PID and its report to the
/// caller; the caller's channel is closed after.
fn first_run(opts: &StartOptions, plan: &InitPlan, cgroup: Option<&cgroups::Cgroup>, chan: &Channel) -> (Attempt, Option<attach::Hub>) {
    // End-of-file instead: the caller died (or gave up) before recording us; start nothing.
    if !matches!(chan.recv(), Ok(Some(Msg::Go))) {
        // SAFETY: _exit in a forked child.
        unsafe { libc::_exit(CODE_RUNTIME) }
    }
    // The monitor lives long and never execs: drop every descriptor it inherited (the caller's
    // lock file above all) but the standard streams and the sync channel.
    let fd = chan.raw_fd();
    let closed = if fd > 3 { process::close_range(3, (fd - 1) as u32, false) } else { Ok(()) }.and_then(|_| process::close_range((fd + 1) as u32, u32::MAX, false));
    if let Err(e) = closed {
        chan.fail(CODE_RUNTIME, &format!("closing inherited descriptors in the monitor: {e}"));
    }
    if opts.detach {
        process::stdio_to_null();
    }
    let hub = match opts.attach.filter(|_| matches!(opts.stdio, Stdio::Tee(..))).map(|a| attach::Hub::open(&opts.state_dir, a)).transpose() {
        Ok(h) => h,
        Err(e) => chan.fail(CODE_RUNTIME, &format!("opening the attach socket in {}: {e}", opts.state_dir.display())),
    };
    crate::trace::step("monitor: go");
    let caller_made_cgroup = || match chan.send(&Msg::CgroupDue).ok().and_then(|_| chan.recv().ok()) {
        Some(Some(Msg::CgroupsMade)) => Ok(()),
        _ => Err(Failure { code: CODE_RUNTIME, msg: "the caller gave up before the container's cgroup was made".into() }),
    };
    let mut attempt = match spawn_init(opts, plan, cgroup, hub.as_ref(), &caller_made_cgroup) {
        Ok(a) => a,
        Err(f) => chan.fail(f.code, &f.msg),
    };
    // The log exists once start returns (the kubelet opens it right after StartContainer),
    // not only once the copier gets to it.
    if let Stdio::Tee(log, _) = &opts.stdio {
        let _ = std::fs::OpenOptions::new().create(true).append(true).open(log);
    }
    let _ = chan.send(&Msg::Pid { pid: attempt.init.pid });
    // The running process, also for a caller that dies before recording it.
    let first = CurrentRun { pid: ProcRef::of(attempt.init.pid), restarts: 0, started_at: Some(crate::state::now_rfc3339()), last_exit: None, next_start_at: None };
    let _ = crate::state::write_json(&opts.state_dir.join(CURRENT_FILE), &first);
    // The init's own report (end-of-file at its exec) is relayed to the caller, then the
    // caller's channel is done.
    attempt.read_outcome();
    if let Some(f) = &attempt.error {
        let _ = chan.send(&Msg::Error { code: f.code, msg: f.msg.clone() });
    }
    chan.shutdown();
    (attempt, hub)
}

/// Wait for each run to end, record it, and start the next one as the restart policy says.
fn supervise(opts: &StartOptions, plan: &InitPlan, cgroup: Option<&cgroups::Cgroup>, mut attempt: Attempt, mut hub: Option<attach::Hub>) -> ! {
    let mut restarts = 0u32;
    let mut backoff = RESTART_BACKOFF_MIN;
    let procs = cgroup.map(|c| c.procs_files()).unwrap_or_default();
    // The prober is forked in the monitor's own PID namespace: the monitor never enters the
    // container's (only the process spawn clones into it does).
    let prober_of = |pid: i32| ProcRef::of(pid).and_then(|p| probe::spawn(&opts.probes, p, opts.spec, procs.clone(), &opts.state_dir));
    let mut prober = prober_of(attempt.init.pid);
    loop {
        let started = std::time::Instant::now();
        let (code, mut record) = wait_run(opts, cgroup, &mut attempt, hub.as_mut(), prober.take());
        let stop = opts.state_dir.join(STOP_FILE);
        if !opts.restart.restarts_after(code) || stop.exists() {
            finish(opts, &record, code);
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
            finish(opts, &record, code);
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
        restarts += 1;
        attempt = match restart(opts, plan, cgroup, hub.as_ref()) {
            Ok(a) => a,
            Err(msg) => {
                record.error = Some(format!("restarting: {}", msg.msg));
                finish(opts, &record, CODE_RUNTIME);
            }
        };
        prober = prober_of(attempt.init.pid);
        current.pid = ProcRef::of(attempt.init.pid);
        current.restarts = restarts;
        current.started_at = Some(crate::state::now_rfc3339());
        current.next_start_at = None;
        let _ = crate::state::write_json(&opts.state_dir.join(CURRENT_FILE), &current);
    }
}

/// Waits for the run of `attempt` to end (copying its output meanwhile), stops its prober,
/// and returns its shell exit code and its record (after the caller's `on_exit` hook).
fn wait_run(opts: &StartOptions, cgroup: Option<&cgroups::Cgroup>, attempt: &mut Attempt, hub: Option<&mut attach::Hub>, prober: Option<Pid>) -> (i32, ExitRecord) {
    let oom_before = cgroup.map(|c| c.oom_kills()).unwrap_or(0);
    let status = match (attempt.pipes.take(), &opts.stdio) {
        (Some(p), Stdio::Tee(log, limits)) => p.copy_until_exit(log, *limits, Pid::from_raw(attempt.init.pid), hub),
        _ => attempt.init.wait(),
    };
    probe::stop(prober);
    let (code, signal) = process::shell_code(status);
    // The container's cgroup is its own, so an OOM kill counted there during this run
    // happened to it.
    let oom_killed = cgroup.map(|c| c.oom_kills() > oom_before).unwrap_or(false);
    let error = attempt.error.take().map(|f| f.msg);
    let mut record = ExitRecord { code, signal, finished_at: crate::state::now_rfc3339(), oom_killed, error, diagnosis: probe::killed_reason(&opts.state_dir) };
    if let Some(hook) = opts.on_exit {
        hook(&opts.state_dir, &mut record);
    }
    (code, record)
}

/// Starts the container's process again, from a fresh writable layer.
fn restart(opts: &StartOptions, plan: &InitPlan, cgroup: Option<&cgroups::Cgroup>, hub: Option<&attach::Hub>) -> std::result::Result<Attempt, Failure> {
    // A restarted container is a new container, as in Kubernetes: it starts from the image
    // again, not from what the last run wrote. (The overlay was mounted in the last run's
    // own mount namespace, which went with it.)
    if let Rootfs::Overlay { upper, work, .. } = &opts.rootfs {
        for d in [upper, work] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    let mut attempt = spawn_init(opts, plan, cgroup, hub, &|| Ok(()))?;
    attempt.read_outcome();
    Ok(attempt)
}

/// Records how the last run ended and ends the monitor with `code`.
fn finish(opts: &StartOptions, record: &ExitRecord, code: i32) -> ! {
    let _ = crate::state::write_json(&opts.state_dir.join(EXIT_FILE), record);
    // SAFETY: _exit ends the forked monitor without running its parent's atexit state or unwinding.
    unsafe { libc::_exit(code.clamp(0, 255)) }
}

const RESTART_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const RESTART_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(300);
const RESTART_BACKOFF_RESET: std::time::Duration = std::time::Duration::from_secs(60);

/// One run of the container's process: the init (the monitor's child), the output pipes of a
/// foreground container, and the error it reported before exec, if it did.
struct Attempt {
    init: spawn::Child,
    pipes: Option<tee::Pipes>,
    error: Option<Failure>,
}

impl Attempt {
    /// Read the init's channel to end-of-file: it has exec'd, or failed and said why.
    fn read_outcome(&mut self) {
        self.error = self.init.outcome().err();
    }
}

/// Spawn the init of one run, born in its PID namespace, into the container's cgroup once
/// `cgroup_made` says it exists (the first run's caller makes it): the init sets up meanwhile
/// and joins it later (see `init::Placement`), or, when it enters a user namespace, where it
/// could not write the host's cgroup files, it is spawned only then and joins at birth.
fn spawn_init(opts: &StartOptions, plan: &InitPlan, cgroup: Option<&cgroups::Cgroup>, hub: Option<&attach::Hub>, cgroup_made: &dyn Fn() -> std::result::Result<(), Failure>) -> std::result::Result<Attempt, Failure> {
    let runtime = |msg: String| Failure { code: CODE_RUNTIME, msg };
    let pipes = match (&opts.stdio, hub.and_then(|h| h.terminal_output())) {
        // A terminal's output is read from its master.
        (Stdio::Tee(..), Some(master)) => Some(master.map_err(|e| e.to_string()).and_then(|m| tee::Pipes::reading(m).map_err(|e| e.to_string())).map_err(|e| runtime(format!("reading the container's terminal: {e}")))?),
        (Stdio::Tee(..), None) => Some(tee::Pipes::new().map_err(|e| runtime(format!("creating output pipes: {e}")))?),
        _ => None,
    };
    // Taken by the child (its copy of this cell); the monitor's copy keeps the pipes.
    let pipes = Cell::new(pipes);
    // The spec's own cgroup first (the process is found by it, see `Cgroup::procs`).
    let procs: Vec<PathBuf> = cgroup.map(|c| c.procs_files()).unwrap_or_default().into_iter().chain(opts.cgroup_procs.iter().cloned()).collect();
    let pid_ns = namespaces::pid_ns_for(&plan.namespaces.pid).map_err(|e| runtime(e.to_string()))?;
    let user = userns::spawn_step(&plan.namespaces).map_err(|e| runtime(e.to_string()))?;
    let later = matches!(user, spawn::UserNs::Inherit);
    if !later {
        cgroup_made()?;
    }
    let desc = Spawn { cgroups: if later { &[] } else { &procs }, cgroups_later: later, user, pid_ns, ..Spawn::default() };
    let init = spawn::spawn(desc, |chan| {
        if let Some(p) = pipes.take() {
            p.attach_child();
        }
        if let Some(h) = hub {
            h.attach_child_stdin();
        }
        let terminal = hub.and_then(|h| h.terminal_slave()).map(Stdio::Terminal);
        let stdio = match &terminal {
            Some(t) => t,
            None if matches!(opts.stdio, Stdio::Tee(..)) => &Stdio::Inherit,
            None => &opts.stdio,
        };
        let placement = init::Placement { chan, cgroups: &procs, done: Cell::new(false) };
        init::run(InitArgs { rootfs: &opts.rootfs, plan, stdio, chan, gate: None, preserve_fds: 0, no_pivot: false, placement: later.then_some(&placement) })
    })
    .map_err(SpawnError::into_failure)?;
    if later {
        if let Err(failure) = cgroup_made() {
            init.kill();
            // What the init said before it died explains more.
            let failure = init.outcome().err().unwrap_or(failure);
            init.wait();
            return Err(failure);
        }
        init.cgroups_made();
    }
    Ok(Attempt { init, pipes: pipes.take(), error: None })
}

/// Wait for our child `child` to exit while passing SIGINT, SIGTERM and SIGHUP on to the
/// process `target` names at the time of each signal (a foreground container's current run,
/// which its monitor may have restarted, or an exec'd process). Signals go through a pidfd
/// checked against the recorded start time. Returns the shell-style exit code of `child`.
pub fn wait_forwarding(child: Pid, target: &dyn Fn() -> Option<ProcRef>) -> i32 {
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
            && sig != Signal::SIGCHLD
            && let Some(t) = target()
        {
            t.signal(sig as i32);
        }
    }
}
