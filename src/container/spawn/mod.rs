//! The one way podbox starts a process in or near a container (the monitor, the init, the OCI
//! init and its intermediate, an exec'd process, the pause, the namespace pinner): `spawn` takes
//! a typed description — cgroups to enter, namespaces to join by descriptor or to unshare, the
//! PID namespace to be born in — and the code the child runs, and returns the child's PID, a
//! pidfd and the parent's end of the typed sync channel (`channel::Msg`).
//!
//! ```text
//! spawner ──fork──▶ child: undumpable → cgroups (dies with the spawner until in them) → setsid
//!                   → user namespace: join, or unshare and wait (MapsDue) while the spawner
//!                     writes its uid/gid maps (MapsWritten)
//!                   → setns/unshare → PID namespace ──(only if one is entered)──▶
//!                   clone(CLONE_PARENT): the process runs on as the spawner's own child, born in
//!                   that PID namespace; the intermediate reports its PID and exits
//! ```
//! With CLONE_PARENT every process spawn returns is a child of the spawner, entering a PID
//! namespace or not: the spawner holds a race-free pidfd on it and can wait for it. The user
//! namespace comes before every other, so that the namespaces made after it (the PID one
//! included) are owned by it: mounting /proc, sysfs or mqueue inside needs that.
//!
//! A new PID namespace with no user namespace to come first (a pod's containers, its pause) needs
//! no intermediate: the spawner clones the child with CLONE_NEWPID, so it is born there as PID 1
//! and goes through the same steps. That saves a fork and an exit on every container start.

pub mod channel;
pub mod pidfd;
#[cfg(test)]
mod tests;
mod user;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

pub use channel::{Channel, ChannelError, Failure, Msg};
pub use pidfd::Pidfd;
pub use user::UserNs;
use user::{answer_maps, enter_user, serve_maps};

pub use super::userns::IdRange;

pub(crate) use super::init::CODE_RUNTIME;

/// The PID namespace the process runs in. Entering one (new or joined) takes effect only for
/// children, so it costs the extra fork described above.
#[derive(Debug, Default)]
pub enum PidNs {
    /// The spawner's.
    #[default]
    Inherit,
    New,
    /// An existing one (a pod's, a running container's), opened by the spawner.
    Join(File),
}

/// What to set up in the child before its `main` runs, in this order.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// `cgroup.procs` files to write "0" to, first of all: the process is confined before it
    /// does anything else.
    pub cgroups: &'a [PathBuf],
    /// The process joins its cgroups later, itself (`join_when_made`), once the spawner, going
    /// on beside it, has made them (`Child::cgroups_made`). Until then it dies with the
    /// spawner, as any process here does until it is in its cgroups.
    pub cgroups_later: bool,
    /// A new session (setsid): the process leaves the spawner's terminal.
    pub new_session: bool,
    /// Before any other namespace: it owns those made after it.
    pub user: UserNs,
    /// Namespaces to join, in this order (a mount namespace belongs last).
    pub join: Vec<(CloneFlags, File)>,
    pub unshare: CloneFlags,
    pub pid_ns: PidNs,
}

impl Default for Spawn<'_> {
    fn default() -> Self {
        Spawn { cgroups: &[], cgroups_later: false, new_session: false, user: UserNs::Inherit, join: Vec::new(), unshare: CloneFlags::empty(), pid_ns: PidNs::Inherit }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("podbox can only fork while it has a single thread, but it has {threads} (a podbox bug: a thread was started before this fork)")]
    Threaded { threads: usize },
    #[error("{what}: {source}")]
    Sys { what: &'static str, source: nix::Error },
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The child (or its intermediate) failed before exec and said why.
    #[error(transparent)]
    Failed(#[from] Failure),
}

impl SpawnError {
    /// As a failure to report on a channel: a child's own report as it is, else exit code 1.
    pub fn into_failure(self) -> Failure {
        match self {
            SpawnError::Failed(f) => f,
            other => Failure { code: CODE_RUNTIME, msg: other.to_string() },
        }
    }
}

/// A spawned process: the spawner's child.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    /// None only on kernels without pidfd_open (before 5.3).
    pub pidfd: Option<Pidfd>,
    chan: Channel,
    /// Messages that arrived before the intermediate's report of the PID.
    early: RefCell<VecDeque<Msg>>,
}

impl Child {
    pub fn recv(&self) -> Result<Option<Msg>, ChannelError> {
        match self.early.borrow_mut().pop_front() {
            Some(m) => Ok(Some(m)),
            None => self.chan.recv(),
        }
    }

    pub fn send(&self, msg: &Msg) -> Result<(), ChannelError> {
        self.chan.send(msg)
    }

    /// Read to end-of-file (the process exec'd or exited): Err with the first error it
    /// reported, else the last PID reported (the monitor reports its init's).
    pub fn outcome(&self) -> Result<Option<i32>, Failure> {
        self.serve(|other| Err(Failure { code: CODE_RUNTIME, msg: format!("unexpected message {other:?} from a child") }))
    }

    /// `outcome`, answering the requests the process makes on the way: `answer` gets every
    /// message but `Pid` and `Error`, and what it returns is sent back (e.g. the pod's namespace
    /// pinner's `Ready` → `Go` once its namespaces are pinned). A user namespace's `MapsDue` is
    /// not among them: `spawn` answers it before it returns, as it must with an intermediate,
    /// which makes the user namespace before the PID namespace and reports the PID only after.
    pub fn serve(&self, mut answer: impl FnMut(Msg) -> Result<Option<Msg>, Failure>) -> Result<Option<i32>, Failure> {
        let broken = |e: ChannelError| Failure { code: CODE_RUNTIME, msg: e.to_string() };
        let mut pid = None;
        loop {
            match self.recv().map_err(broken)? {
                None => return Ok(pid),
                Some(Msg::Pid { pid: p }) => pid = Some(p),
                Some(Msg::Error { code, msg }) => return Err(Failure { code, msg }),
                Some(request) => {
                    if let Some(reply) = answer(request)? {
                        self.send(&reply).map_err(broken)?;
                    }
                }
            }
        }
    }

    /// `Spawn::cgroups_later`: the process's cgroups exist, it may join them (an error means it
    /// is gone: its own report says why).
    pub fn cgroups_made(&self) {
        let _ = self.chan.send(&Msg::CgroupsMade);
    }

    /// SIGKILL the process (through the pidfd where there is one: it cannot have been reused,
    /// being our unreaped child either way).
    pub fn kill(&self) {
        match &self.pidfd {
            Some(p) => {
                let _ = p.signal(libc::SIGKILL);
            }
            // SAFETY: kill(2) of our own unreaped child.
            None => unsafe {
                libc::kill(self.pid, libc::SIGKILL);
            },
        }
    }

    /// Reap the process and return how it ended (through the pidfd where there is one).
    pub fn wait(&self) -> WaitStatus {
        if let Some(Ok(s)) = self.pidfd.as_ref().map(|p| p.wait()) {
            return s;
        }
        super::process::wait_for(Pid::from_raw(self.pid))
    }

    /// The process's identity as state on disk records it.
    pub fn proc_ref(&self) -> super::ProcRef {
        super::ProcRef::of(self.pid).unwrap_or(super::ProcRef { pid: self.pid, start_time: 0 })
    }
}

/// How many threads this process has; fork copies only the calling one, so with more a child
/// could block forever on a lock another thread held (malloc's, stdout's).
pub fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

/// The one check before every fork of podbox: Err unless the process has a single thread.
/// A thread that was just joined (the network layer's netns worker) wakes its joiner a moment
/// before the kernel stops counting it, so a count above one is asked again for a little while.
pub fn assert_single_threaded() -> Result<(), SpawnError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
    loop {
        match thread_count() {
            Some(threads) if threads > 1 => {
                if std::time::Instant::now() >= deadline {
                    return Err(SpawnError::Threaded { threads });
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            _ => return Ok(()),
        }
    }
}

/// Start a process as `desc` describes, running `main` in it. `main` returns only on failure
/// or when the process has nothing to exec (then it exits 0); an Err is sent to the spawner
/// and becomes the exit code. Errors before the process exists, or of an intermediate, are
/// returned here; errors of the process itself arrive on the channel (`Child::outcome`).
pub fn spawn<F>(desc: Spawn, main: F) -> Result<Child, SpawnError>
where
    F: FnOnce(&Channel) -> Result<(), Failure>,
{
    assert_single_threaded()?;
    let (parent_end, child_end) = Channel::pair()?;
    let spawner = std::process::id() as i32;
    let born_in_pid_ns = born_in_new_pid_ns(&desc);
    let intermediate = !matches!(desc.pid_ns, PidNs::Inherit) && !born_in_pid_ns;
    // SAFETY: the process has a single thread (checked above), so the child may allocate and
    // run ordinary Rust code until it execs or exits. The clone is fork-like (no CLONE_VM, no
    // new stack), as the intermediate's below.
    let forked = if born_in_pid_ns { unsafe { clone_into_new_pid_ns() } } else { unsafe { fork() } };
    match forked.map_err(|source| SpawnError::Sys { what: "fork", source })? {
        ForkResult::Child => {
            drop(parent_end);
            child_side(&desc, spawner, &child_end, main)
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            let maps = match desc.user {
                UserNs::New { uid, gid } => Some((uid, gid)),
                _ => None,
            };
            if !intermediate {
                // Without an intermediate the child's request for maps is its first message (or
                // it failed before): answered here, so that a caller never sees it.
                let early = match &maps {
                    Some((uid, gid)) => serve_maps(&parent_end, child.as_raw(), uid, gid)?,
                    None => VecDeque::new(),
                };
                let pidfd = Pidfd::open(child.as_raw()).ok();
                return Ok(Child { pid: child.as_raw(), pidfd, chan: parent_end, early: RefCell::new(early) });
            }
            let report = await_pid(&parent_end, child.as_raw(), maps.as_ref());
            let _ = waitpid(child, None);
            let (pid, early) = report?;
            // Our child (CLONE_PARENT) and not reaped: the PID cannot have been reused.
            let pidfd = Pidfd::open(pid).ok();
            Ok(Child { pid, pidfd, chan: parent_end, early: RefCell::new(early) })
        }
    }
}

/// Whether the process can be cloned straight into its new PID namespace, without an
/// intermediate: when no user namespace is to be made or joined first (which must own the PID
/// namespace, so it has to exist before it).
fn born_in_new_pid_ns(desc: &Spawn) -> bool {
    let user_first = !matches!(desc.user, UserNs::Inherit) || desc.unshare.contains(CloneFlags::CLONE_NEWUSER) || desc.join.iter().any(|(f, _)| f.contains(CloneFlags::CLONE_NEWUSER));
    matches!(desc.pid_ns, PidNs::New) && !user_first
}

/// fork, but the child is born as PID 1 of a new PID namespace (clone with CLONE_NEWPID).
///
/// # Safety
/// As fork: the caller must be single-threaded.
unsafe fn clone_into_new_pid_ns() -> nix::Result<ForkResult> {
    // SAFETY: a fork-like clone; see the caller.
    let rc = unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_NEWPID | libc::SIGCHLD, 0, 0, 0, 0) };
    match rc {
        0 => Ok(ForkResult::Child),
        pid if pid > 0 => Ok(ForkResult::Parent { child: Pid::from_raw(pid as i32) }),
        _ => Err(nix::Error::last()),
    }
}

/// The intermediate's report of the PID it cloned, answering the intermediate's request for
/// user namespace maps on the way (`child` is the intermediate: it made the namespace, before
/// the PID namespace); what the process itself sent before it (it may run ahead of the
/// intermediate) is kept for `Child::recv`.
fn await_pid(chan: &Channel, child: i32, maps: Option<&(Vec<IdRange>, Vec<IdRange>)>) -> Result<(i32, VecDeque<Msg>), SpawnError> {
    let mut early = VecDeque::new();
    let mut maps = maps;
    loop {
        match chan.recv()? {
            Some(Msg::Pid { pid }) => return Ok((pid, early)),
            Some(Msg::MapsDue) => match maps.take() {
                Some((uid, gid)) => answer_maps(chan, child, uid, gid),
                None => early.push_back(Msg::MapsDue),
            },
            Some(m) => early.push_back(m),
            None => {
                let failure = early.into_iter().find_map(|m| match m {
                    Msg::Error { code, msg } => Some(Failure { code, msg }),
                    _ => None,
                });
                return Err(failure.unwrap_or_else(|| Failure { code: CODE_RUNTIME, msg: "the process entering the PID namespace died before it forked".into() }).into());
            }
        }
    }
}

fn child_side<F>(desc: &Spawn, spawner: i32, chan: &Channel, main: F) -> !
where
    F: FnOnce(&Channel) -> Result<(), Failure>,
{
    let born_in_pid_ns = born_in_new_pid_ns(desc);
    if let Err(msg) = enter(desc, spawner, chan, born_in_pid_ns) {
        chan.fail(CODE_RUNTIME, &msg)
    }
    crate::trace::step("spawn: child entered (cgroups, session, namespaces)");
    if !matches!(desc.pid_ns, PidNs::Inherit) && !born_in_pid_ns {
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack) of this single-threaded
        // process; CLONE_PARENT makes the new process the spawner's child, born in the PID
        // namespace entered above.
        let rc = unsafe { libc::syscall(libc::SYS_clone, libc::CLONE_PARENT | libc::SIGCHLD, 0, 0, 0, 0) };
        if rc < 0 {
            chan.fail(CODE_RUNTIME, &format!("forking into the PID namespace: {}", std::io::Error::last_os_error()))
        }
        if rc > 0 {
            let _ = chan.send(&Msg::Pid { pid: rc as i32 });
            // SAFETY: _exit ends the intermediate without running the spawner's destructors.
            unsafe { libc::_exit(0) }
        }
        if desc.cgroups_later {
            // A clone starts without a parent-death signal: the process is not in its cgroups
            // yet, so it must die with the spawner (its parent, through CLONE_PARENT) as the
            // intermediate would have. A spawner gone before the prctl is seen on the channel,
            // whose other end only the spawner holds.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            if chan.peer_closed() {
                // SAFETY: _exit in a forked child whose spawner is gone.
                unsafe { libc::_exit(CODE_RUNTIME) }
            }
        }
    }
    match main(chan) {
        // SAFETY: as above, for a child with nothing left to do.
        Ok(()) => unsafe { libc::_exit(0) },
        Err(Failure { code, msg }) => chan.fail(code, &msg),
    }
}

/// The child's steps before `main` (or before the clone into a PID namespace); `born_in_pid_ns`:
/// the child already is in its new PID namespace.
fn enter(desc: &Spawn, spawner: i32, chan: &Channel, born_in_pid_ns: bool) -> Result<(), String> {
    // Not dumpable before it joins anything of a container (see sealed_exe); exec makes the
    // program dumpable again.
    super::sealed_exe::set_undumpable().map_err(|e| format!("PR_SET_DUMPABLE 0: {e}"))?;
    // Until it is in its cgroups only the spawner knows it: it dies with the spawner, so that
    // removal, which kills the spawner (a monitor) and then the cgroup, misses nothing.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // Born in a PID namespace it sees no parent (getppid is 0): the spawner is gone when its
    // end of the channel is, as only the spawner holds it.
    let spawner_gone = if born_in_pid_ns { chan.peer_closed() } else { nix::unistd::getppid().as_raw() != spawner };
    if spawner_gone {
        // SAFETY: the spawner died before the prctl; end quietly.
        unsafe { libc::_exit(CODE_RUNTIME) }
    }
    join_cgroups(desc.cgroups)?;
    if !desc.cgroups_later {
        // SAFETY: as above; from here on its cgroup finds it.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    }
    if desc.new_session {
        let _ = nix::unistd::setsid();
    }
    enter_user(&desc.user, chan)?;
    for (flag, ns) in &desc.join {
        nix::sched::setns(ns.as_fd(), *flag).map_err(|e| format!("joining the {} namespace: {e}", ns_name(*flag)))?;
    }
    if !desc.unshare.is_empty() {
        nix::sched::unshare(desc.unshare).map_err(|e| format!("creating namespaces (unshare {:?}): {e}", desc.unshare))?;
    }
    match &desc.pid_ns {
        PidNs::Inherit => Ok(()),
        PidNs::New if born_in_pid_ns => Ok(()),
        PidNs::New => nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("creating a PID namespace: {e}")),
        PidNs::Join(ns) => nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|e| format!("joining the PID namespace: {e}")),
    }
}

/// The process's side of `Spawn::cgroups_later`: wait until the spawner has made the cgroups
/// whose `cgroup.procs` files are `cgroups`, join them, and stop dying with the spawner (its
/// cgroup finds it now). Exits quietly if the spawner died or gave up first (it kills the
/// process then anyway).
pub fn join_when_made(chan: &Channel, cgroups: &[PathBuf]) -> Result<(), String> {
    if !matches!(chan.recv(), Ok(Some(Msg::CgroupsMade))) {
        // SAFETY: _exit in a forked child whose spawner is gone or has given up on it.
        unsafe { libc::_exit(CODE_RUNTIME) }
    }
    join_cgroups(cgroups)?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    Ok(())
}

/// Join each cgroup whose `cgroup.procs` is listed, in order (see `join_cgroup`).
fn join_cgroups(cgroups: &[PathBuf]) -> Result<(), String> {
    for procs in cgroups {
        join_cgroup(procs).map_err(|e| format!("joining cgroup {}: {e}", procs.display()))?;
    }
    Ok(())
}

/// Move this (single-threaded, freshly forked) process into the cgroup whose `cgroup.procs` is
/// `procs`. In a v1 hierarchy it writes "0" to the sibling `tasks` file instead: the kernel
/// moves just the calling thread then, without taking the global threadgroup lock for writing,
/// whose RCU grace period makes a `cgroup.procs` write cost 2-15 ms per process started (as
/// does writing any PID but 0, even to `tasks`: so every process joins by itself). With one
/// thread, moving the thread is moving the process (its cgroup.procs lists it, its children are
/// born in it). cgroup2 has no `tasks` file (its cgroup.threads is for threaded subtrees only):
/// there the write goes to `cgroup.procs` as before.
fn join_cgroup(procs: &std::path::Path) -> std::io::Result<()> {
    let tasks = procs.with_file_name("tasks");
    match std::fs::OpenOptions::new().write(true).open(&tasks) {
        Ok(mut f) => std::io::Write::write_all(&mut f, b"0"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::write(procs, "0"),
        Err(e) => Err(e),
    }
}

fn ns_name(flag: CloneFlags) -> &'static str {
    [
        (CloneFlags::CLONE_NEWNET, "network"),
        (CloneFlags::CLONE_NEWIPC, "IPC"),
        (CloneFlags::CLONE_NEWUTS, "UTS"),
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        (CloneFlags::CLONE_NEWUSER, "user"),
        (CloneFlags::CLONE_NEWPID, "PID"),
    ]
    .iter()
    .find(|(f, _)| *f == flag)
    .map_or("", |(_, n)| n)
}
