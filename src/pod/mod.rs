//! Pod layer: turns a pod description into kernel objects through the layers below — namespace
//! pins and the pause (sandbox), a network attachment (network), and each container as an OCI
//! spec run by the container layer — and keeps their records in the state store.

pub mod containers;
pub mod diagnose;
pub mod hooks;
pub mod init_containers;
pub mod image;
pub mod lifecycle;
pub mod manifest;
pub mod model;
pub mod names;
pub mod pause;
pub mod quantity;
pub mod records;
pub mod sandbox;
pub mod security;
pub mod spec;
pub mod userns_range;
pub mod volumes;

use std::path::{Path, PathBuf};

use crate::container::{CURRENT_FILE, ContainerError, CurrentRun, EXIT_FILE, ExitRecord};
use crate::network::NetError;
use crate::state::{self, Root, StateError};
use model::{ContainerRecord, ContainerState, ContainerStatus, PodRecord};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("invalid {kind} name {name:?}: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit")]
    InvalidName { kind: String, name: String },
    #[error("{kind} name {name:?} is already taken{}", if pod.is_empty() { String::new() } else { format!(" in pod {pod}") })]
    NameTaken { kind: String, name: String, pod: String },
    #[error("no pod named {0:?} (see `podbox pod ls`)")]
    UnknownPod(String),
    #[error("no container {container:?} in pod {pod} (see `podbox ps`)")]
    UnknownContainer { pod: String, container: String },
    /// `doc` names the document of a manifest with several ("document 2 (web)", "items[1]"),
    /// else it is empty; `field` is the path in it.
    #[error("manifest {}: {msg}", manifest_location(doc, field))]
    Manifest { doc: String, field: String, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error("pod {pod}: init container {container} failed ({}) and restartPolicy is Never: the app containers are not started (see `podbox logs {pod} {container}`)", match code { Some(c) => format!("exit {c}"), None => "no exit status".into() })]
    InitFailed { pod: String, container: String, code: Option<i32> },
    #[error("root file system {0} not found or incomplete: build it with scripts/build-rootfs.sh (or set --rootfs / PODBOX_ROOTFS)")]
    RootfsMissing(PathBuf),
    #[error("container {0}: no image and no root file system: give --image REF (a manifest's image:) or --rootfs DIR (PODBOX_ROOTFS)")]
    NoRoot(String),
    #[error("podbox must run as root (it creates namespaces, mounts and network devices)")]
    NotRoot,
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Kernel(String),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Network(#[from] NetError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

fn manifest_location(doc: &str, field: &str) -> String {
    match (doc.is_empty(), field.is_empty()) {
        (true, true) => "document".into(),
        (true, false) => format!("field {field}"),
        (false, true) => doc.into(),
        (false, false) => format!("{doc}, field {field}"),
    }
}

impl PodError {
    /// The exit code the CLI should use: a container that failed to start reports the shell's
    /// code (127 not found, 126 not executable); every other runtime error is 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            PodError::Container(ContainerError::StartFailed { code, .. }) => *code,
            _ => 1,
        }
    }
}

pub type Result<T> = std::result::Result<T, PodError>;

/// Where podbox keeps state, images, and a plain root file system if one was given.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub root: Root,
    /// `--rootfs`: containers without an image run from this directory.
    pub rootfs: Option<PathBuf>,
    /// The image store's directory (opened when an image is needed).
    pub images: PathBuf,
}

impl Ctx {
    pub fn new(root: &Path, rootfs: Option<&Path>, images: &Path) -> Result<Ctx> {
        // SAFETY: geteuid has no failure mode.
        if unsafe { libc::geteuid() } != 0 {
            return Err(PodError::NotRoot);
        }
        // Every container's root is an overlay mount whose options name these directories,
        // and the overlay option syntax separates with ',' (options) and ':' (lower layers).
        for (flag, p) in [("--root", Some(root)), ("--rootfs", rootfs), ("--images", Some(images))] {
            if let Some(c) = p.and_then(|p| p.to_string_lossy().chars().find(|c| matches!(c, ',' | ':' | '\\'))) {
                let p = p.map(|p| p.display().to_string()).unwrap_or_default();
                return Err(PodError::Invalid(format!("{flag} {p}: contains {c:?}, which an overlay mount cannot name (its options are separated by ',' and ':'); choose a path without ',', ':' and '\\'")));
            }
        }
        let root = Root::open(root)?;
        crate::container::seccomp_cache::use_dir(root.seccomp_cache_dir());
        Ok(Ctx { root, rootfs: rootfs.map(Path::to_path_buf), images: images.to_path_buf() })
    }

    /// A `--rootfs` that was given must be a usable root file system.
    pub fn check_rootfs(&self) -> Result<()> {
        match &self.rootfs {
            Some(r) if !r.join("bin/sh").exists() => Err(PodError::RootfsMissing(r.clone())),
            _ => Ok(()),
        }
    }

    pub fn image_store(&self) -> Result<crate::image::Store> {
        Ok(crate::image::Store::open(&self.images)?)
    }

    /// Containers of this root that run from image `digest`, as "pod/container".
    pub fn image_users(&self, digest: &str) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.pods().unwrap_or_default() {
            for c in self.container_statuses(&p).unwrap_or_default() {
                if c.record.image_digest.as_deref() == Some(digest) {
                    out.push(format!("{}/{}", p.name, c.record.name));
                }
            }
        }
        out
    }

    /// The image manifests of every container of this root (kept by `image prune`).
    pub fn images_in_use(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self.pods().unwrap_or_default() {
            for c in self.container_statuses(&p).unwrap_or_default() {
                out.extend(c.record.image_digest);
            }
        }
        out
    }

    pub fn pod_record_path(&self, id: &str) -> PathBuf {
        self.root.pod_dir(id).join("pod.json")
    }

    /// All readable pod records (a directory without a record is left to `gc`).
    pub fn pods(&self) -> Result<Vec<PodRecord>> {
        let mut out = Vec::new();
        for id in self.root.pod_ids()? {
            if let Ok(Some(p)) = state::read_json_opt::<PodRecord>(&self.pod_record_path(&id)) {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A pod by name, or by id or unique id prefix.
    pub fn find_pod(&self, key: &str) -> Result<PodRecord> {
        // Performance: a name is looked up in the name index (`<root>/names/<name>`, kept by
        // lifecycle.rs) and its record read alone, instead of reading every record — O(pods)
        // per `pod rm`/`inspect`/`run --pod`. A missing or stale entry falls back to the scan.
        if !key.is_empty() && !key.contains('/') && key != "." && key != ".."
            && let Ok(id) = std::fs::read_to_string(self.root.path.join("names").join(key))
            && let Some(rec) = state::read_json_opt::<PodRecord>(&self.pod_record_path(id.trim())).ok().flatten()
            && rec.name == key
        {
            return Ok(rec);
        }
        let pods = self.pods()?;
        if let Some(p) = pods.iter().find(|p| p.name == key) {
            return Ok(p.clone());
        }
        let by_id: Vec<_> = pods.iter().filter(|p| key.len() >= 4 && p.id.starts_with(key)).collect();
        match by_id.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(PodError::UnknownPod(key.into())),
        }
    }

    pub fn container_statuses(&self, pod: &PodRecord) -> Result<Vec<ContainerStatus>> {
        let dir = self.root.pod_dir(&pod.id).join("containers");
        let mut out = Vec::new();
        for name in state::list_dir(&dir)? {
            if let Some(s) = self.container_status(pod, &name)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    pub fn container_status(&self, pod: &PodRecord, name: &str) -> Result<Option<ContainerStatus>> {
        let dir = self.root.container_dir(&pod.id, name);
        let Some(record) = state::read_json_opt::<ContainerRecord>(&dir.join("container.json"))? else { return Ok(None) };
        let mut record = record;
        // Whether the monitor lives, seen before its exit record is read: a monitor writes that
        // record and then ends, so one seen gone has left its record for the read below. (Seen
        // after, a monitor that recorded and ended between the two looked like one killed before
        // recording: an exited container with no exit status.)
        let monitor_alive = record.monitor.map(|m| m.alive()).unwrap_or(false);
        let exit: Option<ExitRecord> = state::read_json_opt(&dir.join(EXIT_FILE))?;
        // A container its monitor has started again: the current run is what counts.
        let current: Option<CurrentRun> = state::read_json_opt(&dir.join(CURRENT_FILE))?;
        let mut restarts = 0;
        let mut last_exit = None;
        let mut backing_off = false;
        if let Some(c) = current {
            restarts = c.restarts;
            last_exit = c.last_exit;
            backing_off = c.pid.is_none();
            if let Some(p) = c.pid {
                record.pid = Some(p);
                record.started_at = c.started_at;
            }
        }
        // A monitor killed (with its caller) between starting the init and recording it leaves a
        // running container that no record names: the kernel still does, in the container's
        // cgroup (the init joins it before it may outlive the monitor).
        if exit.is_none() && record.pid.is_none() && !monitor_alive
            && let Some(cg) = record.cgroup.as_deref().and_then(|p| crate::container::cgroups::Cgroup::resolve(p).ok())
        {
            record.pid = cg.procs().into_iter().min().and_then(crate::container::ProcRef::of);
        }
        let state = match (&exit, &record.pid) {
            (Some(_), _) => ContainerState::Exited,
            (None, _) if backing_off && monitor_alive => ContainerState::Restarting,
            (None, Some(p)) if p.alive() => ContainerState::Running,
            // Ended, but its monitor still copies the last output to the log and then records
            // the exit: not exited yet, or a reader of "exited" could miss the output (critest's
            // NoNewPrivs specs read the log once they see the container exited).
            (None, Some(_)) if monitor_alive => ContainerState::Running,
            // Started, but the monitor is gone without recording an end (killed, or the node
            // crashed): it is not running any more.
            (None, Some(_)) => ContainerState::Exited,
            (None, None) => ContainerState::Created,
        };
        let probe: Option<crate::container::probe::ProbeState> = if state == ContainerState::Running { state::read_json_opt(&dir.join(crate::container::probe::PROBE_FILE))? } else { None };
        let is_init = record.spec.as_ref().is_some_and(|s| s.init);
        let ready = state == ContainerState::Running && !is_init && probe.as_ref().is_none_or(|p| p.started && p.ready);
        Ok(Some(ContainerStatus { record, state, exit, restarts, last_exit, ready, probe }))
    }
}

/// 32 random lowercase hex digits.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
