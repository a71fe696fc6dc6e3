//! The container's init, from fork to exec: executes the caller's `InitPlan` through the `Kernel`
//! seam — namespaces, root file system, hostname, sysctls, rlimits, user, capabilities,
//! no_new_privs, seccomp, then exec of `process.args`. Any failure is sent to the caller over the
//! sync channel (`spawn::Msg::Error`) and ends the process with the shell's code for it.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::RawFd;

use super::spawn::{Channel, Msg};
use std::path::{Path, PathBuf};

use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};

use super::kernel::Kernel;
use super::plan::{InitPlan, ProcessPlan};
/// Where the OCI layer looks for it (it moved to the plan with the capability parsing).
pub use super::plan::unraisable_ambient;
use super::{ContainerError, Result, Rootfs, Stdio, io, rootfs, sys};

/// Exit codes of a failed start, as shells and other runtimes use them.
pub const CODE_NOT_FOUND: i32 = 127;
pub const CODE_NOT_EXECUTABLE: i32 = 126;
pub const CODE_RUNTIME: i32 = 1;

/// Everything the init needs, prepared by the caller before fork.
pub struct InitArgs<'a> {
    pub rootfs: &'a Rootfs,
    /// Made by the caller from the spec before fork (`InitPlan::build`); the init reads nothing else of it.
    pub plan: &'a InitPlan,
    pub stdio: &'a Stdio,
    /// The child's end of the sync channel (CLOEXEC): errors before exec go here.
    pub chan: &'a Channel,
    /// OCI mode: stop for the runtime's hooks and for `start`; None in pod mode.
    pub gate: Option<&'a Gate<'a>>,
    /// How many descriptors from 3 on the program inherits (`--preserve-fds`, e.g. sockets
    /// of socket activation); every other descriptor above stdio is closed at exec.
    pub preserve_fds: u32,
    /// `--no-pivot`: enter the root with MS_MOVE + chroot (for a root on ramfs, where
    /// pivot_root fails); the old root stays reachable to a process with CAP_SYS_CHROOT.
    pub no_pivot: bool,
    /// Pod mode: the init joins its cgroups once the monitor, going on beside it, has made them;
    /// None: it joined them at birth.
    pub placement: Option<&'a Placement<'a>>,
}

/// The init's side of spawn's `cgroups_later`. The caller of `monitor::start` makes the
/// container's cgroup while the monitor starts the init and the init makes its namespaces and
/// root file system: the same kernel work as making the cgroup first, done beside the init's
/// instead of before it (a third of a millisecond per start with a dozen v1 hierarchies; the
/// caller's CPU is idle otherwise, and the init is usually placed on its monitor's). The init
/// joins it once made (`in_cgroups`), before anything of the container can see or depend on
/// its cgroups (a cgroup mount, the cgroup namespace, rooted where the init is when it is made,
/// so made only then, as runc does) and before it leaves the host's file system for the
/// container's root. Until then the init's own set-up is charged to the monitor's cgroup, and
/// the init dies with the monitor.
pub struct Placement<'a> {
    /// The init's end of its sync channel, on which the monitor relays `CgroupsMade`.
    pub chan: &'a Channel,
    /// The `cgroup.procs` files to join, the container's own first.
    pub cgroups: &'a [PathBuf],
    pub done: Cell<bool>,
}

/// OCI mode (`create` … `start`): the init stops twice for the runtime. Before pivot_root it
/// asks the caller to run the prestart and createRuntime hooks and receives the state JSON back,
/// then runs the createContainer hooks itself (they belong in the container's namespaces, with
/// paths of the runtime's); just before exec it blocks opening the exec FIFO for writing until
/// `start` opens it for reading, then runs the startContainer hooks.
pub struct Gate<'a> {
    /// O_PATH descriptor of the exec FIFO, opened by the caller: after pivot_root the FIFO's
    /// path no longer resolves, so it is reopened through /proc/self/fd.
    pub fifo: RawFd,
    /// The sync channel: `HooksDue` is answered with `HooksDone { state }`.
    pub chan: &'a Channel,
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Set once `start` has released the init: its caller is gone, so later errors can only go
    /// to the container's stderr (which its supervisor logs).
    pub started: Cell<bool>,
    pub state_json: RefCell<String>,
}

/// O_PATH descriptor of the runtime's `/proc/self/fd`, kept where the container's root has no
/// /proc (a chroot without a mount namespace) to reopen the exec FIFO through; -1 if unused. A
/// static of the (single-threaded) init process rather than a field of `Gate`.
static PROC_FD_DIR: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

impl Gate<'_> {
    fn before_pivot(&self) -> Result<()> {
        let gave_up = || ContainerError::StartFailed { code: CODE_RUNTIME, msg: "the runtime gave up on the container during its hooks".into() };
        self.chan.send(&Msg::HooksDue).map_err(|_| gave_up())?;
        match self.chan.recv() {
            Ok(Some(Msg::HooksDone { state })) => *self.state_json.borrow_mut() = state,
            _ => return Err(gave_up()),
        }
        super::hooks::run("createContainer", self.hooks.as_ref().and_then(|h| h.create_container().as_ref()), &self.state_json.borrow())
    }

    fn wait_for_start(&self) -> Result<()> {
        let _ = self.chan.send(&Msg::Ready);
        let path = format!("/proc/self/fd/{}", self.fifo);
        // Blocks until `start` opens the FIFO for reading.
        let fifo: std::fs::File = match PROC_FD_DIR.load(std::sync::atomic::Ordering::Relaxed) {
            -1 => std::fs::OpenOptions::new().write(true).open(&path).map_err(io(format!("opening the exec FIFO through {path} (the container needs /proc mounted for `start`)")))?,
            dir => {
                // SAFETY: `dir` is the descriptor `chroot_without_mount_ns` opened and never closed.
                let dir = unsafe { std::os::fd::BorrowedFd::borrow_raw(dir) };
                nix::fcntl::openat(dir, self.fifo.to_string().as_str(), nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                    .map_err(sys("opening the exec FIFO through the runtime's /proc/self/fd"))?
                    .into()
            }
        };
        self.started.set(true);
        let _ = std::io::Write::write_all(&mut &fifo, b"0");
        let state = match serde_json::from_str::<serde_json::Value>(&self.state_json.borrow()) {
            Ok(mut v) => {
                v["status"] = "running".into();
                v.to_string()
            }
            Err(_) => self.state_json.borrow().clone(),
        };
        super::hooks::run("startContainer", self.hooks.as_ref().and_then(|h| h.start_container().as_ref()), &state)
    }
}

/// Run in the forked init; never returns.
pub fn run(args: InitArgs) -> ! {
    let err = match execute(&super::kernel::Linux, &args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let (code, msg) = match &err {
        ContainerError::StartFailed { code, msg } => (*code, msg.clone()),
        other => (CODE_RUNTIME, other.to_string()),
    };
    if args.gate.is_some_and(|g| g.started.get()) {
        eprintln!("podbox: {msg}");
        // SAFETY: _exit in a forked child.
        unsafe { libc::_exit(code) }
    }
    args.chan.fail(code, &msg)
}

/// The init's steps, in order, through `k`: the plan was made (and the spec checked) by the
/// caller before fork. In a user namespace the init becomes its root right after
/// `redirect_stdio`, before the other namespaces are entered.
pub(crate) fn execute<K: Kernel>(k: &K, a: &InitArgs) -> Result<Infallible> {
    // Not dumpable before it joins or creates the container's namespaces: a container process
    // must not open the init's /proc/PID/exe (CVE-2019-5736); exec makes the program dumpable.
    k.set_undumpable()?;
    k.redirect_stdio(a.stdio)?;
    // After the log is open (as the host's root): what the init makes from here on is the
    // container's.
    if a.plan.namespaces.user.is_some() {
        k.become_root()?;
    }
    let deferred = if a.placement.is_some() { nix::sched::CloneFlags::CLONE_NEWCGROUP } else { nix::sched::CloneFlags::empty() };
    enter_namespaces(k, a.plan, deferred)?;
    crate::trace::step("init: namespaces");
    if let Some(adj) = a.plan.oom_score_adj {
        k.write_proc(Path::new("/proc/self/oom_score_adj"), &adj.to_string(), &format!("setting process.oomScoreAdj {adj}"))?;
    }
    // Without a mount namespace of its own the process keeps the caller's mounts and is only
    // chrooted (namespaces::plan refused every field that would need a mount).
    let root = if a.plan.namespaces.mount_ns { Some(prepare_rootfs(k, a)?) } else { None };
    crate::trace::step("init: root, mounts, devices");
    // While the host's cgroup files are still in reach.
    in_cgroups(k, a)?;
    if let Some(g) = a.gate {
        g.before_pivot()?;
    }
    match &root {
        Some(root) if a.no_pivot => k.move_root(root)?,
        Some(root) => k.pivot_root(root)?,
        None => chroot_without_mount_ns(k, a)?,
    }
    for (name, value) in &a.plan.sysctls {
        let path = PathBuf::from("/proc/sys").join(name.replace('.', "/"));
        k.write_proc(&path, value, &format!("setting sysctl {name}={value}"))?;
    }
    if root.is_some() {
        k.finish_rootfs(&a.plan.rootfs)?;
        // Last: masked and read-only paths are bind mounts, which an unbindable tree refuses.
        k.set_root_propagation(a.plan.rootfs.propagation)?;
    }
    crate::trace::step("init: pivot, masked and read-only paths");
    run_process(k, &a.plan.process, a.gate, a.preserve_fds)
}

/// Once: join the cgroups once the monitor has made them (see `Placement`), then make the
/// cgroup namespace that was deferred for it.
fn in_cgroups<K: Kernel>(k: &K, a: &InitArgs) -> Result<()> {
    let Some(p) = a.placement else { return Ok(()) };
    if p.done.replace(true) {
        return Ok(());
    }
    super::spawn::join_when_made(p.chan, p.cgroups).map_err(|msg| ContainerError::StartFailed { code: CODE_RUNTIME, msg })?;
    crate::trace::step("init: in its cgroups");
    if a.plan.namespaces.new.contains(nix::sched::CloneFlags::CLONE_NEWCGROUP) {
        k.unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)?;
    }
    Ok(())
}

/// Mount the root, the spec's mounts and the device nodes; returns the directory to pivot into.
fn prepare_rootfs<K: Kernel>(k: &K, a: &InitArgs) -> Result<PathBuf> {
    let plan = &a.plan.rootfs;
    let root = k.mount_root(a.rootfs, plan.propagation)?;
    // Before any of the spec's mounts is made, so that a refused one leaves the image untouched.
    for m in &plan.mounts {
        k.check_mount_destination(&root, m)?;
    }
    // Every destination below is resolved inside this handle on the root, not by path.
    let in_root = k.open_root(&root)?;
    for m in &plan.mounts {
        if m.kind == super::mounts::MountKind::Cgroup {
            // It shows the cgroups the init is in, through the namespace made there.
            in_cgroups(k, a)?;
        }
        k.mount(&in_root, m, plan.cgroupns)?;
    }
    k.create_devices(&in_root, &plan.devices)?;
    Ok(root)
}

/// Join, then create the namespaces but `deferred` ones; a new network namespace gets `lo` up,
/// a new UTS one the spec's names.
fn enter_namespaces<K: Kernel>(k: &K, plan: &InitPlan, deferred: nix::sched::CloneFlags) -> Result<()> {
    k.join_namespaces(&plan.namespaces.join)?;
    k.unshare(plan.namespaces.new - deferred)?;
    if plan.namespaces.new.contains(nix::sched::CloneFlags::CLONE_NEWNET) {
        // A new network namespace starts with `lo` down; engines (podman's --network none,
        // a pod's infra container) expect localhost to work, as runc provides it.
        k.loopback_up()?;
    }
    if let Some(h) = &plan.hostname {
        k.sethostname(h)?;
    }
    if let Some(d) = &plan.domainname {
        k.setdomainname(d)?;
    }
    Ok(())
}

/// No mount namespace (OCI mode): runc and crun still make the spec's mounts — in the caller's
/// mount namespace, where they stay behind — and chroot into `root.path`. podbox makes no mount
/// (the OCI layer drops them with a warning) and only chroots, so the process runs on its bundle's
/// root file system and the caller's mounts are left as they were. A chroot confines nothing
/// here: the process shares every mount of the caller anyway.
fn chroot_without_mount_ns<K: Kernel>(k: &K, a: &InitArgs) -> Result<()> {
    let Rootfs::Plain(path) = a.rootfs else { return Ok(()) };
    if a.gate.is_some() {
        // `start` is awaited after the chroot: keep the runtime's /proc/self/fd at hand.
        let dir = nix::fcntl::open("/proc/self/fd", nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(sys("opening /proc/self/fd for the exec FIFO"))?;
        PROC_FD_DIR.store(std::os::fd::IntoRawFd::into_raw_fd(dir), std::sync::atomic::Ordering::Relaxed);
    }
    k.chroot(path)
}

/// The last steps of both the init and an exec'd process: rlimits, then `become_process`.
pub fn run_process<K: Kernel>(k: &K, p: &ProcessPlan, gate: Option<&Gate>, preserve_fds: u32) -> Result<Infallible> {
    for l in &p.rlimits {
        k.setrlimit(l)?;
    }
    // Resolve before dropping privileges: the lookup may need to read directories as root, the
    // exec itself is then checked with the container user's rights.
    let exe = k.resolve_executable(&p.argv[0], &p.env, &p.cwd)?;
    become_process(k, p, &exe, gate, preserve_fds)
}

/// User and capabilities, working directory, no_new_privs, seccomp, exec. seccomp comes last
/// so that its filter need not allow podbox's own setup; only without no_new_privs must it be
/// installed earlier, while the process still has CAP_SYS_ADMIN (as runc does). With a `gate`
/// (OCI mode) the process waits for `start` as late as possible, so that `create` has checked
/// everything it can.
fn become_process<K: Kernel>(k: &K, p: &ProcessPlan, exe: &Path, gate: Option<&Gate>, preserve_fds: u32) -> Result<Infallible> {
    k.umask(p.user.umask);
    if !p.no_new_privs && !p.seccomp.is_empty() {
        k.load_seccomp(&p.seccomp)?;
    }
    switch_user(k, p)?;
    k.chdir(&p.cwd)?;
    if p.no_new_privs {
        k.set_no_new_privs()?;
    }
    // Every inherited descriptor but 0-2 and the preserved ones (the sync channel is CLOEXEC and
    // opened after them) is closed at exec.
    k.cloexec_from(3 + preserve_fds)?;
    if let Some(g) = gate {
        g.wait_for_start()?;
    }
    if p.no_new_privs && !p.seccomp.is_empty() {
        k.load_seccomp(&p.seccomp)?;
    }
    crate::trace::step("init: process (rlimits, user, capabilities, seccomp)");
    k.exec(exe, &p.argv, &p.env)
}

/// Groups, gid, uid and capability sets, in the order that keeps the needed capabilities
/// until the end: bounding set first, uid switch with KEEPCAPS, then the exact sets, ambient last.
fn switch_user<K: Kernel>(k: &K, p: &ProcessPlan) -> Result<()> {
    use caps::CapSet;
    if let Some(c) = &p.caps {
        k.limit_bounding(&c.bounding)?;
    }
    // Without KEEPCAPS the uid switch would clear the permitted set.
    k.set_keepcaps(true)?;
    k.setgroups(&p.user.additional_gids)?;
    k.setresgid(p.user.gid)?;
    k.setresuid(p.user.uid)?;
    k.set_keepcaps(false)?;
    if let Some(c) = &p.caps {
        k.set_caps(CapSet::Inheritable, &c.inheritable)?;
        k.set_caps(CapSet::Effective, &c.effective)?;
        k.set_caps(CapSet::Permitted, &c.permitted)?;
        k.clear_ambient();
        let mut ambient: Vec<_> = c.ambient.iter().copied().collect();
        ambient.sort_by_key(|c| c.index());
        for cap in ambient {
            k.raise_ambient(cap)?;
        }
    }
    Ok(())
}

pub(crate) fn redirect_stdio(stdio: &Stdio) -> Result<()> {
    if let Stdio::Terminal(slave) = stdio {
        return super::terminal::attach(*slave);
    }
    if let Stdio::Log(path) = stdio {
        rootfs::ensure_parent(path)?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(format!("opening log {}", path.display())))?;
        let null = std::fs::File::open("/dev/null").map_err(io("opening /dev/null"))?;
        dup2_stdin(&null).map_err(sys("redirecting stdin"))?;
        dup2_stdout(&log).map_err(sys("redirecting stdout"))?;
        dup2_stderr(&log).map_err(sys("redirecting stderr"))?;
    }
    Ok(())
}

/// Give the program the signal state a freshly booted process has: every disposition default
/// and nothing blocked. exec resets handlers but keeps "ignored" and the mask, and podbox's own
/// (the Rust runtime ignores SIGPIPE; a foreground `run` blocks the signals it forwards) would
/// otherwise leak into every container: `yes | head` would never end.
fn default_signals() {
    // The kernel's struct sigaction with every field zero is SIG_DFL, no flags, empty mask,
    // whatever the architecture's field order. The raw syscall also reaches signals 32 and 33,
    // which the C library keeps for itself (and refuses to change).
    let dfl = [0u64; 8];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads our zeroed buffer (larger than the kernel's struct) and
        // writes nothing (old action NULL); SIG_DFL has no memory effects.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, dfl.as_ptr(), std::ptr::null_mut::<u64>(), 8usize) };
    }
    // SAFETY: an empty set we own, passed to sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// `argv0` as execvp would find it, searching PATH from the container's environment. A path
/// (with a `/`) must exist, relative ones below `cwd` where the process will run: found here,
/// a missing command fails `create` rather than `start`.
pub fn resolve_executable(argv0: &str, env: &[String], cwd: &Path) -> Result<PathBuf> {
    if argv0.contains('/') {
        return match std::fs::metadata(cwd.join(argv0)) {
            Ok(m) if m.is_dir() => Err(ContainerError::StartFailed { code: CODE_NOT_EXECUTABLE, msg: format!("executable `{argv0}` is a directory") }),
            Ok(_) => Ok(PathBuf::from(argv0)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ContainerError::StartFailed { code: CODE_NOT_FOUND, msg: format!("executable file `{argv0}` not found: no such file or directory in the container") }),
            // Not ours to judge (e.g. a directory the container's user may search but root may
            // not): exec decides.
            Err(_) => Ok(PathBuf::from(argv0)),
        };
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(argv0);
        if let Ok(m) = std::fs::metadata(&cand)
            && m.is_file() {
                return Ok(cand);
            }
    }
    Err(ContainerError::StartFailed { code: CODE_NOT_FOUND, msg: format!("executable file `{argv0}` not found in $PATH ({path})") })
}

fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter().map(|s| CString::new(s.as_str()).map_err(|_| ContainerError::Spec { field: "process".into(), msg: format!("NUL byte in {s:?}") })).collect()
}

pub fn exec(exe: &Path, argv: &[String], env: &[String]) -> Result<Infallible> {
    let exe_c = CString::new(exe.as_os_str().as_encoded_bytes()).map_err(|_| ContainerError::Spec { field: "process.args".into(), msg: "NUL byte".into() })?;
    let (argv_c, env_c) = (cstrings(argv)?, cstrings(env)?);
    default_signals();
    let e = nix::unistd::execve(&exe_c, &argv_c, &env_c).unwrap_err();
    let code = match e {
        nix::Error::ENOENT => CODE_NOT_FOUND,
        nix::Error::EACCES | nix::Error::ENOEXEC => CODE_NOT_EXECUTABLE,
        _ => CODE_RUNTIME,
    };
    Err(ContainerError::StartFailed { code, msg: format!("exec {}: {}", exe.display(), e.desc()) })
}
