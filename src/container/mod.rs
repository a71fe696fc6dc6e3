//! Container layer: executes OCI runtime specs. It knows nothing of pods; a pod is just a spec
//! whose namespaces carry paths to join.
//!
//! Process model of `start` (every fork goes through `spawn::spawn`):
//! ```text
//! caller ──spawn──▶ monitor (new session; waits for the caller's `Go`)
//!                     └─spawn──▶ [intermediate: cgroup → PID namespace ─clone(CLONE_PARENT)─▶]
//!                                init: join/unshare namespaces → rootfs → pivot_root → hostname
//!                                      → rlimits → user → capabilities → seccomp → exec
//! ```
//! The monitor outlives the caller, is the init's parent, reaps it and writes `exit.json` into
//! the container's state directory. The typed sync channel (`spawn::Msg` over a socketpair)
//! reports the init's PID, or an error from before exec (e.g. "executable not found", exit
//! 127), back to the caller through the monitor.

pub mod attach;
pub mod cgroups;
pub mod create;
mod device_filter;
pub mod env;
pub mod early_seal;
pub mod exec;
#[cfg(test)]
mod fake_kernel;
pub mod hooks;
pub mod init;
#[cfg(test)]
mod init_tests;
pub mod kernel;
pub mod monitor;
pub mod mounts;
pub mod namespaces;
pub mod plan;
pub mod probe;
pub mod process;
pub mod rootfs;
pub mod safe_path;
pub mod sealed_exe;
pub mod seccomp;
pub mod seccomp_cache;
pub mod spawn;
pub mod supervisor;
pub mod tee;
pub mod terminal;
pub mod unsupported;
pub mod userns;
pub mod userns_mounts;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use monitor::{Started, start};
pub use process::ProcRef;
// The supervisor's records and policy, where callers have always found them.
pub use supervisor::{CURRENT_FILE, CurrentRun, EXIT_FILE, ExitRecord, RestartPolicy, STOP_FILE};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("unsupported or invalid OCI spec field {field}: {msg}")]
    Spec { field: String, msg: String },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The container's process failed before it could exec the command.
    #[error("{msg}")]
    StartFailed { code: i32, msg: String },
    #[error("{phase} hook #{index} ({path}) {msg}")]
    Hook { phase: String, index: usize, path: String, msg: String },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("starting a process: {0}")]
    Spawn(spawn::SpawnError),
}

impl From<spawn::SpawnError> for ContainerError {
    fn from(e: spawn::SpawnError) -> Self {
        match e {
            spawn::SpawnError::Failed(spawn::Failure { code, msg }) => ContainerError::StartFailed { code, msg },
            other => ContainerError::Spawn(other),
        }
    }
}

impl From<spawn::Failure> for ContainerError {
    fn from(spawn::Failure { code, msg }: spawn::Failure) -> Self {
        ContainerError::StartFailed { code, msg }
    }
}

pub type Result<T> = std::result::Result<T, ContainerError>;

pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Sys { what, source }
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// Where the root filesystem comes from.
#[derive(Debug, Clone)]
pub enum Rootfs {
    /// `root.path` of the spec, used as it is (bind-mounted onto itself).
    Plain(PathBuf),
    /// Read-only shared lower directories (an image's layers, **top layer first**, as overlayfs'
    /// `lowerdir=` lists them; or one plain directory) with a per-container writable upper
    /// layer; mounted inside the container's own mount namespace, so nothing needs unmounting
    /// afterwards. With `tmpfs` (directory, bytes), a tmpfs of that size is mounted there first
    /// (in the same mount namespace) and holds `upper` and `work`: the writable layer is capped,
    /// and cannot fill the file system of the state root.
    Overlay { lowers: Vec<PathBuf>, upper: PathBuf, work: PathBuf, merged: PathBuf, tmpfs: Option<(PathBuf, u64)> },
}

/// Where the container's standard streams go.
#[derive(Debug, Clone)]
pub enum Stdio {
    /// The caller's own stdin/stdout/stderr (foreground `run`, `exec`).
    Inherit,
    /// stdout and stderr appended to this file, stdin from /dev/null.
    Log(PathBuf),
    /// stdin from the caller; stdout and stderr through pipes that the monitor copies both to
    /// the caller's streams and to this file, rotated at these limits.
    Tee(PathBuf, LogLimits),
    /// The slave of a pseudo-terminal: the process's controlling terminal and all three
    /// standard streams (OCI `process.terminal`).
    Terminal(std::os::fd::RawFd),
}

/// The size cap of a container's log: at most `max_files` files (the live one included) of at
/// most `max_size` bytes each. The default is the kubelet's: 10 MiB × 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLimits {
    pub max_size: u64,
    pub max_files: u32,
    /// Write the kubelet's CRI log format (`RFC3339NANO stdout|stderr F|P LINE` per line)
    /// instead of the raw output, and follow the file at the log's path when the kubelet
    /// renames it away: containers made through `podbox cri`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cri_format: bool,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits { max_size: 10 << 20, max_files: 5, cri_format: false }
    }
}
