//! OCI `create`: set a container up to the point of exec and leave its init waiting for
//! `start`, with no podbox process in between the caller and the init.
//!
//! ```text
//! caller ──fork──▶ intermediate (setns/unshare of the PID namespace) ──fork──▶ init …
//!                  reports the init's PID and exits
//! ```
//! The intermediate exits at once, so the init is reparented to the caller's child subreaper
//! (conmon, containerd-shim, or a foreground `run`), which reaps it. The init runs the same path
//! as in pod mode (`init::run`) with a `Gate`: it stops before pivot_root while the caller runs
//! the runtime's hooks, and again before exec until `start` opens the exec FIFO.

use std::cell::{Cell, RefCell};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};
use oci_spec::runtime::Spec;

use super::init::{self, CODE_RUNTIME, Gate, InitArgs};
use super::{ContainerError, ProcRef, Result, Rootfs, Stdio, cgroups, monitor, namespaces, seccomp, sync, sys, userns};

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
    let plan = namespaces::plan(opts.spec)?;
    init::check_sysctls(opts.spec, &plan)?;
    let filters = seccomp::compile(opts.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()))?;
    let cgroup = cgroups::setup(opts.spec)?;
    let mut init_pid = None;
    let result = fork_init(&opts, &plan, &filters, cgroup.as_ref(), before_pivot, &mut init_pid);
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

fn fork_init(
    opts: &CreateOptions,
    plan: &namespaces::Plan,
    filters: &[seccompiler::BpfProgram],
    cgroup: Option<&cgroups::Cgroup>,
    before_pivot: BeforePivot,
    init_pid: &mut Option<ProcRef>,
) -> Result<ProcRef> {
    let fifo = open(opts.exec_fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys(format!("opening {}", opts.exec_fifo.display())))?;
    let (go_r, go_w) = sync::pipe().map_err(sys("creating the hooks pipe"))?;
    let (r, w) = sync::pipe().map_err(sys("creating sync pipe"))?;
    // SAFETY: the caller is single-threaded; the children run ordinary Rust code until exec/exit.
    let intermediate = match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(r);
            drop(go_w);
            intermediate_main(opts, plan, filters, cgroup, &fifo, &go_r, w)
        }
        ForkResult::Parent { child } => child,
    };
    drop(w);
    drop(go_r);
    let _ = waitpid(intermediate, None);
    let mut lines = BufReader::new(std::fs::File::from(r)).lines();
    let mut go = std::fs::File::from(go_w);
    // The init and the intermediate share the pipe: the init may ask for its hooks before the
    // intermediate has reported the init's PID. The init waits for the answer, so the hooks
    // simply run once both lines are in.
    let mut hooks_asked = false;
    loop {
        let Some(Ok(line)) = lines.next() else {
            return Err(ContainerError::StartFailed { code: CODE_RUNTIME, msg: "the container's init died while being set up".into() });
        };
        if let Some(p) = line.strip_prefix("pid ") {
            let pid: i32 = p.trim().parse().unwrap_or(0);
            *init_pid = ProcRef::of(pid);
        } else if let Some(rest) = line.strip_prefix("err ") {
            let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            return Err(ContainerError::StartFailed { code: code.parse().unwrap_or(CODE_RUNTIME), msg: msg.to_string() });
        } else if line == "hooks" {
            hooks_asked = true;
        } else if line == "ready" {
            return init_pid.ok_or_else(|| ContainerError::StartFailed { code: CODE_RUNTIME, msg: "the init's PID was not reported".into() });
        }
        if hooks_asked && let Some(pid) = *init_pid {
            hooks_asked = false;
            let state = before_pivot(pid)?;
            go.write_all(format!("{}\n", state.replace('\n', " ")).as_bytes()).map_err(super::io("answering the init"))?;
        }
    }
}

fn intermediate_main(
    opts: &CreateOptions,
    plan: &namespaces::Plan,
    filters: &[seccompiler::BpfProgram],
    cgroup: Option<&cgroups::Cgroup>,
    fifo: &OwnedFd,
    go: &OwnedFd,
    w: OwnedFd,
) -> ! {
    let fd = w.as_raw_fd();
    // Not dumpable before it enters any namespace of the container (see sealed_exe).
    if let Err(e) = super::sealed_exe::set_undumpable() {
        sync::fail(fd, CODE_RUNTIME, &format!("PR_SET_DUMPABLE 0: {e}"));
    }
    if let Err(e) = namespaces::prepare_pid(&plan.pid) {
        sync::fail(fd, CODE_RUNTIME, &e.to_string());
    }
    let userns = userns::handshake(plan).unwrap_or_else(|e| sync::fail(fd, CODE_RUNTIME, &e.to_string()));
    // Single-threaded (see userns::fork).
    match userns::fork(plan, &userns) {
        Ok(ForkResult::Child) => {
            monitor::join_cgroups(cgroup.map(|c| c.procs_files()).unwrap_or_default().iter(), fd);
            if let Err(e) = userns::enter(plan, userns) {
                sync::fail(fd, CODE_RUNTIME, &e.to_string());
            }
            let gate = Gate {
                fifo: fifo.as_raw_fd(),
                go: go.as_raw_fd(),
                sync_fd: fd,
                hooks: opts.spec.hooks().clone(),
                started: Cell::new(false),
                state_json: RefCell::new(String::new()),
            };
            init::run(InitArgs { spec: opts.spec, rootfs: &opts.rootfs, plan, stdio: &opts.stdio, sync_fd: fd, seccomp: filters, gate: Some(&gate), preserve_fds: opts.preserve_fds, no_pivot: opts.no_pivot })
        }
        Ok(ForkResult::Parent { child }) => {
            userns::answer(plan, userns, child);
            sync::send(fd, &format!("pid {}\n", child.as_raw()));
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(0) }
        }
        Err(e) => sync::fail(fd, CODE_RUNTIME, &format!("fork: {e}")),
    }
}
