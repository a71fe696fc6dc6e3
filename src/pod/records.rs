//! The records kept in the state store of what was built: a pod's, a container's, and a
//! container's live status as listings show it. Pure data; no kernel calls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::container::{ExitRecord, ProcRef};
use crate::network::{Attachment, PortMapping, Protocol};

use super::model::ContainerSpec;
use super::volumes::Volume;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodPhase {
    /// Being set up; a pod left in this phase by a crashed CLI is removed by `gc`.
    Creating,
    Ready,
    Stopped,
}

/// The pod as recorded under `<root>/pods/<id>/pod.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub phase: PodPhase,
    pub created_at: String,
    pub share_pid: bool,
    pub network: bool,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Namespace pins: "net", "ipc", "uts", "pid" → path of the bind mount.
    pub namespaces: BTreeMap<String, PathBuf>,
    /// Namespaces shared with the node (no pin, and containers make no new one).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub node_namespaces: BTreeSet<String>,
    #[serde(default)]
    pub attachment: Option<Attachment>,
    #[serde(default)]
    pub pause: Option<ProcRef>,
    /// Declared ports of each container (from a manifest), for conflict diagnosis.
    #[serde(default)]
    pub declared_ports: BTreeMap<String, Vec<(u16, Protocol)>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Fields of the manifest that were accepted and ignored ("PATH: REASON"), for `pod inspect`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_fields: Vec<String>,
    /// The pod's volumes (configMap and secret contents are not recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// `securityContext.fsGroup`: the group owning the pod's volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<u32>,
    /// terminationGracePeriodSeconds: the default grace of `pod stop` and `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
    /// The host ids of the pod's user namespace (ids 0.. inside are `host_start`.. outside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_range: Option<UserRange>,
    /// The pod's cgroup, relative as `linux.cgroupsPath` names it (`spec::new_pod_cgroup`);
    /// None in a record written before pods had a middle level: then `podbox/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// A pod's share of the host's uids and gids (the same numbers for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRange {
    pub host_start: u32,
    pub size: u32,
}

/// A container as recorded under `<root>/pods/<id>/containers/<name>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub pod_id: String,
    pub args: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub pid: Option<ProcRef>,
    #[serde(default)]
    pub monitor: Option<ProcRef>,
    /// Why it could not start (e.g. executable not found).
    #[serde(default)]
    pub start_error: Option<String>,
    /// What it was asked to be (for `pod generate`); absent in records of older podbox versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ContainerSpec>,
    /// The image it runs from (name) and its manifest digest: `image rm` and `prune` keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The signal `stop` sends first (the image's StopSignal); None: SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// Its cgroup (`linux.cgroupsPath`), recorded before any of its processes exists: removal
    /// finds them there, whatever PIDs were (or were not) recorded.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Made by `create` (CRI's CreateContainer) and waiting for `start`: `gc` keeps it, though
    /// no monitor was ever forked for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_start: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    /// Ended, and its monitor will start it again after a back-off (restart policy).
    Restarting,
    Exited,
}

impl ContainerState {
    /// Still driven by its monitor: running, or about to be started again.
    pub fn is_active(self) -> bool {
        matches!(self, ContainerState::Running | ContainerState::Restarting)
    }
}

/// A container record with its live state, as listings show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerStatus {
    #[serde(flatten)]
    pub record: ContainerRecord,
    pub state: ContainerState,
    #[serde(default)]
    pub exit: Option<ExitRecord>,
    /// How often its monitor has started it again.
    #[serde(default)]
    pub restarts: u32,
    /// How the previous run ended, for a container that was restarted.
    #[serde(default)]
    pub last_exit: Option<ExitRecord>,
    /// Running, started (startup probe) and ready (readiness probe), as Kubernetes counts a
    /// container ready; always false for init containers.
    #[serde(default)]
    pub ready: bool,
    /// What its prober found, for a container with probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<crate::container::probe::ProbeState>,
}
