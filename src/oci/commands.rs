//! The runc command-line contract's lifecycle operations: create, start, kill, pause/resume,
//! delete and run.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::Spec;

use crate::container::{self, ContainerError, ProcRef, Rootfs, Stdio, cgroups, hooks, terminal};
use crate::state;

use super::bundle::{allow_standard_devices, drop_rootfs_fields_without_mount_ns, load_bundle, strip_bind_mount_data};
use super::store::{CONFIG, FIFO, Record, STATE, valid_id, write_pid_file};
use super::{OciError, Result, Runtime, Status, io};

/// Where a container whose spec names no cgroup gets one: `podbox-runc/<id>-<root>`, relative,
/// so below the caller's own cgroup; `<root>` (a hash of the state root) keeps two runtimes
/// with their own roots apart when they reuse an id.
const DEFAULT_CGROUP_PARENT: &str = "podbox-runc";

/// Options of `create` and `run`.
#[derive(Debug, Clone, Default)]
pub struct CreateArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// Descriptors 3 .. 3 + preserve_fds - 1 of the caller go to the container's process.
    pub preserve_fds: u32,
    /// MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
}

/// Remove the default cgroup parent when its last container is gone (a create racing with this
/// retries its mkdir).
fn prune_default_parent(cgroup: &[PathBuf]) {
    for p in cgroup {
        if let Some(parent) = p.parent().filter(|d| d.file_name().is_some_and(|n| n == DEFAULT_CGROUP_PARENT)) {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// What runc leaves out of a spec, left out the same way, each with a warning: bind mounts'
/// file system options, root fields without a mount namespace, and ambient capabilities that
/// cannot be raised.
fn adjust_as_runc(spec: &mut Spec) {
    let stripped = strip_bind_mount_data(spec);
    if !stripped.is_empty() {
        eprintln!("podbox: warning: bind mounts take no file system options; ignored, as runc does: {}", stripped.join(", "));
    }
    let dropped = drop_rootfs_fields_without_mount_ns(spec);
    if !dropped.is_empty() {
        eprintln!("podbox: warning: no mount namespace in linux.namespaces: {} not applied (the process runs in the caller's mount namespace, chrooted into root.path)", dropped.join(", "));
    }
    let process = spec.process().clone().unwrap_or_default();
    let skipped = container::init::unraisable_ambient(&process);
    if !skipped.is_empty() {
        eprintln!("podbox: warning: ambient capabilities {} are not both permitted and inheritable; they cannot be raised and are skipped", skipped.join(", "));
    }
}

impl Runtime {
    /// `create`: everything up to exec; the init then waits for `start`.
    pub fn create(&self, a: &CreateArgs) -> Result<ProcRef> {
        if !valid_id(&a.id) {
            return Err(OciError::InvalidId(a.id.clone()));
        }
        let bundle = fs::canonicalize(&a.bundle).map_err(|e| OciError::Bundle { bundle: a.bundle.clone(), msg: e.to_string() })?;
        let mut spec = load_bundle(&bundle)?;
        self.give_default_cgroup(&mut spec, &a.id);
        allow_standard_devices(&mut spec);
        adjust_as_runc(&mut spec);
        let process = spec.process().clone().unwrap_or_default();
        let terminal = process.terminal().unwrap_or(false);
        if terminal && a.console_socket.is_none() {
            return Err(OciError::Invalid("process.terminal is true: --console-socket is required to hand over the terminal".into()));
        }
        let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
        if self.systemd_cgroup && cgroups_path.is_some() {
            return Err(OciError::Invalid("--systemd-cgroup: podbox has no systemd cgroup driver; use the cgroupfs manager (a plain linux.cgroupsPath)".into()));
        }
        let root_path = spec.root().as_ref().map(|r| r.path().clone()).ok_or_else(|| OciError::Bundle { bundle: bundle.clone(), msg: "config.json has no root".into() })?;
        let rootfs = bundle.join(root_path);
        if !rootfs.is_dir() {
            return Err(OciError::Bundle { bundle: bundle.clone(), msg: format!("root.path {} is not a directory", rootfs.display()) });
        }
        let cgroup = match &cgroups_path {
            Some(p) => cgroups::Cgroup::resolve(&p.to_string_lossy())?.paths(),
            None => vec![],
        };
        fs::create_dir_all(&self.root).map_err(io(format!("creating {}", self.root.display())))?;
        let dir = self.dir(&a.id);
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(OciError::Exists(a.id.clone())),
            other => other.map_err(io(format!("creating {}", dir.display())))?,
        }
        let mut rec = Record {
            id: a.id.clone(),
            bundle,
            rootfs: rootfs.clone(),
            pid: None,
            created: state::now_rfc3339(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup,
        };
        let result = self.create_in(&dir, &spec, &mut rec, a, terminal);
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
            // The container's own cgroup is gone already (container::create removes it).
            prune_default_parent(&rec.cgroup);
        }
        result
    }

    /// Without a cgroupsPath the container still gets a cgroup of its own (as runc gives one),
    /// so that pause/resume, ps and kill --all see exactly its processes.
    fn give_default_cgroup(&self, spec: &mut Spec, id: &str) {
        if spec.linux().as_ref().is_none_or(|l| l.cgroups_path().is_none()) && !self.systemd_cgroup {
            let mut linux = spec.linux().clone().unwrap_or_default();
            // FNV-1a: stable across releases, unlike std's hasher.
            let root_hash = self.root.as_os_str().as_encoded_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
            linux.set_cgroups_path(Some(PathBuf::from(format!("{DEFAULT_CGROUP_PARENT}/{id}-{:08x}", root_hash as u32))));
            spec.set_linux(Some(linux));
        }
    }

    fn create_in(&self, dir: &Path, spec: &Spec, rec: &mut Record, a: &CreateArgs, terminal: bool) -> Result<ProcRef> {
        spec.save(dir.join(CONFIG)).map_err(|e| OciError::Invalid(format!("saving the spec: {e}")))?;
        state::write_json(&dir.join(STATE), &*rec)?;
        let fifo = dir.join(FIFO);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| io(format!("creating {}", fifo.display()))(e.into()))?;
        // Writable for every user: the init opens it after switching to the container's user.
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622)).map_err(io(format!("chmod {}", fifo.display())))?;
        let slave = match (terminal, &a.console_socket) {
            (true, Some(sock)) => Some(terminal::open_for(sock, spec.process().as_ref().and_then(terminal::console_size))?),
            _ => None,
        };
        let stdio = match &slave {
            Some(s) => Stdio::Terminal(s.as_raw_fd()),
            None => Stdio::Inherit,
        };
        let hooks = spec.hooks().clone();
        let opts = container::create::CreateOptions { spec, rootfs: Rootfs::Plain(rec.rootfs.clone()), stdio, exec_fifo: &fifo, preserve_fds: a.preserve_fds, no_pivot: a.no_pivot };
        let mut before_pivot = |pid: ProcRef| -> container::Result<String> {
            rec.pid = Some(pid);
            state::write_json(&dir.join(STATE), &*rec).map_err(|e| ContainerError::Io { what: "writing state.json".into(), source: std::io::Error::other(e.to_string()) })?;
            // "created", as crun reports it and the runtime-tools suite expects: the runtime
            // environment exists by now (createRuntime is called after it is created).
            let st = self.state_json(rec, Status::Created).to_string();
            // prestart is deprecated but still part of the spec: it runs with createRuntime.
            hooks::run("prestart", hooks.as_ref().and_then(|h| h.prestart().as_ref()), &st)?;
            hooks::run("createRuntime", hooks.as_ref().and_then(|h| h.create_runtime().as_ref()), &st)?;
            Ok(st)
        };
        let pid = container::create::create(opts, &mut before_pivot)?;
        drop(slave);
        if let Some(pf) = &a.pid_file {
            write_pid_file(pf, pid.pid)?;
        }
        Ok(pid)
    }

    /// `start`: release the init from the exec FIFO; then the poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let rec = self.load(id)?;
        let status = self.status(&rec);
        if status != Status::Created {
            return Err(OciError::WrongState { id: id.into(), status: status.as_str().into(), msg: "only a created container can be started".into() });
        }
        let pid = rec.pid.expect("created has a pid");
        let fifo_path = self.dir(id).join(FIFO);
        // Non-blocking open: a blocking one would hang forever if the init died meanwhile.
        let fifo = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo_path).map_err(io(format!("opening {}", fifo_path.display())))?;
        // The init writes one byte once released, and its end closes when it execs (CLOEXEC)
        // or dies: wait for that EOF, so that poststart runs after the startContainer hooks
        // and the user's process has started.
        let mut released = false;
        loop {
            let mut b = [0u8; 1];
            match nix::unistd::read(&fifo, &mut b) {
                Ok(1) => released = true,
                Ok(_) if released => break,
                Ok(_) | Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(io("reading the exec FIFO")(e.into())),
            }
            if !pid.alive() {
                if released {
                    break; // started, and already done
                }
                let _ = fs::remove_file(&fifo_path);
                return Err(OciError::WrongState { id: id.into(), status: "stopped".into(), msg: "its init exited before it could be started".into() });
            }
            let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&fifo), nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        }
        let _ = fs::remove_file(&fifo_path);
        let spec = self.spec_of(id)?;
        let st = self.state_json(&rec, Status::Running).to_string();
        // A failing poststart hook does not stop the container, nor the hooks after it (the
        // spec: log a warning, continue as if it had succeeded).
        for e in hooks::run_all("poststart", spec.hooks().as_ref().and_then(|h| h.poststart().as_ref()), &st) {
            self.log.warn(&e.to_string());
        }
        Ok(())
    }

    /// `kill`: `signal` to the init, or with `all` to every process of the container.
    ///
    /// As runc: `--all` of a stopped container succeeds (there is nothing left to signal; the
    /// containerd shim sends `kill --all ID 9` to every container that has exited and waits
    /// for success), and a plain `kill` of one fails with "container not running", the text
    /// by which clients such as containerd recognise "already gone".
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let rec = self.load(id)?;
        let status = self.status(&rec);
        let init = match (status, rec.pid) {
            (Status::Created | Status::Running | Status::Paused, Some(p)) => p,
            (Status::Stopped, _) if all => return Ok(()),
            _ => return Err(OciError::NotRunning(id.into())),
        };
        if all {
            for p in self.processes(&rec) {
                // SAFETY: kill(2); the PIDs were listed a moment ago from the container.
                unsafe { libc::kill(p, signal) };
            }
        } else if !init.signal(signal) {
            return Err(OciError::NotRunning(id.into()));
        }
        Ok(())
    }

    /// `pause` (`frozen`) freezes every process of a running container with its cgroup's
    /// freezer; `resume` thaws a paused one.
    pub fn set_paused(&self, id: &str, frozen: bool) -> Result<()> {
        let rec = self.load(id)?;
        let status = self.status(&rec);
        let (from, verb) = if frozen { (Status::Running, "paused") } else { (Status::Paused, "resumed") };
        if status != from {
            return Err(OciError::WrongState { id: id.into(), status: status.as_str().into(), msg: format!("only a {} container can be {verb}", from.as_str()) });
        }
        Ok(cgroups::set_frozen(&rec.cgroup, frozen)?)
    }

    /// `delete`: remove a created or stopped container (a running one only with `force`, which
    /// kills it), its cgroup and state; then the poststop hooks.
    /// As runc, `delete --force` of a container that does not exist succeeds (after removing
    /// whatever directory an aborted create may have left).
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let rec = match self.load(id) {
            Err(OciError::NotFound(_)) if force => {
                let _ = fs::remove_dir_all(self.dir(id));
                return Ok(());
            }
            other => other?,
        };
        let status = self.status(&rec);
        if matches!(status, Status::Running | Status::Paused) && !force {
            return Err(OciError::WrongState { id: id.into(), status: status.as_str().into(), msg: "stop it first, or use delete --force".into() });
        }
        if let Some(init) = rec.pid {
            for p in self.processes(&rec) {
                // SAFETY: kill(2) has no memory effects; `p` was listed from the container's (frozen) cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            // Frozen processes act on SIGKILL only once thawed.
            if status == Status::Paused {
                cgroups::set_frozen(&rec.cgroup, false)?;
            }
            if !init.wait_gone(Duration::from_secs(10)) {
                return Err(OciError::Invalid(format!("container {id}: its init {} did not die after SIGKILL", init.pid)));
            }
        }
        let spec = self.spec_of(id).ok();
        cgroups::remove_paths(&rec.cgroup)?;
        prune_default_parent(&rec.cgroup);
        let st = self.state_json(&rec, Status::Stopped).to_string();
        let dir = self.dir(id);
        fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
        if let Some(spec) = spec {
            for e in hooks::run_all("poststop", spec.hooks().as_ref().and_then(|h| h.poststop().as_ref()), &st) {
                self.log.warn(&e.to_string());
            }
        }
        Ok(())
    }

    /// `run`: create and start. In the foreground the caller becomes the init's subreaper,
    /// waits for it (forwarding SIGINT/SIGTERM/SIGHUP), deletes the container and returns its
    /// exit code; detached it returns 0 at once.
    pub fn run(&self, a: &CreateArgs, detach: bool) -> Result<i32> {
        if !detach {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        let pid = self.create(a)?;
        if let Err(e) = self.start(&a.id) {
            let _ = self.delete(&a.id, true);
            return Err(e);
        }
        if detach {
            return Ok(0);
        }
        let code = container::monitor::wait_forwarding(nix::unistd::Pid::from_raw(pid.pid), &|| Some(pid));
        self.delete(&a.id, true)?;
        Ok(code)
    }
}

/// A signal by name (`TERM`, `SIGTERM`, `sigterm`) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>()
        && (1..=64).contains(&n) {
            return Ok(n);
        }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<nix::sys::signal::Signal>().map(|s| s as i32).map_err(|_| OciError::Invalid(format!("unknown signal {s:?}: use a name like TERM or SIGKILL, or a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_ids() {
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("NOPE").is_err());
        assert!(valid_id("abc-1.2_x") && !valid_id("../x") && !valid_id("a/b") && !valid_id(""));
    }
}
