//! The one table of what podbox does with each field of a Kubernetes core/v1 Pod, and the walk
//! that applies it to a parsed document before the typed parse sees it: honoured fields stay,
//! accepted-and-ignored ones are noted and removed, refused ones and unknown names are errors
//! naming the field's path (an unknown name with the nearest known one).
//!
//! Why a table rather than `deny_unknown_fields` alone: manifests written by kubectl, podman or a
//! cluster carry dozens of fields only a control plane reads. Strictness stays for what changes
//! what runs; the table says, per field, which kind it is, and the README shows the same table.

mod walk;

pub use walk::{suggest, walk};

use serde_json::Value;

/// What podbox does with a field.
#[derive(Debug, Clone, Copy)]
pub enum Class {
    /// podbox does what the field says (its children, if the table lists any, are classified too).
    Honoured,
    /// Accepted and without effect, for the reason given: it belongs to the control plane or has
    /// no meaning on one node.
    Ignored(&'static str),
    /// It would change what runs and podbox cannot do it (the reason says why).
    Refused(&'static str),
    /// Fine as long as its value is one podbox behaves as anyway (`note`: why that is, listed
    /// like an ignored field; None when nothing needs saying); any other value is refused.
    OnlyIf { accept: Accept, note: Option<&'static str>, refused: &'static str },
}

/// The values an `OnlyIf` field may have.
#[derive(Debug, Clone, Copy)]
pub enum Accept {
    /// false (or null).
    False,
    /// true (or null).
    True,
    /// null, false, "", [] or {}.
    Empty,
    /// One of these strings (or null).
    OneOf(&'static [&'static str]),
}

impl Accept {
    fn accepts(self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Null) => true,
            (Accept::False, Value::Bool(b)) => !b,
            (Accept::True, Value::Bool(b)) => *b,
            (Accept::Empty, Value::Bool(b)) => !b,
            (Accept::Empty, Value::String(s)) => s.is_empty(),
            (Accept::Empty, Value::Array(a)) => a.is_empty(),
            (Accept::Empty, Value::Object(o)) => o.is_empty(),
            (Accept::OneOf(ok), Value::String(s)) => ok.contains(&s.as_str()),
            _ => false,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Accept::False => "false".into(),
            Accept::True => "true".into(),
            Accept::Empty => "empty".into(),
            Accept::OneOf(v) => v.join(" or "),
        }
    }
}

/// A field by its path: `spec.containers[].ports[].hostPort` (`[]`: any element of a list).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub path: &'static str,
    pub class: Class,
}

const fn f(path: &'static str, class: Class) -> Field {
    Field { path, class }
}

const API: &str = "bookkeeping of the API server";
const SCHED: &str = "scheduling: the pod runs on this node";
const NO_API: &str = "no API server on a podbox node";
const NO_VOLUMES: &str = "podbox has emptyDir, hostPath, configMap and secret volumes only";
const NO_PULL: &str = "pull secrets live in the API server: podbox pulls with its own credentials (--creds, auth.json)";
const NO_SERVICES: &str = "no Services on a podbox node";

use Class::*;

/// Every field of core/v1 Pod (Kubernetes 1.32), in the order the walk visits them: volumes
/// before containers, so that a pod whose container mounts an unsupported volume is refused
/// naming the volume's type.
pub const FIELDS: &[Field] = &[
    f("apiVersion", Honoured),
    f("kind", Honoured),
    f("metadata", Honoured),
    f("metadata.name", Honoured),
    f("metadata.labels", Honoured),
    f("metadata.generateName", Ignored("podbox uses metadata.name")),
    f("metadata.namespace", Ignored("podbox has no object namespaces")),
    f("metadata.annotations", Ignored("read by controllers and tools, not by a runtime")),
    f("metadata.uid", Ignored(API)),
    f("metadata.resourceVersion", Ignored(API)),
    f("metadata.generation", Ignored(API)),
    f("metadata.creationTimestamp", Ignored(API)),
    f("metadata.deletionTimestamp", Ignored(API)),
    f("metadata.deletionGracePeriodSeconds", Ignored(API)),
    f("metadata.ownerReferences", Ignored("garbage collection of the control plane")),
    f("metadata.finalizers", Ignored(API)),
    f("metadata.managedFields", Ignored(API)),
    f("metadata.selfLink", Ignored(API)),
    f("spec", Honoured),
    // Volumes: each type by name, so that the error says which one podbox lacks. The projected
    // service-account token volume every API-server pod has is taken out before the walk
    // (`drop_service_account_volume`).
    f("spec.volumes", Honoured),
    f("spec.volumes[].name", Honoured),
    f("spec.volumes[].hostPath", Honoured),
    f("spec.volumes[].hostPath.path", Honoured),
    f("spec.volumes[].hostPath.type", Honoured),
    f("spec.volumes[].emptyDir", Honoured),
    f("spec.volumes[].emptyDir.medium", Honoured),
    // A hard limit for medium: Memory; on disk noted as not enforced (no eviction).
    f("spec.volumes[].emptyDir.sizeLimit", Honoured),
    // From a ConfigMap / Secret document of the same manifest.
    f("spec.volumes[].configMap", Honoured),
    f("spec.volumes[].configMap.name", Honoured),
    f("spec.volumes[].configMap.items", Honoured),
    f("spec.volumes[].configMap.items[].key", Honoured),
    f("spec.volumes[].configMap.items[].path", Honoured),
    f("spec.volumes[].configMap.items[].mode", Honoured),
    f("spec.volumes[].configMap.defaultMode", Honoured),
    f("spec.volumes[].configMap.optional", Honoured),
    f("spec.volumes[].secret", Honoured),
    f("spec.volumes[].secret.secretName", Honoured),
    f("spec.volumes[].secret.items", Honoured),
    f("spec.volumes[].secret.items[].key", Honoured),
    f("spec.volumes[].secret.items[].path", Honoured),
    f("spec.volumes[].secret.items[].mode", Honoured),
    f("spec.volumes[].secret.defaultMode", Honoured),
    f("spec.volumes[].secret.optional", Honoured),
    f("spec.volumes[].projected", Refused(NO_VOLUMES)),
    f("spec.volumes[].downwardAPI", Refused(NO_VOLUMES)),
    f("spec.volumes[].persistentVolumeClaim", Refused("no persistent volumes on a podbox node")),
    f("spec.volumes[].ephemeral", Refused("no persistent volumes on a podbox node")),
    f("spec.volumes[].csi", Refused("no CSI drivers on a podbox node")),
    f("spec.volumes[].image", Refused(NO_VOLUMES)),
    f("spec.volumes[].nfs", Refused(NO_VOLUMES)),
    f("spec.volumes[].iscsi", Refused(NO_VOLUMES)),
    f("spec.volumes[].gitRepo", Refused(NO_VOLUMES)),
    f("spec.volumes[].gcePersistentDisk", Refused(NO_VOLUMES)),
    f("spec.volumes[].awsElasticBlockStore", Refused(NO_VOLUMES)),
    f("spec.volumes[].glusterfs", Refused(NO_VOLUMES)),
    f("spec.volumes[].rbd", Refused(NO_VOLUMES)),
    f("spec.volumes[].flexVolume", Refused(NO_VOLUMES)),
    f("spec.volumes[].cinder", Refused(NO_VOLUMES)),
    f("spec.volumes[].cephfs", Refused(NO_VOLUMES)),
    f("spec.volumes[].flocker", Refused(NO_VOLUMES)),
    f("spec.volumes[].fc", Refused(NO_VOLUMES)),
    f("spec.volumes[].azureFile", Refused(NO_VOLUMES)),
    f("spec.volumes[].azureDisk", Refused(NO_VOLUMES)),
    f("spec.volumes[].vsphereVolume", Refused(NO_VOLUMES)),
    f("spec.volumes[].quobyte", Refused(NO_VOLUMES)),
    f("spec.volumes[].photonPersistentDisk", Refused(NO_VOLUMES)),
    f("spec.volumes[].portworxVolume", Refused(NO_VOLUMES)),
    f("spec.volumes[].scaleIO", Refused(NO_VOLUMES)),
    f("spec.volumes[].storageos", Refused(NO_VOLUMES)),
    // Each element is classified as `spec.containers[]` is (see `canonical`).
    f("spec.initContainers", Honoured),
    f("spec.ephemeralContainers", OnlyIf { accept: Accept::Empty, note: None, refused: "ephemeral containers are not built; use `podbox exec`" }),
    f("spec.containers", Honoured),
    f("spec.containers[].name", Honoured),
    // Recorded and written back by `pod generate`; the container runs from --rootfs.
    f("spec.containers[].image", Honoured),
    f("spec.containers[].command", Honoured),
    f("spec.containers[].args", Honoured),
    f("spec.containers[].workingDir", Honoured),
    f("spec.containers[].env", Honoured),
    f("spec.containers[].env[].name", Honoured),
    f("spec.containers[].env[].value", Honoured),
    f("spec.containers[].env[].valueFrom", Refused("no API objects to take values from")),
    f("spec.containers[].envFrom", Refused("no ConfigMaps or Secrets on a podbox node")),
    f("spec.containers[].ports", Honoured),
    f("spec.containers[].ports[].containerPort", Honoured),
    f("spec.containers[].ports[].hostPort", Honoured),
    f("spec.containers[].ports[].protocol", Honoured),
    f("spec.containers[].ports[].name", Ignored("port names serve Services and probes")),
    f("spec.containers[].ports[].hostIP", OnlyIf { accept: Accept::Empty, note: None, refused: "host ports listen on every address of the node" }),
    f("spec.containers[].resources", Honoured),
    f("spec.containers[].resources.limits", Honoured),
    f("spec.containers[].resources.limits.cpu", Honoured),
    f("spec.containers[].resources.limits.memory", Honoured),
    f("spec.containers[].resources.limits.ephemeral-storage", Refused("podbox does not limit disk use")),
    f("spec.containers[].resources.requests", Honoured),
    f("spec.containers[].resources.requests.cpu", Honoured),
    f("spec.containers[].resources.requests.memory", Honoured),
    f("spec.containers[].resources.requests.ephemeral-storage", Ignored(SCHED)),
    f("spec.containers[].resources.claims", Refused("no dynamic resource allocation")),
    f("spec.containers[].resizePolicy", Ignored("podbox does not resize containers in place")),
    f("spec.containers[].restartPolicy", Refused("per-container restart policies (sidecars) are not built: spec.restartPolicy applies")),
    f("spec.containers[].volumeMounts", Honoured),
    f("spec.containers[].volumeMounts[].name", Honoured),
    f("spec.containers[].volumeMounts[].mountPath", Honoured),
    f("spec.containers[].volumeMounts[].readOnly", Honoured),
    f("spec.containers[].volumeMounts[].subPath", Honoured),
    // None or HostToContainer; Bidirectional is refused by the typed parse.
    f("spec.containers[].volumeMounts[].mountPropagation", Honoured),
    f("spec.containers[].volumeMounts[].subPathExpr", Refused("no downward API to expand it from")),
    f("spec.containers[].volumeMounts[].recursiveReadOnly", OnlyIf { accept: Accept::OneOf(&["Disabled"]), note: None, refused: "a read-only volume mount is read-only at its top mount" }),
    f("spec.containers[].volumeDevices", OnlyIf { accept: Accept::Empty, note: None, refused: NO_VOLUMES }),
    // Run by a prober beside each run of the container (src/container/probe.rs). The
    // readiness and startup probes have the liveness probe's fields (see `canonical`).
    f("spec.containers[].livenessProbe", Honoured),
    f("spec.containers[].livenessProbe.exec", Honoured),
    f("spec.containers[].livenessProbe.exec.command", Honoured),
    f("spec.containers[].livenessProbe.httpGet", Honoured),
    f("spec.containers[].livenessProbe.httpGet.path", Honoured),
    // A number; named ports are refused by the typed parse.
    f("spec.containers[].livenessProbe.httpGet.port", Honoured),
    f("spec.containers[].livenessProbe.httpGet.host", Honoured),
    f("spec.containers[].livenessProbe.httpGet.scheme", OnlyIf { accept: Accept::OneOf(&["HTTP"]), note: None, refused: "podbox probes speak plain HTTP" }),
    f("spec.containers[].livenessProbe.httpGet.httpHeaders", Refused("podbox probes send no extra headers")),
    f("spec.containers[].livenessProbe.tcpSocket", Honoured),
    f("spec.containers[].livenessProbe.tcpSocket.port", Honoured),
    f("spec.containers[].livenessProbe.tcpSocket.host", Honoured),
    f("spec.containers[].livenessProbe.grpc", Refused("podbox probes have no gRPC client")),
    f("spec.containers[].livenessProbe.initialDelaySeconds", Honoured),
    f("spec.containers[].livenessProbe.periodSeconds", Honoured),
    f("spec.containers[].livenessProbe.timeoutSeconds", Honoured),
    f("spec.containers[].livenessProbe.successThreshold", Honoured),
    f("spec.containers[].livenessProbe.failureThreshold", Honoured),
    f("spec.containers[].livenessProbe.terminationGracePeriodSeconds", Ignored("a failed liveness probe kills the container at once")),
    f("spec.containers[].readinessProbe", Honoured),
    f("spec.containers[].startupProbe", Honoured),
    // postStart runs after the start, preStop before SIGTERM (preStop has postStart's fields).
    f("spec.containers[].lifecycle", Honoured),
    f("spec.containers[].lifecycle.postStart", Honoured),
    f("spec.containers[].lifecycle.postStart.exec", Honoured),
    f("spec.containers[].lifecycle.postStart.exec.command", Honoured),
    f("spec.containers[].lifecycle.postStart.httpGet", Honoured),
    f("spec.containers[].lifecycle.postStart.httpGet.path", Honoured),
    f("spec.containers[].lifecycle.postStart.httpGet.port", Honoured),
    f("spec.containers[].lifecycle.postStart.httpGet.host", Honoured),
    f("spec.containers[].lifecycle.postStart.httpGet.scheme", OnlyIf { accept: Accept::OneOf(&["HTTP"]), note: None, refused: "podbox hooks speak plain HTTP" }),
    f("spec.containers[].lifecycle.postStart.httpGet.httpHeaders", Refused("podbox hooks send no extra headers")),
    f("spec.containers[].lifecycle.postStart.tcpSocket", Refused("a deprecated hook that Kubernetes does not run either")),
    f("spec.containers[].lifecycle.postStart.sleep", Refused("not built: use exec with sleep")),
    f("spec.containers[].lifecycle.preStop", Honoured),
    f("spec.containers[].lifecycle.stopSignal", Refused("podbox stops with SIGTERM")),
    f("spec.containers[].terminationMessagePath", Ignored("podbox records the exit status and the log instead")),
    f("spec.containers[].terminationMessagePolicy", Ignored("podbox records the exit status and the log instead")),
    f("spec.containers[].imagePullPolicy", Honoured),
    f("spec.containers[].stdin", OnlyIf { accept: Accept::False, note: None, refused: "a manifest's containers get no stdin" }),
    f("spec.containers[].stdinOnce", OnlyIf { accept: Accept::False, note: None, refused: "a manifest's containers get no stdin" }),
    f("spec.containers[].tty", OnlyIf { accept: Accept::False, note: None, refused: "a manifest's containers get no terminal" }),
    f("spec.containers[].securityContext", Honoured),
    f("spec.containers[].securityContext.capabilities", Honoured),
    f("spec.containers[].securityContext.capabilities.add", Honoured),
    f("spec.containers[].securityContext.capabilities.drop", Honoured),
    f("spec.containers[].securityContext.privileged", Honoured),
    f("spec.containers[].securityContext.readOnlyRootFilesystem", Honoured),
    f("spec.containers[].securityContext.runAsUser", Honoured),
    f("spec.containers[].securityContext.runAsGroup", Honoured),
    f("spec.containers[].securityContext.runAsNonRoot", Honoured),
    // Unset or false: no_new_privs (podbox's default); true: without it.
    f("spec.containers[].securityContext.allowPrivilegeEscalation", Honoured),
    f("spec.containers[].securityContext.seccompProfile", Honoured),
    // RuntimeDefault, Unconfined or Localhost (checked by the typed parse).
    f("spec.containers[].securityContext.seccompProfile.type", Honoured),
    // Relative to `pod apply --seccomp-root` (as to the kubelet's seccomp profile root).
    f("spec.containers[].securityContext.seccompProfile.localhostProfile", Honoured),
    f("spec.containers[].securityContext.procMount", OnlyIf { accept: Accept::OneOf(&["Default"]), note: None, refused: "podbox masks /proc as usual" }),
    f("spec.containers[].securityContext.seLinuxOptions", Refused("podbox sets no SELinux labels")),
    f("spec.containers[].securityContext.appArmorProfile", Refused("podbox loads no AppArmor profiles")),
    f("spec.containers[].securityContext.windowsOptions", Ignored("Windows only")),
    f("spec.restartPolicy", Honoured),
    f("spec.hostname", Honoured),
    f("spec.shareProcessNamespace", Honoured),
    // true: the node's namespace (hostNetwork also its UTS one), neither created nor pinned.
    f("spec.hostNetwork", Honoured),
    f("spec.hostPID", Honoured),
    f("spec.hostIPC", Honoured),
    f("spec.hostUsers", Honoured),
    f("spec.securityContext", Honoured),
    f("spec.securityContext.runAsUser", Honoured),
    f("spec.securityContext.runAsGroup", Honoured),
    f("spec.securityContext.runAsNonRoot", Honoured),
    f("spec.securityContext.supplementalGroups", Honoured),
    f("spec.securityContext.supplementalGroupsPolicy", OnlyIf { accept: Accept::OneOf(&["Merge"]), note: None, refused: "podbox merges the groups (Merge)" }),
    f("spec.securityContext.seccompProfile", Honoured),
    // RuntimeDefault, Unconfined or Localhost (checked by the typed parse).
    f("spec.securityContext.seccompProfile.type", Honoured),
    // Relative to `pod apply --seccomp-root` (as to the kubelet's seccomp profile root).
    f("spec.securityContext.seccompProfile.localhostProfile", Honoured),
    // Owns the volumes podbox makes (set-gid emptyDirs) and is a supplementary group.
    f("spec.securityContext.fsGroup", Honoured),
    f("spec.securityContext.fsGroupChangePolicy", Ignored("applies to volumes")),
    // Namespaced ones only (checked by the typed parse).
    f("spec.securityContext.sysctls", Honoured),
    f("spec.securityContext.sysctls[].name", Honoured),
    f("spec.securityContext.sysctls[].value", Honoured),
    f("spec.securityContext.seLinuxOptions", Refused("podbox sets no SELinux labels")),
    f("spec.securityContext.seLinuxChangePolicy", Ignored("applies to volumes")),
    f("spec.securityContext.appArmorProfile", Refused("podbox loads no AppArmor profiles")),
    f("spec.securityContext.windowsOptions", Ignored("Windows only")),
    f("spec.os", Honoured),
    f("spec.os.name", OnlyIf { accept: Accept::OneOf(&["linux"]), note: None, refused: "podbox runs Linux containers" }),
    f("spec.dnsPolicy", OnlyIf {
        accept: Accept::OneOf(&["ClusterFirst", "ClusterFirstWithHostNet", "Default"]),
        note: Some("no cluster DNS: the pod uses the node's resolvers (as with Default)"),
        refused: "None needs dnsConfig, which podbox does not build",
    }),
    f("spec.dnsConfig", Refused("podbox writes the pod's resolv.conf from the node's")),
    f("spec.hostAliases", Refused("podbox writes /etc/hosts without extra entries")),
    f("spec.setHostnameAsFQDN", OnlyIf { accept: Accept::False, note: None, refused: "no cluster DNS domain" }),
    f("spec.subdomain", Ignored("no cluster DNS")),
    // The default of `pod stop -t` / `stop -t` for the pod.
    f("spec.terminationGracePeriodSeconds", Honoured),
    f("spec.activeDeadlineSeconds", Refused("podbox does not end pods after a deadline")),
    f("spec.runtimeClassName", Refused("podbox is the only runtime")),
    f("spec.resources", Refused("pod-level resources are not built: give them per container")),
    f("spec.resourceClaims", Refused("no dynamic resource allocation")),
    f("spec.serviceAccountName", Ignored(NO_API)),
    f("spec.serviceAccount", Ignored(NO_API)),
    f("spec.automountServiceAccountToken", Ignored(NO_API)),
    f("spec.enableServiceLinks", Ignored(NO_SERVICES)),
    f("spec.imagePullSecrets", Ignored(NO_PULL)),
    f("spec.readinessGates", Ignored(NO_SERVICES)),
    f("spec.nodeName", Ignored(SCHED)),
    f("spec.nodeSelector", Ignored(SCHED)),
    f("spec.affinity", Ignored(SCHED)),
    f("spec.tolerations", Ignored(SCHED)),
    f("spec.schedulerName", Ignored(SCHED)),
    f("spec.schedulingGates", Ignored(SCHED)),
    f("spec.priorityClassName", Ignored(SCHED)),
    f("spec.priority", Ignored(SCHED)),
    f("spec.preemptionPolicy", Ignored(SCHED)),
    f("spec.overhead", Ignored(SCHED)),
    f("spec.topologySpreadConstraints", Ignored(SCHED)),
    f("status", Ignored("reported by the kubelet; see `podbox pod inspect`")),
];

/// Fields that were accepted and ignored, each once: "PATH: REASON".
pub type Notes = Vec<String>;

#[cfg(test)]
mod tests {
    use super::*;
    use super::walk::lookup;

    #[test]
    fn table_is_consistent() {
        for (i, f) in FIELDS.iter().enumerate() {
            assert!(!FIELDS[..i].iter().any(|g| g.path == f.path), "{} listed twice", f.path);
            // Every field's parent is listed (as an object, or as a list of objects) and honoured.
            if let Some((parent, _)) = f.path.rsplit_once('.') {
                let p = lookup(parent.strip_suffix("[]").unwrap_or(parent)).unwrap_or_else(|| panic!("{}: parent not listed", f.path));
                assert!(matches!(p.class, Honoured), "{}: parent not honoured", f.path);
            }
        }
    }

    #[test]
    fn suggestions_find_typos() {
        assert_eq!(suggest("spec", "contianers"), Some("containers"));
        assert_eq!(suggest("spec.containers[]", "imagePullPolicyy"), Some("imagePullPolicy"));
        assert_eq!(suggest("spec.containers[].ports[]", "ContainerPort"), Some("containerPort"));
        assert_eq!(suggest("", "metdata"), Some("metadata"));
        assert_eq!(suggest("spec", "frobnicate"), None);
    }
}
