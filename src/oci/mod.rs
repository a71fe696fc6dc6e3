//! OCI runtime mode: the runc command-line contract's operations (create, start, state, kill,
//! delete, run, exec, list, ps) over a state directory per container. Containers are run by the
//! container layer without a monitor; their status comes from the state directory and /proc:
//! `creating` until the init's PID is recorded, `created` while the init waits on the exec FIFO,
//! `running` once `start` has consumed the FIFO, `stopped` when the init is gone or a zombie.
//!
//! Layout under the root (default `/run/podbox-runc`):
//! ```text
//! <id>/state.json   the record: bundle, init PID + start time, cgroup directories, annotations
//! <id>/config.json  the spec as created (the bundle may be gone when `delete` needs its hooks)
//! <id>/exec.fifo    removed by `start`
//! ```

pub mod log;
pub mod spec;

use std::collections::HashMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use crate::container::{self, ContainerError, ProcRef, Rootfs, Stdio, cgroups, hooks, terminal};
use crate::state;

/// The runtime-spec version podbox implements.
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("container {0:?} does not exist (see `list`)")]
    NotFound(String),
    /// runc's wording: clients match "container not running" to mean "already gone".
    #[error("container not running: {0} has no live process to signal")]
    NotRunning(String),
    #[error("container {0:?} already exists: delete it first")]
    Exists(String),
    #[error("invalid container id {0:?}: use letters, digits, '_', '-' and '.', not starting with '.'")]
    InvalidId(String),
    #[error("bundle {bundle}: {msg}")]
    Bundle { bundle: PathBuf, msg: String },
    #[error("container {id} is {status}: {msg}")]
    WrongState { id: String, status: String, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, OciError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OciError {
    let what = what.into();
    move |source| OciError::Io { what, source }
}

/// Where a container whose spec names no cgroup gets one: `podbox-runc/<id>-<root>`, relative,
/// so below the caller's own cgroup; `<root>` (a hash of the state root) keeps two runtimes
/// with their own roots apart when they reuse an id.
const DEFAULT_CGROUP_PARENT: &str = "podbox-runc";

/// A container's record in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// None while `create` is still setting the container up.
    pub pid: Option<ProcRef>,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup directories, resolved once at create (relative cgroup paths
    /// depend on the calling process's own cgroup, which differs between callers).
    #[serde(default)]
    pub cgroup: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

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

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    pub id: String,
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--cap`: capabilities added to the process's bounding, effective and permitted sets.
    pub caps: Vec<String>,
    /// `--ignore-paused`: exec into a paused container too (the process is frozen with it
    /// until `resume`).
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLER[,CONTROLLER]:]PATH`: join this existing sub-cgroup of the
    /// container's cgroup (in the hierarchies of the controllers named, or in all).
    pub cgroups: Vec<String>,
}

/// The runtime: its state root and global options.
pub struct Runtime {
    pub root: PathBuf,
    /// `--systemd-cgroup`: podbox has no systemd cgroup driver, so specs with a cgroup are refused.
    pub systemd_cgroup: bool,
    /// Where warnings go (`--log`, `--log-format`).
    pub log: log::Log,
}

const STATE: &str = "state.json";
const CONFIG: &str = "config.json";
const FIFO: &str = "exec.fifo";

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 1024 && !id.starts_with('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Read and check `bundle/config.json`: parse errors name the JSON path of the bad field.
pub fn load_bundle(bundle: &Path) -> Result<Spec> {
    let berr = |msg: String| OciError::Bundle { bundle: bundle.to_path_buf(), msg };
    if !bundle.is_dir() {
        return Err(berr("not a directory".into()));
    }
    let path = bundle.join(CONFIG);
    let text = fs::read_to_string(&path).map_err(|e| berr(format!("cannot read config.json: {e}")))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| berr(format!("invalid config.json at {}: {}", e.path(), e.inner())))?;
    check_oci_version(spec.version()).map_err(berr)?;
    container::unsupported::check(&spec)?;
    if spec.process().is_none() {
        return Err(berr("config.json has no process: nothing to run".into()));
    }
    Ok(spec)
}

/// `ociVersion` must be a semantic version (MAJOR.MINOR.PATCH, optionally -pre and +build) of
/// major version 1: a spec of another major version may mean things podbox does not know.
fn check_oci_version(v: &str) -> std::result::Result<(), String> {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let nums: Vec<&str> = core.split('.').collect();
    let numeric = |n: &&str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n.len() == 1 || !n.starts_with('0'));
    if nums.len() != 3 || !nums.iter().all(numeric) || v.ends_with(['-', '+']) {
        return Err(format!("ociVersion {v:?} is not a semantic version (like \"{OCI_VERSION}\")"));
    }
    if nums[0] != "1" {
        return Err(format!("ociVersion {v:?}: major version {} is not supported (podbox implements runtime spec 1.x up to {OCI_VERSION})", nums[0]));
    }
    Ok(())
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

/// Without a mount namespace runc and crun make the spec's mounts in the caller's own mount
/// namespace (where they stay after the container is gone) and chroot into the root. podbox
/// chroots too (container::init) but does not change the caller's mounts: a spec's `mounts`,
/// `linux.devices` and `linux.rootfsPropagation` are dropped, by name in a warning (the
/// runtime-tools generator puts mounts in every spec, also in those without namespaces). What
/// would confine the process (masked and read-only paths, a read-only root) is still refused by
/// the container layer, as runc refuses masked and read-only paths.
fn drop_rootfs_fields_without_mount_ns(spec: &mut Spec) -> Vec<&'static str> {
    use oci_spec::runtime::LinuxNamespaceType;
    let has_mount_ns = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));
    let mut dropped = vec![];
    if has_mount_ns {
        return dropped;
    }
    if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        spec.set_mounts(None);
        dropped.push("mounts");
    }
    if let Some(mut linux) = spec.linux().clone() {
        if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            linux.set_devices(None);
            dropped.push("linux.devices");
        }
        if linux.rootfs_propagation().is_some() {
            linux.set_rootfs_propagation(None);
            dropped.push("linux.rootfsPropagation");
        }
        spec.set_linux(Some(linux));
    }
    dropped
}

/// File system data options (`mode=755`, `size=1k`) on bind mounts: mount(2) has no file system
/// to give them to, and runc and crun pass them on to be dropped by the kernel (the runtime-tools
/// suite puts them on every mount). podbox's container layer refuses them so that nothing is
/// dropped silently; here, for specs written for runc, they are removed and named in a warning.
fn strip_bind_mount_data(spec: &mut Spec) -> Vec<String> {
    let Some(mut mounts) = spec.mounts().clone() else { return vec![] };
    let mut stripped = vec![];
    for m in &mut mounts {
        let Some(opts) = m.options().clone() else { continue };
        let parsed = container::mounts::parse_options(&opts);
        let is_bind = parsed.flags.contains(nix::mount::MsFlags::MS_BIND) || m.typ().as_deref() == Some("bind");
        if !is_bind || matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        // Only `key=value` data (`mode=755`, `size=1k`) is dropped; a bare word the parser does
        // not know (a misspelt `rnoexec`) stays, to be refused by name at create.
        let data: Vec<&String> = parsed.data.iter().filter(|d| d.contains('=')).collect();
        stripped.extend(data.iter().map(|d| format!("{d} ({})", m.destination().display())));
        m.set_options(Some(opts.iter().filter(|o| !data.contains(o)).cloned().collect()));
    }
    spec.set_mounts(Some(mounts));
    stripped
}

/// Where a spec restricts devices, the standard set stays usable and so do the devices it asks
/// to be created (`linux.devices`): runc appends the same allow rules, and specs are written
/// for it (`runc spec` has only "deny all").
fn allow_standard_devices(spec: &mut Spec) {
    let Some(mut linux) = spec.linux().clone() else { return };
    let Some(mut resources) = linux.resources().clone() else { return };
    let Some(mut rules) = resources.devices().clone().filter(|r| !r.is_empty()) else { return };
    rules.extend(cgroups::standard_device_allows());
    // A FIFO is no device to the device cgroup (it governs block and character devices only,
    // and v1 refuses a `p` rule).
    for d in linux.devices().iter().flatten().filter(|d| d.typ() != oci_spec::runtime::LinuxDeviceType::P) {
        rules.push(cgroups::device_rule(true, d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
    }
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
}

impl Runtime {
    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn load(&self, id: &str) -> Result<Record> {
        if !valid_id(id) {
            return Err(OciError::InvalidId(id.into()));
        }
        let p = self.dir(id).join(STATE);
        if !p.exists() {
            return Err(OciError::NotFound(id.into()));
        }
        Ok(state::read_json(&p)?)
    }

    fn spec_of(&self, id: &str) -> Result<Spec> {
        Spec::load(self.dir(id).join(CONFIG)).map_err(|e| OciError::Invalid(format!("reading the saved spec of {id}: {e}")))
    }

    pub fn status(&self, rec: &Record) -> Status {
        match rec.pid {
            None => Status::Creating,
            Some(p) if p.alive() => {
                if self.dir(&rec.id).join(FIFO).exists() {
                    Status::Created
                } else if cgroups::is_frozen(&rec.cgroup) {
                    Status::Paused
                } else {
                    Status::Running
                }
            }
            Some(_) => Status::Stopped,
        }
    }

    /// The OCI state of a container, as `state` prints it and hooks receive it.
    pub fn state_json(&self, rec: &Record, status: Status) -> serde_json::Value {
        // A stopped container's PID may belong to another process by now.
        let pid = match status {
            Status::Stopped => 0,
            _ => rec.pid.map(|p| p.pid).unwrap_or(0),
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": rec.id,
            "status": status.as_str(),
            "pid": pid,
            "bundle": rec.bundle,
            "rootfs": rec.rootfs,
            "created": rec.created,
            "annotations": rec.annotations,
        })
    }

    /// `create`: everything up to exec; the init then waits for `start`.
    pub fn create(&self, a: &CreateArgs) -> Result<ProcRef> {
        if !valid_id(&a.id) {
            return Err(OciError::InvalidId(a.id.clone()));
        }
        let bundle = fs::canonicalize(&a.bundle).map_err(|e| OciError::Bundle { bundle: a.bundle.clone(), msg: e.to_string() })?;
        let mut spec = load_bundle(&bundle)?;
        // Without a cgroupsPath the container still gets a cgroup of its own (as runc gives
        // one), so that pause/resume, ps and kill --all see exactly its processes.
        if spec.linux().as_ref().is_none_or(|l| l.cgroups_path().is_none()) && !self.systemd_cgroup {
            let mut linux = spec.linux().clone().unwrap_or_default();
            // FNV-1a: stable across releases, unlike std's hasher.
            let root_hash = self.root.as_os_str().as_encoded_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
            linux.set_cgroups_path(Some(PathBuf::from(format!("{DEFAULT_CGROUP_PARENT}/{}-{:08x}", a.id, root_hash as u32))));
            spec.set_linux(Some(linux));
        }
        allow_standard_devices(&mut spec);
        let stripped = strip_bind_mount_data(&mut spec);
        if !stripped.is_empty() {
            eprintln!("podbox: warning: bind mounts take no file system options; ignored, as runc does: {}", stripped.join(", "));
        }
        let dropped = drop_rootfs_fields_without_mount_ns(&mut spec);
        if !dropped.is_empty() {
            eprintln!("podbox: warning: no mount namespace in linux.namespaces: {} not applied (the process runs in the caller's mount namespace, chrooted into root.path)", dropped.join(", "));
        }
        let process = spec.process().clone().unwrap_or_default();
        let skipped = container::init::unraisable_ambient(&process);
        if !skipped.is_empty() {
            eprintln!("podbox: warning: ambient capabilities {} are not both permitted and inheritable; they cannot be raised and are skipped", skipped.join(", "));
        }
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

    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        let rec = self.load(id)?;
        Ok(self.state_json(&rec, self.status(&rec)))
    }

    /// Every process of the container: those of its PID namespace when it has its own, else
    /// those of its cgroup when it has one, else just the init.
    pub fn processes(&self, rec: &Record) -> Vec<i32> {
        let Some(init) = rec.pid.filter(|p| p.alive()) else { return vec![] };
        let ns = |pid: i32| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let init_ns = ns(init.pid);
        if init_ns.is_some() && init_ns != ns(std::process::id() as i32) {
            let mut pids: Vec<i32> = fs::read_dir("/proc")
                .map(|rd| rd.flatten().filter_map(|e| e.file_name().to_string_lossy().parse().ok()).filter(|p| ns(*p) == init_ns).collect())
                .unwrap_or_default();
            pids.sort();
            return pids;
        }
        if let Some(dir) = rec.cgroup.first() {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs.split_whitespace().filter_map(|p| p.parse().ok()).collect();
            if !pids.is_empty() {
                return pids;
            }
        }
        vec![init.pid]
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

    /// `exec`: another process in a created or running container; its exit code, or 0 when
    /// detached (its PID then goes to the pid file).
    pub fn exec(&self, a: &ExecArgs) -> Result<i32> {
        let rec = self.load(&a.id)?;
        let status = self.status(&rec);
        if status == Status::Paused && !a.ignore_paused {
            return Err(OciError::WrongState { id: a.id.clone(), status: status.as_str().into(), msg: "cannot exec in it (use --ignore-paused to exec anyway; the process then waits frozen for resume)".into() });
        }
        if !matches!(status, Status::Created | Status::Running | Status::Paused) {
            return Err(OciError::WrongState { id: a.id.clone(), status: status.as_str().into(), msg: "cannot exec in it".into() });
        }
        let procs: Vec<PathBuf> = exec_cgroups(&rec.cgroup, &a.cgroups)?.iter().map(|d| d.join("cgroup.procs")).collect();
        let spec = self.spec_of(&a.id)?;
        let process = match &a.process_file {
            Some(f) => {
                let text = fs::read_to_string(f).map_err(io(format!("reading {}", f.display())))?;
                let de = &mut serde_json::Deserializer::from_str(&text);
                serde_path_to_error::deserialize::<_, Process>(de).map_err(|e| OciError::Invalid(format!("{}: invalid process at {}: {}", f.display(), e.path(), e.inner())))?
            }
            None => {
                if a.args.is_empty() {
                    return Err(OciError::Invalid("exec needs a command (after the container id) or --process FILE".into()));
                }
                let mut p = spec.process().clone().unwrap_or_default();
                p.set_args(Some(a.args.clone()));
                let mut env = p.env().clone().unwrap_or_default();
                for kv in &a.env {
                    let key = kv.split('=').next().unwrap_or_default();
                    env.retain(|e| e.split('=').next() != Some(key));
                    env.push(kv.clone());
                }
                p.set_env(Some(env));
                if let Some(c) = &a.cwd {
                    p.set_cwd(c.clone());
                }
                p.set_terminal(Some(a.tty));
                p
            }
        };
        let process = add_caps(process, &a.caps)?;
        let slave = match (process.terminal().unwrap_or(false), &a.console_socket) {
            (true, Some(sock)) => Some(terminal::open_for(sock, terminal::console_size(&process))?),
            (true, None) => return Err(OciError::Invalid("a terminal was asked for: --console-socket is required to hand it over".into())),
            _ => None,
        };
        let stdio = match &slave {
            Some(s) => Stdio::Terminal(s.as_raw_fd()),
            None => Stdio::Inherit,
        };
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let init = rec.pid.expect("created/running has a pid");
        match container::exec::spawn(init, &process, seccomp, &procs, &stdio, a.detach, a.preserve_fds)? {
            container::exec::Spawned::Detached(p) => {
                if let Some(pf) = &a.pid_file {
                    write_pid_file(pf, p.pid)?;
                }
                Ok(0)
            }
            container::exec::Spawned::Exited(code) => Ok(code),
        }
    }

    /// Every container under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<(Record, Status)>> {
        let mut out = Vec::new();
        if !self.root.is_dir() {
            return Ok(out);
        }
        for id in state::list_dir(&self.root)? {
            if let Ok(rec) = self.load(&id) {
                let st = self.status(&rec);
                out.push((rec, st));
            }
        }
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok(out)
    }
}


/// `exec --cap`: each capability (`CAP_NET_ADMIN` or `NET_ADMIN`) added to the bounding,
/// effective and permitted sets, as runc does; not to inheritable or ambient, which would hand
/// it on to programs the process executes as another user. A process without a capabilities
/// section keeps all of the runtime's already.
fn add_caps(mut process: Process, names: &[String]) -> Result<Process> {
    if names.is_empty() {
        return Ok(process);
    }
    let Some(mut c) = process.capabilities().clone() else { return Ok(process) };
    for name in names {
        let full = name.to_ascii_uppercase();
        let full = if full.starts_with("CAP_") { full } else { format!("CAP_{full}") };
        let cap: oci_spec::runtime::Capability =
            serde_json::from_value(serde_json::Value::String(full.clone())).map_err(|_| OciError::Invalid(format!("--cap {name}: unknown capability {full}")))?;
        let with = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut v = set.clone().unwrap_or_default();
            v.insert(cap);
            Some(v)
        };
        c.set_bounding(with(c.bounding()));
        c.set_effective(with(c.effective()));
        c.set_permitted(with(c.permitted()));
    }
    process.set_capabilities(Some(c));
    Ok(process)
}

/// The cgroup directories an exec'd process joins: the container's, or with `--cgroup` the
/// existing sub-cgroups named. `[CONTROLLER[,CONTROLLER]:]PATH`, PATH relative to the
/// container's cgroup; with controllers only their hierarchies' directories change.
fn exec_cgroups(container: &[PathBuf], specs: &[String]) -> Result<Vec<PathBuf>> {
    let mut dirs = container.to_vec();
    if specs.is_empty() {
        return Ok(dirs);
    }
    let ctrls: Vec<Vec<String>> = container.iter().map(|d| cgroups::controllers_of(d)).collect::<std::result::Result<_, _>>()?;
    for spec in specs {
        let (named, path) = match spec.split_once(':') {
            Some((c, p)) => (c.split(',').map(str::to_string).collect::<Vec<_>>(), p),
            None => (vec![], spec.as_str()),
        };
        let rel = Path::new(path.trim_start_matches('/'));
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(OciError::Invalid(format!("--cgroup {spec}: the path must name a sub-cgroup of the container's cgroup, without '..'")));
        }
        if container.is_empty() {
            return Err(OciError::Invalid(format!("--cgroup {spec}: the container has no cgroup")));
        }
        for n in &named {
            if !ctrls.iter().any(|c| c.contains(n)) {
                return Err(OciError::Invalid(format!("--cgroup {spec}: the container has no cgroup with controller {n:?} (cgroup v2 takes a plain PATH)")));
            }
        }
        for (i, base) in container.iter().enumerate() {
            if !named.is_empty() && !ctrls[i].iter().any(|c| named.contains(c)) {
                continue;
            }
            let d = base.join(rel);
            if !d.is_dir() {
                return Err(OciError::Invalid(format!("--cgroup {spec}: sub-cgroup {} does not exist", d.display())));
            }
            dirs[i] = d;
        }
    }
    Ok(dirs)
}

/// Write `pid` to `path` atomically: supervisors poll for the file and must never read half.
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::state::write_atomic(path, pid.to_string().as_bytes()).map_err(io(format!("writing pid file {}", path.display())))
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

    #[test]
    fn oci_versions() {
        for ok in ["1.0.0", "1.0.2-dev", "1.2.0", "1.0.0-rc.1+build.5", "1.10.3"] {
            assert!(check_oci_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1", "1.0", "banana", "01.0.0", "1.0.0-", "2.0.0", "0.9.0", "1.a.0"] {
            assert!(check_oci_version(bad).is_err(), "{bad}");
        }
    }
}
