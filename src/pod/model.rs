//! The pod model: validated descriptions of a pod and its containers (what to build). The
//! records of what was built live in records.rs, re-exported here. Pure data and validation; no
//! kernel calls.

use std::collections::{BTreeMap, BTreeSet};
use serde::{Deserialize, Serialize};

use crate::network::{PortMapping, Protocol};

use super::PodError;
// The name rule lives in names.rs (volumes need it too, and model.rs needs volumes' types);
// re-exported where callers have always found it.
pub use super::names::validate_name;
pub use super::records::{ContainerRecord, ContainerState, ContainerStatus, PodPhase, PodRecord, UserRange};
use super::volumes::{Volume, VolumeMount};

/// A container's output in its state directory (rotated to `container.log.1`, `.2`, …).
pub const LOG_FILE: &str = "container.log";

/// What a user asked for: a pod with its containers (from flags or a manifest).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSpec {
    pub name: String,
    pub hostname: Option<String>,
    pub share_pid: bool,
    /// false: only `lo` (like `--network none`).
    pub network: bool,
    /// Namespaces ("net", "pid", "ipc", "uts") the pod shares with the node instead of getting
    /// its own (CRI's NamespaceMode NODE: hostNetwork, hostPID, hostIPC).
    pub node_namespaces: BTreeSet<String>,
    pub ports: Vec<PortMapping>,
    pub containers: Vec<ContainerSpec>,
    /// Run one after another, each to completion, before `containers` start (`pod apply`).
    pub init_containers: Vec<ContainerSpec>,
    /// Volumes its containers may mount (`pod create --volume`, a manifest's `spec.volumes`).
    pub volumes: Vec<Volume>,
    /// The group that owns the pod's volumes (a manifest's `securityContext.fsGroup`).
    pub fs_group: Option<u32>,
    /// terminationGracePeriodSeconds: the default grace of `pod stop` and `stop`.
    pub grace_seconds: Option<u64>,
    /// `pod create --userns`, a manifest's `hostUsers: false`: the pod's containers run in a user
    /// namespace of the pod, as root inside and an unprivileged host id range outside.
    pub userns: bool,
    /// A manifest's metadata.labels: recorded, written back by `pod generate`.
    pub labels: BTreeMap<String, String>,
    /// Fields of a manifest that were accepted and ignored ("PATH: REASON").
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerSpec {
    pub name: String,
    /// Command and arguments (a manifest's `command` followed by `args`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<(u32, u32)>,
    /// Ports the container declares (containerPort/protocol), for diagnosis.
    pub ports: Vec<(u16, Protocol)>,
    /// Supplementary groups (--group-add).
    pub group_add: Vec<u32>,
    pub security: Security,
    pub resources: Resources,
    /// Whether its monitor starts it again when it ends (a manifest's pod-wide restartPolicy,
    /// or `run --restart`).
    pub restart: crate::container::RestartPolicy,
    /// The image it runs from (`run --image`, a manifest's `image:`); None: the `--rootfs` dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// None: Kubernetes' default (Always for `:latest`, else IfNotPresent).
    pub pull_policy: Option<PullPolicy>,
    /// With an image: replaces its Entrypoint (a manifest's `command`, `run --entrypoint`).
    pub entrypoint: Option<Vec<String>>,
    /// With an image: replaces its Cmd (a manifest's `args`, `run`'s trailing arguments).
    pub cmd: Option<Vec<String>>,
    /// securityContext.runAsNonRoot: refuse to start when the user (given or the image's) is 0.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub run_as_non_root: bool,
    /// The size cap of its log (rotation).
    pub log: crate::container::LogLimits,
    /// The size of the tmpfs holding its writable layer; None: the layer lives in the state
    /// root, uncapped.
    pub writable_size: Option<u64>,
    /// Volumes of the pod it mounts (`volumeMounts`, `run -v/--mount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<VolumeMount>,
    /// Liveness, readiness and startup probes, run beside the container by its monitor's prober.
    #[serde(default, skip_serializing_if = "crate::container::probe::Probes::is_empty")]
    pub probes: crate::container::probe::Probes,
    /// Lifecycle hooks: run right after the start (a failure stops the container), and before
    /// SIGTERM when the container is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<crate::container::probe::Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<crate::container::probe::Action>,
    /// stdin (and a tty) kept open by its monitor for `attach` clients (CRI stdin/tty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<crate::container::attach::AttachOptions>,
    /// An init container: runs to completion before the pod's other containers start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
}

/// When to pull a container's image (Kubernetes' imagePullPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "Always" => Ok(PullPolicy::Always),
            "IfNotPresent" => Ok(PullPolicy::IfNotPresent),
            "Never" => Ok(PullPolicy::Never),
            other => Err(format!("{other:?}: must be Always, IfNotPresent or Never")),
        }
    }
}

/// How much of the kernel a container may reach (--cap-add, --privileged, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Every capability, no seccomp filter, no masked or read-only paths, every device.
    pub privileged: bool,
    /// `--security-opt seccomp=unconfined`: no seccomp filter.
    pub seccomp_unconfined: bool,
    /// A read-only root file system.
    pub read_only: bool,
    /// A manifest's `allowPrivilegeEscalation: true`: no no_new_privs (set-uid binaries work).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_privilege_escalation: bool,
    /// A manifest's `seccompProfile: {type: Localhost}`: the profile's path below the seccomp
    /// profile root; `seccomp_profile` is the profile read from there (by `pod apply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_localhost: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<oci_spec::runtime::LinuxSeccomp>,
    /// Namespaced sysctls (a manifest's pod `securityContext.sysctls`), set in the pod's
    /// namespaces by each container's init.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<(String, String)>,
    /// Paths masked / made read-only instead of podbox's defaults (CRI's masked_paths and
    /// readonly_paths); None: the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
}

/// Limits enforced through the container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub memory_bytes: Option<i64>,
    /// CPU limit in thousandths of a CPU (CFS quota).
    pub cpu_millis: Option<u64>,
    /// CPU request in thousandths of a CPU (relative weight: cpu.shares).
    pub cpu_request_millis: Option<u64>,
    pub pids: Option<i64>,
}

/// The ID the kernel reads as "no ID": `setresuid(-1, …)` leaves the uid unchanged, so a
/// container asking for it would keep running as root.
pub const KERNEL_NO_ID: u32 = u32::MAX;

impl ContainerSpec {
    /// What the flags and manifests cannot check on their own: IDs the kernel treats specially,
    /// and environment variables that cannot be passed to exec or would be misread.
    pub fn validate(&self) -> Result<(), PodError> {
        let bad = |msg: String| PodError::Invalid(format!("container {}: {msg}", self.name));
        if let Some((uid, gid)) = self.user
            && (uid == KERNEL_NO_ID || gid == KERNEL_NO_ID) {
                return Err(bad(format!("user {uid}:{gid}: {KERNEL_NO_ID} is not an ID (to the kernel it means \"leave unchanged\", i.e. root); use 0-{}", KERNEL_NO_ID - 1)));
            }
        if self.group_add.contains(&KERNEL_NO_ID) {
            return Err(bad(format!("group {KERNEL_NO_ID} is not an ID; use 0-{}", KERNEL_NO_ID - 1)));
        }
        for (k, v) in &self.env {
            validate_env_name(k).map_err(&bad)?;
            if v.contains('\0') {
                return Err(bad(format!("environment variable {k}: the value contains a NUL byte")));
            }
        }
        Ok(())
    }
}

/// An environment variable's name: not empty, and without '=', NUL or a line break (which
/// would end the name early, or forge another variable in `env`/`/proc/PID/environ` readers).
pub fn validate_env_name(k: &str) -> Result<(), String> {
    if k.is_empty() || k.contains(['=', '\0', '\n', '\r']) {
        return Err(format!("environment variable name {k:?}: must be non-empty, without '=', NUL or line breaks"));
    }
    Ok(())
}

impl PodSpec {
    /// The volume mounts of every container, as (list, index, mounts) for `volumes::check`.
    pub fn mount_lists(&self) -> Vec<(&'static str, String, &[VolumeMount])> {
        let init = self.init_containers.iter().enumerate().map(|(i, c)| ("initContainers", i.to_string(), c.mounts.as_slice()));
        init.chain(self.containers.iter().enumerate().map(|(i, c)| ("containers", i.to_string(), c.mounts.as_slice()))).collect()
    }

    pub fn validate(&self) -> Result<Vec<String>, PodError> {
        validate_name("pod", &self.name)?;
        if let Some(h) = &self.hostname {
            validate_name("hostname", h)?;
        }
        let mut warnings = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut declared: BTreeMap<(u16, Protocol), String> = BTreeMap::new();
        for c in self.init_containers.iter().chain(&self.containers) {
            validate_name("container", &c.name)?;
            c.validate()?;
            if !names.insert(&c.name) {
                return Err(PodError::NameTaken { kind: "container".into(), name: c.name.clone(), pod: self.name.clone() });
            }
            for &(port, proto) in &c.ports {
                if let Some(other) = declared.insert((port, proto), c.name.clone()) {
                    warnings.push(format!(
                        "containers {other} and {} both declare port {port}/{}: they share one network namespace, so only one of them can bind it",
                        c.name,
                        proto_name(proto)
                    ));
                }
            }
        }
        let mut hostports = std::collections::HashSet::new();
        for p in &self.ports {
            if p.host_port == 0 || p.container_port == 0 {
                return Err(PodError::Invalid(format!("port mapping {}:{}: ports must be 1-65535", p.host_port, p.container_port)));
            }
            if !hostports.insert((p.host_port, p.protocol)) {
                return Err(PodError::Invalid(format!("host port {}/{} is mapped twice", p.host_port, proto_name(p.protocol))));
            }
        }
        let mounts = self.mount_lists();
        let mounts: Vec<(&str, &str, &[VolumeMount])> = mounts.iter().map(|(l, i, m)| (*l, i.as_str(), *m)).collect();
        super::volumes::check(&self.volumes, &mounts).map_err(|(field, msg)| PodError::Invalid(format!("{field}: {msg}")))?;
        if let Some(n) = self.node_namespaces.iter().find(|n| !["net", "pid", "ipc", "uts"].contains(&n.as_str())) {
            return Err(PodError::Invalid(format!("node namespace {n:?}: only net, pid, ipc and uts can be shared with the node")));
        }
        if self.node_namespaces.contains("net") && (self.network || !self.node_namespaces.contains("uts")) {
            return Err(PodError::Invalid("a pod in the node's network namespace gets no pod network and shares the node's uts namespace (its hostname) too".into()));
        }
        if !self.network && !self.ports.is_empty() {
            return Err(PodError::Invalid("port mappings need the pod network (drop --network none)".into()));
        }
        Ok(warnings)
    }
}

pub fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// `HOST:CONTAINER[/tcp|udp]` (network's parser), as a pod error.
pub fn parse_port(s: &str) -> Result<PortMapping, PodError> {
    s.parse().map_err(|e| PodError::Invalid(format!("port mapping {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "web", "a-1", "0abc", &"x".repeat(63)] {
            validate_name("pod", ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64), "ünï"] {
            assert!(validate_name("pod", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn kernel_special_ids_and_bad_env_names_are_refused() {
        let ok = ContainerSpec { name: "c".into(), user: Some((KERNEL_NO_ID - 1, 0)), group_add: vec![65535], env: vec![("A_1".into(), "x=y".into())], ..Default::default() };
        ok.validate().unwrap();
        for bad in [
            ContainerSpec { user: Some((KERNEL_NO_ID, 0)), ..ok.clone() },
            ContainerSpec { user: Some((0, KERNEL_NO_ID)), ..ok.clone() },
            ContainerSpec { group_add: vec![KERNEL_NO_ID], ..ok.clone() },
            ContainerSpec { env: vec![("A\nB".into(), "1".into())], ..ok.clone() },
            ContainerSpec { env: vec![("A=B".into(), "1".into())], ..ok.clone() },
            ContainerSpec { env: vec![("".into(), "1".into())], ..ok.clone() },
            ContainerSpec { env: vec![("A\0".into(), "1".into())], ..ok.clone() },
            ContainerSpec { env: vec![("A".into(), "1\0".into())], ..ok.clone() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn port_mappings() {
        assert_eq!(parse_port("8080:80").unwrap(), PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp });
        assert_eq!(parse_port("53:5353/udp").unwrap().protocol, Protocol::Udp);
        for bad in ["80", "0:80", "80:0", "80:80/sctp", "a:b", "70000:80", ""] {
            assert!(parse_port(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validation_catches_duplicates_and_warns_on_shared_ports() {
        let c = |n: &str, p: u16| ContainerSpec { name: n.into(), args: vec!["x".into()], ports: vec![(p, Protocol::Tcp)], ..Default::default() };
        let mut pod = PodSpec { name: "p".into(), network: true, containers: vec![c("a", 80), c("b", 80)], ..Default::default() };
        let w = pod.validate().unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("port 80/tcp"), "{w:?}");
        pod.containers.push(c("a", 81));
        assert!(matches!(pod.validate(), Err(PodError::NameTaken { .. })));
        let pod = PodSpec { name: "p".into(), network: false, ports: vec![parse_port("1:2").unwrap()], ..Default::default() };
        assert!(pod.validate().is_err());
    }
}
