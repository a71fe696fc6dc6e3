//! The Pod document as serde reads it: metadata, pod spec, containers, security contexts,
//! resources, env and ports. Unknown fields are refused (`deny_unknown_fields`); `fields::FIELDS`
//! says which known ones are honoured.

use std::collections::BTreeMap;
use serde::Deserialize;
use serde_json::Value;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Manifest {
    #[serde(default)]
    #[allow(dead_code)] // checked on the untyped document
    pub(super) api_version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) kind: Option<String>,
    pub(super) metadata: Metadata,
    pub(super) spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Metadata {
    pub(super) name: String,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Spec {
    #[serde(default)]
    pub(super) hostname: Option<String>,
    #[serde(default)]
    pub(super) share_process_namespace: bool,
    /// false: a user namespace for the pod (`pod create --userns`).
    #[serde(default)]
    pub(super) host_users: Option<bool>,
    #[serde(default)]
    pub(super) host_network: bool,
    #[serde(default, rename = "hostPID")]
    pub(super) host_pid: bool,
    #[serde(default, rename = "hostIPC")]
    pub(super) host_ipc: bool,
    #[serde(default)]
    pub(super) restart_policy: Option<String>,
    #[serde(default)]
    pub(super) security_context: Option<PodSecurityContext>,
    #[serde(default)]
    pub(super) volumes: Vec<VolumeDoc>,
    #[serde(default)]
    pub(super) os: Option<Value>,
    pub(super) containers: Vec<Container>,
    #[serde(default)]
    pub(super) init_containers: Vec<Container>,
    #[serde(default)]
    pub(super) termination_grace_period_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct PodSecurityContext {
    #[serde(default)]
    pub(super) run_as_user: Option<u32>,
    #[serde(default)]
    pub(super) run_as_group: Option<u32>,
    #[serde(default)]
    pub(super) run_as_non_root: Option<bool>,
    #[serde(default)]
    pub(super) supplemental_groups: Vec<u32>,
    #[serde(default)]
    pub(super) seccomp_profile: Option<SeccompProfile>,
    #[serde(default)]
    pub(super) fs_group: Option<u32>,
    #[serde(default)]
    pub(super) sysctls: Vec<Sysctl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Sysctl {
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SecurityContext {
    #[serde(default)]
    pub(super) capabilities: Option<Capabilities>,
    #[serde(default)]
    pub(super) privileged: Option<bool>,
    #[serde(default)]
    pub(super) read_only_root_filesystem: Option<bool>,
    #[serde(default)]
    pub(super) run_as_user: Option<u32>,
    #[serde(default)]
    pub(super) run_as_group: Option<u32>,
    #[serde(default)]
    pub(super) run_as_non_root: Option<bool>,
    #[serde(default)]
    pub(super) seccomp_profile: Option<SeccompProfile>,
    #[serde(default)]
    pub(super) allow_privilege_escalation: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Capabilities {
    #[serde(default)]
    pub(super) add: Vec<String>,
    #[serde(default)]
    pub(super) drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct SeccompProfile {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) localhost_profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Container {
    pub(super) name: String,
    /// The image the container runs from; without one it runs from `--rootfs`.
    #[serde(default)]
    pub(super) image: Option<String>,
    #[serde(default)]
    pub(super) image_pull_policy: Option<String>,
    #[serde(default)]
    pub(super) command: Vec<String>,
    #[serde(default)]
    pub(super) args: Vec<String>,
    #[serde(default)]
    pub(super) env: Vec<EnvVar>,
    #[serde(default)]
    pub(super) working_dir: Option<String>,
    #[serde(default)]
    pub(super) ports: Vec<Port>,
    #[serde(default)]
    pub(super) resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub(super) security_context: Option<SecurityContext>,
    #[serde(default)]
    pub(super) volume_mounts: Vec<VolumeMountDoc>,
    #[serde(default)]
    pub(super) liveness_probe: Option<ProbeDoc>,
    #[serde(default)]
    pub(super) readiness_probe: Option<ProbeDoc>,
    #[serde(default)]
    pub(super) startup_probe: Option<ProbeDoc>,
    #[serde(default)]
    pub(super) lifecycle: Option<LifecycleDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceRequirements {
    #[serde(default)]
    pub(super) limits: Option<ResourceList>,
    #[serde(default)]
    pub(super) requests: Option<ResourceList>,
}

/// Quantities are strings or plain numbers in manifests (`cpu: 0.5`, `memory: 64Mi`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResourceList {
    #[serde(default)]
    pub(super) memory: Option<Quantity>,
    #[serde(default)]
    pub(super) cpu: Option<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Quantity {
    Text(String),
    Number(f64),
}

impl Quantity {
    pub(super) fn text(&self) -> String {
        match self {
            Quantity::Text(s) => s.clone(),
            Quantity::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvVar {
    pub(super) name: String,
    #[serde(default)]
    pub(super) value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct Port {
    pub(super) container_port: u16,
    #[serde(default)]
    pub(super) host_port: Option<u16>,
    #[serde(default)]
    pub(super) protocol: Option<String>,
}
