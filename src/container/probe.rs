//! Health checks of a running container, run by a *prober*: a process the monitor forks next to
//! each run of the container (so probing survives the CLI, as the monitor does) and kills when
//! the run ends. Each check runs in a short-lived child — an exec inside the container (joining
//! its namespaces, cgroup and seccomp filter, as `exec` does), or a TCP connect / HTTP GET from
//! inside its network namespace — that the prober waits for at most the timeout. The prober
//! writes what it found to `probe.json` in the state directory; a failed liveness (or startup)
//! probe kills the container with SIGKILL, and the monitor's restart policy does the rest.
//! The same one-shot checks run lifecycle hooks (postStart, preStop) for the caller.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::ProcRef;
use super::spawn::{self, Failure, Spawn};

/// Set in the prober by SIGTERM (`stop`): end the check in flight, with its process group, and exit.
static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
}

/// Where the prober reports: `ProbeState` as JSON.
pub const PROBE_FILE: &str = "probe.json";

/// The probes of a container (Kubernetes' liveness, readiness and startup probes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

impl Probes {
    pub fn is_empty(&self) -> bool {
        self.liveness.is_none() && self.readiness.is_none() && self.startup.is_none()
    }
}

/// One probe, with Kubernetes' timing fields (seconds) and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub action: Action,
    pub initial_delay: u32,
    pub period: u32,
    pub timeout: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// What a check does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Run a command in the container: exit 0 is success.
    Exec(Vec<String>),
    /// HTTP GET `path` on `host:port` (default host: the container's loopback, which is the pod's);
    /// a status 200-399 is success.
    Http { host: Option<String>, port: u16, path: String },
    /// A TCP connect succeeds.
    Tcp { host: Option<String>, port: u16 },
}

/// What the prober last found, for `ps` and `pod ls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeState {
    /// The startup probe has succeeded (true at once without one).
    pub started: bool,
    /// The readiness probe's verdict (true once started, without one).
    pub ready: bool,
    /// The last failure of any probe, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Why the prober killed this run (liveness or startup probe failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<String>,
}

/// What a check needs to reach the container: its init, and for exec its spec and cgroup.
pub struct Target<'a> {
    pub pid: ProcRef,
    pub spec: &'a Spec,
    pub cgroup_procs: &'a [PathBuf],
}

/// Run `action` once against `target`, at most `timeout`: Ok, or why it failed. Forks; call it
/// from a single-threaded process.
pub fn check(target: &Target, action: &Action, timeout: Duration) -> Result<(), String> {
    let spawned = spawn::spawn(Spawn::default(), |_| {
        // A group of its own: a check that times out is killed with everything it started
        // (an exec'd command inside the container included).
        // SAFETY: setpgid and prctl on ourselves; the check dies with whoever waits for it.
        unsafe {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        }
        run_in_child(target, action, timeout).map_err(|code| Failure { code, msg: String::new() })
    });
    match spawned.map(|c| Pid::from_raw(c.pid)) {
        Ok(child) => {
            // Also from here, so that the group exists whichever of us runs first.
            let _ = nix::unistd::setpgid(child, child);
            let deadline = Instant::now() + timeout;
            loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                    Ok(WaitStatus::Exited(_, c)) => {
                        return Err(match action {
                            Action::Exec(a) => format!("{} exited {c}", a.join(" ")),
                            Action::Http { port, path, .. } => format!("GET {path} on port {port}: {}", if c == 2 { "bad status" } else { "no answer" }),
                            Action::Tcp { port, .. } => format!("nothing accepts on port {port}"),
                        });
                    }
                    Ok(WaitStatus::Signaled(..)) => return Err("the check was killed".into()),
                    Ok(_) | Err(nix::Error::EINTR) => {}
                    Err(e) => return Err(format!("waiting for the check: {e}")),
                }
                let stopping = STOPPING.load(Ordering::SeqCst);
                if stopping || Instant::now() >= deadline {
                    let _ = nix::sys::signal::killpg(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(if stopping { "stopped".into() } else { format!("timed out after {}s", timeout.as_secs_f32()) });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(e) => Err(format!("starting the check: {e}")),
    }
}

/// The check itself, in its own child: Err is the exit code to report.
fn run_in_child(target: &Target, action: &Action, timeout: Duration) -> Result<(), i32> {
    match action {
        Action::Exec(args) => {
            let mut process = target.spec.process().clone().unwrap_or_default();
            process.set_args(Some(args.clone()));
            // The command's output is not the container's log.
            super::process::stdio_to_null();
            let seccomp = target.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
            match super::exec::exec(target.pid, &process, seccomp, target.cgroup_procs) {
                Ok(0) => Ok(()),
                Ok(c) => Err(c.clamp(1, 255)),
                Err(_) => Err(126),
            }
        }
        Action::Http { host, port, path } => {
            enter_netns(target.pid)?;
            let mut s = connect(host.as_deref(), *port, timeout).ok_or(1)?;
            let host = host.as_deref().unwrap_or("localhost");
            let req = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: podbox-probe\r\nAccept: */*\r\n\r\n");
            s.write_all(req.as_bytes()).map_err(|_| 1)?;
            // The status line, "HTTP/1.x NNN ...", however the server splits its writes.
            let mut head = Vec::new();
            let mut buf = [0u8; 64];
            while !head.contains(&b'\n') && head.len() < 256 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head);
            let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(2)?;
            if (200..400).contains(&status) { Ok(()) } else { Err(2) }
        }
        Action::Tcp { host, port } => {
            enter_netns(target.pid)?;
            connect(host.as_deref(), *port, timeout).map(|_| ()).ok_or(1)
        }
    }
}

fn enter_netns(pid: ProcRef) -> Result<(), i32> {
    let f = std::fs::File::open(format!("/proc/{}/ns/net", pid.pid)).map_err(|_| 1)?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|_| 1)
}

fn connect(host: Option<&str>, port: u16, timeout: Duration) -> Option<TcpStream> {
    let addr = (host.unwrap_or("127.0.0.1"), port).to_socket_addrs().ok()?.next()?;
    let s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    Some(s)
}

/// Fork the prober of one run of the container, if it has probes. It dies with the monitor
/// (PR_SET_PDEATHSIG) and is ended by `stop`.
pub fn spawn(probes: &Probes, pid: ProcRef, spec: &Spec, cgroup_procs: Vec<PathBuf>, state_dir: &Path) -> Option<Pid> {
    let state_file = state_dir.join(PROBE_FILE);
    if probes.is_empty() {
        let _ = std::fs::remove_file(&state_file);
        return None;
    }
    // A fresh run starts unstarted and unready.
    let initial = ProbeState { started: probes.startup.is_none(), ready: probes.startup.is_none() && probes.readiness.is_none(), last_failure: None, killed: None };
    let _ = crate::state::write_json(&state_file, &initial);
    let spawned = spawn::spawn(Spawn::default(), |_| {
        // SAFETY: prctl on ourselves; closing descriptors of our own table (the monitor's pipes
        // and namespace files, this spawn's channel) that the prober never uses: it opens what
        // it needs by path.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0);
        }
        let handler = nix::sys::signal::SigAction::new(nix::sys::signal::SigHandler::Handler(on_sigterm), nix::sys::signal::SaFlags::empty(), nix::sys::signal::SigSet::empty());
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &handler) };
        let target = Target { pid, spec, cgroup_procs: &cgroup_procs };
        run_prober(probes, &target, &state_file, initial);
        Ok(())
    });
    spawned.ok().map(|c| Pid::from_raw(c.pid))
}

/// End the prober of a run that has ended: SIGTERM makes it end the check in flight (with
/// everything that check started) and exit; SIGKILL if it has not within two seconds.
pub fn stop(prober: Option<Pid>) {
    let Some(p) = prober else { return };
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::EINTR) => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(p, None);
}

/// The schedule of one probe: when it is due next and its consecutive results.
struct Schedule<'a> {
    probe: &'a Probe,
    due: Instant,
    successes: u32,
    failures: u32,
}

impl<'a> Schedule<'a> {
    fn new(probe: &'a Probe, from: Instant) -> Self {
        Schedule { probe, due: from + Duration::from_secs(probe.initial_delay.into()), successes: 0, failures: 0 }
    }

    /// Run it if due: Some(true) once it reached its success threshold, Some(false) once its
    /// failure threshold; None while undecided or not due.
    fn step(&mut self, target: &Target, now: Instant, last_failure: &mut Option<String>, what: &str) -> Option<bool> {
        if now < self.due {
            return None;
        }
        self.due = now + Duration::from_secs(self.probe.period.max(1).into());
        match check(target, &self.probe.action, Duration::from_secs(self.probe.timeout.max(1).into())) {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                (self.successes >= self.probe.success_threshold.max(1)).then_some(true)
            }
            Err(e) => {
                *last_failure = Some(format!("{what} probe failed: {e}"));
                self.successes = 0;
                self.failures += 1;
                (self.failures >= self.probe.failure_threshold.max(1)).then_some(false)
            }
        }
    }
}

fn run_prober(probes: &Probes, target: &Target, state_file: &Path, mut state: ProbeState) {
    let start = Instant::now();
    let mut startup = probes.startup.as_ref().map(|p| Schedule::new(p, start));
    let mut liveness = probes.liveness.as_ref().map(|p| Schedule::new(p, start));
    let mut readiness = probes.readiness.as_ref().map(|p| Schedule::new(p, start));
    let save = |s: &ProbeState| {
        let _ = crate::state::write_json(state_file, s);
    };
    while target.pid.alive() && !STOPPING.load(Ordering::SeqCst) {
        let now = Instant::now();
        let before = state.clone();
        let mut kill = None;
        if !state.started {
            // The startup probe holds the others back; they start counting once it succeeded.
            match startup.as_mut().and_then(|s| s.step(target, now, &mut state.last_failure, "startup")) {
                Some(true) => {
                    state.started = true;
                    state.ready = readiness.is_none();
                    let now = Instant::now();
                    liveness = probes.liveness.as_ref().map(|p| Schedule::new(p, now));
                    readiness = probes.readiness.as_ref().map(|p| Schedule::new(p, now));
                }
                Some(false) => kill = Some(state.last_failure.clone().unwrap_or_default()),
                None => {}
            }
        } else {
            if let Some(false) = liveness.as_mut().and_then(|s| s.step(target, now, &mut state.last_failure, "liveness")) {
                kill = Some(state.last_failure.clone().unwrap_or_default());
            }
            if let Some(r) = readiness.as_mut().and_then(|s| s.step(target, now, &mut state.last_failure, "readiness")) {
                state.ready = r;
            }
        }
        if let Some(why) = kill {
            state.ready = false;
            state.killed = Some(why);
            save(&state);
            target.pid.signal(libc::SIGKILL);
            return;
        }
        if state != before {
            save(&state);
        }
        let next = [startup.as_ref().filter(|_| !state.started), liveness.as_ref().filter(|_| state.started), readiness.as_ref().filter(|_| state.started)]
            .into_iter()
            .flatten()
            .map(|s| s.due)
            .min();
        let wait = next.map(|d| d.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(1));
        std::thread::sleep(wait.clamp(Duration::from_millis(10), Duration::from_millis(200)));
    }
}

/// Why the prober killed the run that just ended, if it did.
pub fn killed_reason(state_dir: &Path) -> Option<String> {
    crate::state::read_json_opt::<ProbeState>(&state_dir.join(PROBE_FILE)).ok().flatten().and_then(|s| s.killed)
}
