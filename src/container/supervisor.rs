//! What the supervisor (the monitor of container/monitor.rs) promises and records, apart from
//! how the executor starts a process: the restart policy, the state files through which others
//! tell it to stop and read how a run ended (`exit.json`, `current.json`, `stop-requested`).

use serde::{Deserialize, Serialize};

use super::ProcRef;

/// How a container ended; written by its monitor as `exit.json` in the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code as a shell reports it (128 + signal when killed by a signal).
    pub code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
    /// Why it never ran, when it failed before exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Extra explanation added by the caller's exit hook (e.g. who holds a port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
}

pub const EXIT_FILE: &str = "exit.json";

/// When the monitor starts a container again (restart policy), what runs now and how the last
/// run ended; kept up to date in `current.json` next to `exit.json`.
pub const CURRENT_FILE: &str = "current.json";

/// Written by whoever stops or removes a container: its monitor must not start it again.
pub const STOP_FILE: &str = "stop-requested";

/// When the monitor starts a container's process again after it ended (Kubernetes' restartPolicy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum RestartPolicy {
    #[default]
    Never,
    OnFailure,
    Always,
}

impl RestartPolicy {
    pub fn restarts_after(self, code: i32) -> bool {
        match self {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Always => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentRun {
    /// The running process; None while waiting out the back-off before the next start.
    pub pid: Option<ProcRef>,
    pub restarts: u32,
    pub started_at: Option<String>,
    pub last_exit: Option<ExitRecord>,
    /// When the next start is due, while backing off.
    pub next_start_at: Option<String>,
}
