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
//!
//! The state store (`store.rs`), the status machine (`status.rs`), the lifecycle commands
//! (`commands.rs`), exec assembly (`exec.rs`), process listing (`ps.rs`) and bundle loading
//! (`bundle.rs`) are files of their own; this file holds the error type and the `Runtime`.

pub mod log;
pub mod spec;
mod bundle;
mod commands;
mod exec;
mod ps;
mod status;
mod store;

use std::path::PathBuf;

use crate::container::ContainerError;
use crate::state;

pub use bundle::load_bundle;
pub use commands::{CreateArgs, parse_signal};
pub use exec::ExecArgs;
pub use status::Status;
pub use store::Record;

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

/// The runtime: its state root and global options.
pub struct Runtime {
    pub root: PathBuf,
    /// `--systemd-cgroup`: podbox has no systemd cgroup driver, so specs with a cgroup are refused.
    pub systemd_cgroup: bool,
    /// Where warnings go (`--log`, `--log-format`).
    pub log: log::Log,
}
