//! OCI `create`: set a container up to the point of exec and leave its init waiting for
//! `start`, with no podbox process in between the caller and the init.
//!
//! ```text
//! caller ──spawn──▶ intermediate (cgroup, PID namespace) ──clone(CLONE_PARENT)──▶ init …
//!                   reports the init's PID and exits
//! ```
//! The init is the caller's child (see `spawn`); when the caller exits it is reparented to the
//! caller's child subreaper (conmon, containerd-shim, or a foreground `run`), which reaps it.
//! The init runs the same path as in pod mode (`init::run`) with a `Gate`: it stops before
//! pivot_root (`Msg::HooksDue`) while the caller runs the runtime's hooks and answers
//! `Msg::HooksDone`, and again before exec (`Msg::Ready`) until `start` opens the exec FIFO.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use super::init::{self, CODE_RUNTIME, Gate, InitArgs};
use super::plan::InitPlan;
use super::spawn::{self, Msg, Spawn};
use super::{ContainerError, ProcRef, Result, Rootfs, Stdio, cgroups, namespaces, sys, userns};

pub struct CreateOptions<'a> {
    pub spec: &'a Spec,
    pub rootfs: Rootfs,
    /// `Inherit` (the caller's streams, e.g. conmon's pipes) or `Terminal`.
    pub stdio: Stdio,
    /// The FIFO (already made by the caller) that `start` opens to release the init.
    pub exec_fifo: &'a Path,
    /// `--preserve-fds` and `--no-pivot`, see `InitArgs`.
    pub preserve_fds: u32,
    pub no_pivot: bool,
}

/// Run while the init is stopped before pivot_root, given its PID: the prestart and
/// createRuntime hooks; returns the state JSON that the init hands to its own hooks.
pub type BeforePivot<'a> = &'a mut dyn FnMut(ProcRef) -> Result<String>;

/// Create the container; returns its init, waiting on the exec FIFO. Must be called while the
/// process has a single thread. On error nothing is left: the init is killed and the spec's
/// cgroup removed.
pub fn create(opts: CreateOptions, before_pivot: BeforePivot) -> Result<ProcRef> {
    let plan = InitPlan::build(opts.spec)?;
    let cgroup = cgroups::setup(opts.spec)?;
    let mut init_pid = None;
    let result = spawn_init(&opts, &plan, cgroup.as_ref(), before_pivot, &mut init_pid);
    if result.is_err() {
        if let Some(p) = init_pid {
            p.signal(libc::SIGKILL);
            p.wait_gone(std::time::Duration::from_secs(5));
        }
        if let Some(cg) = &cgroup {
            let _ = cg.remove();
        }
    }
    result
}

fn spawn_init(
    opts: &CreateOptions,
    plan: &InitPlan,
    cgroup: Option<&cgroups::Cgroup>,
    before_pivot: BeforePivot,
    init_pid: &mut Option<ProcRef>,
) -> Result<ProcRef> {
    let fifo = open(opts.exec_fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys(format!("opening {}", opts.exec_fifo.display())))?;
    let procs = cgroup.map(|c| c.procs_files()).unwrap_or_default();
    let desc = Spawn { cgroups: &procs, user: userns::spawn_step(&plan.namespaces)?, pid_ns: namespaces::pid_ns_for(&plan.namespaces.pid)?, ..Spawn::default() };
    let init = spawn::spawn(desc, |chan| {
        let gate = Gate { fifo: fifo.as_raw_fd(), chan, hooks: opts.spec.hooks().clone(), started: Cell::new(false), state_json: RefCell::new(String::new()) };
        init::run(InitArgs { rootfs: &opts.rootfs, plan, stdio: &opts.stdio, chan, gate: Some(&gate), preserve_fds: opts.preserve_fds, no_pivot: opts.no_pivot, placement: None })
    })?;
    let pid = init.proc_ref();
    *init_pid = Some(pid);
    let died = || ContainerError::StartFailed { code: CODE_RUNTIME, msg: "the container's init died while being set up".into() };
    loop {
        match init.recv().map_err(|e| ContainerError::StartFailed { code: CODE_RUNTIME, msg: e.to_string() })? {
            Some(Msg::HooksDue) => {
                let state = before_pivot(pid)?;
                init.send(&Msg::HooksDone { state }).map_err(|_| died())?;
            }
            Some(Msg::Ready) => return Ok(pid),
            Some(Msg::Error { code, msg }) => return Err(ContainerError::StartFailed { code, msg }),
            Some(other) => return Err(ContainerError::StartFailed { code: CODE_RUNTIME, msg: format!("unexpected message {other:?} from the container's init") }),
            None => return Err(died()),
        }
    }
}
