//! `pod generate`: a pod as it was created, written as a Kubernetes core/v1 Pod manifest that
//! `pod apply` takes back (and a cluster would too), as `podman kube generate` does for podman.
//! Built from the records only (pod record, each container's recorded spec), never from /proc.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::container::RestartPolicy;
use crate::network::Protocol;
use crate::container::probe::Action;
use crate::pod::model::{ContainerSpec, ContainerStatus, PodRecord, Resources};
use crate::pod::volumes::{HostPathType, Volume, VolumeSource};

/// The image of a container that was not given one (it ran from `--rootfs`): podbox's usual root
/// file system is Debian's busybox-static, imported as the image `busybox` by the tests and demos,
/// so a cluster running the manifest gets the same programs.
pub const DEFAULT_IMAGE: &str = "busybox";

/// The manifest, and notes on what it cannot express (e.g. a pids limit).
pub fn pod_manifest(pod: &PodRecord, containers: &[ContainerStatus]) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let specs: Vec<ContainerSpec> = containers
        .iter()
        .map(|c| {
            c.record.spec.clone().unwrap_or_else(|| {
                notes.push(format!("container {}: recorded by an older podbox; only its command is known", c.record.name));
                ContainerSpec { name: c.record.name.clone(), args: c.record.args.clone(), ..Default::default() }
            })
        })
        .collect();
    // Init containers go to their own list, in the order they ran (their start times).
    let (mut inits, specs): (Vec<ContainerSpec>, Vec<ContainerSpec>) = specs.into_iter().partition(|c| c.init);
    let started = |n: &str| containers.iter().find(|c| c.record.name == n).and_then(|c| c.record.started_at.clone()).unwrap_or_default();
    inits.sort_by_key(|c| started(&c.name));
    let out_containers = app_containers(&specs, pod.ports.clone(), &mut notes);
    if specs.is_empty() {
        notes.push("the pod has no containers; Kubernetes requires at least one".into());
    }
    let mut spec = Map::new();
    spec.insert("containers".into(), Value::Array(out_containers));
    if !inits.is_empty() {
        spec.insert("initContainers".into(), inits.iter().map(|c| container(c, vec![], &mut notes)).collect());
    }
    if !pod.volumes.is_empty() {
        spec.insert("volumes".into(), pod.volumes.iter().map(|v| volume(v, &mut notes)).collect());
    }
    insert_pod_fields(&mut spec, pod);
    // Kubernetes has one policy per pod; podbox containers started with `run` may differ.
    let policies: Vec<RestartPolicy> = specs.iter().map(|c| c.restart).collect();
    if let Some(&first) = policies.first() {
        if policies.iter().any(|&p| p != first) {
            notes.push("the containers have different restart policies; Kubernetes has one per pod: the first container's is used".into());
        }
        spec.insert("restartPolicy".into(), json!(first));
    }
    let pod_sc = pod_security_context(pod, &specs, &mut notes);
    if !pod_sc.is_empty() {
        spec.insert("securityContext".into(), Value::Object(pod_sc));
    }
    if !pod.network {
        notes.push("the pod has no network (--network none): apply the manifest with --network none to get that again".into());
    }
    let mut metadata = json!({ "name": pod.name });
    if !pod.labels.is_empty() {
        metadata["labels"] = json!(pod.labels);
    }
    (json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec }), notes)
}

/// The pod's own fields where they differ from Kubernetes' defaults: grace period, hostname,
/// user namespace, shared PID namespace and the node's namespaces.
fn insert_pod_fields(spec: &mut Map<String, Value>, pod: &PodRecord) {
    if let Some(g) = pod.grace_seconds {
        spec.insert("terminationGracePeriodSeconds".into(), json!(g));
    }
    if pod.hostname != pod.name {
        spec.insert("hostname".into(), json!(pod.hostname));
    }
    if pod.user_range.is_some() {
        spec.insert("hostUsers".into(), json!(false));
    }
    if pod.share_pid {
        spec.insert("shareProcessNamespace".into(), json!(true));
    }
    for (key, ns) in [("hostNetwork", "net"), ("hostPID", "pid"), ("hostIPC", "ipc")] {
        if pod.node_namespaces.contains(ns) {
            spec.insert(key.into(), json!(true));
        }
    }
}

fn container(c: &ContainerSpec, ports: Vec<Value>, notes: &mut Vec<String>) -> Value {
    let mut v = json!({ "name": c.name, "image": c.image.as_deref().unwrap_or(DEFAULT_IMAGE) });
    if c.image.is_some() {
        // What the user gave over the image's Entrypoint and Cmd, not the resolved command line.
        if let Some(e) = &c.entrypoint {
            v["command"] = json!(e);
        }
        if let Some(a) = &c.cmd {
            v["args"] = json!(a);
        }
    } else {
        notes.push(format!("container {}: ran from --rootfs, written as image {DEFAULT_IMAGE:?} (`podbox image import ROOTFS {DEFAULT_IMAGE}` makes it)", c.name));
        v["command"] = json!(c.args);
    }
    if !c.env.is_empty() {
        v["env"] = c.env.iter().map(|(k, val)| json!({ "name": k, "value": val })).collect();
    }
    if let Some(w) = &c.working_dir {
        v["workingDir"] = json!(w);
    }
    if !ports.is_empty() {
        v["ports"] = Value::Array(ports);
    }
    if let Some(r) = resources(&c.resources) {
        v["resources"] = r;
    }
    if c.resources.pids.is_some() {
        notes.push(format!("container {}: a pids limit has no Pod field; left out", c.name));
    }
    let sc = security_context(c);
    if !sc.is_empty() {
        v["securityContext"] = Value::Object(sc);
    }
    if !c.mounts.is_empty() {
        v["volumeMounts"] = c.mounts.iter().map(volume_mount).collect();
    }
    for (key, p) in [("livenessProbe", &c.probes.liveness), ("readinessProbe", &c.probes.readiness), ("startupProbe", &c.probes.startup)] {
        if let Some(p) = p {
            let mut o = action(&p.action);
            o["initialDelaySeconds"] = json!(p.initial_delay);
            o["periodSeconds"] = json!(p.period);
            o["timeoutSeconds"] = json!(p.timeout);
            o["successThreshold"] = json!(p.success_threshold);
            o["failureThreshold"] = json!(p.failure_threshold);
            v[key] = o;
        }
    }
    let mut lifecycle = Map::new();
    if let Some(a) = &c.post_start {
        lifecycle.insert("postStart".into(), action(a));
    }
    if let Some(a) = &c.pre_stop {
        lifecycle.insert("preStop".into(), action(a));
    }
    if !lifecycle.is_empty() {
        v["lifecycle"] = Value::Object(lifecycle);
    }
    v
}

/// The app containers, each with its ports. Host ports belong to the pod; each goes to the
/// container that declares its container port, the rest (`pod create -p`) to the first container.
fn app_containers(specs: &[ContainerSpec], mut host_ports: Vec<crate::network::PortMapping>, notes: &mut Vec<String>) -> Vec<Value> {
    let mut out_containers = Vec::new();
    for (i, c) in specs.iter().enumerate() {
        let mut ports = Vec::new();
        for &(port, proto) in &c.ports {
            let mut p = json!({ "containerPort": port, "protocol": protocol(proto) });
            if let Some(k) = host_ports.iter().position(|m| m.container_port == port && m.protocol == proto) {
                p["hostPort"] = json!(host_ports.remove(k).host_port);
            }
            ports.push(p);
        }
        if i == specs.len() - 1 {
            // Whatever no container declares: on the first one (run last, so declarations win).
            for m in host_ports.drain(..) {
                let p = json!({ "containerPort": m.container_port, "hostPort": m.host_port, "protocol": protocol(m.protocol) });
                match out_containers.first_mut().map(|c: &mut Value| &mut c["ports"]) {
                    Some(Value::Array(a)) => a.push(p),
                    Some(slot) => *slot = json!([p]),
                    None => ports.push(p),
                }
            }
        }
        out_containers.push(container(c, ports, notes));
    }
    out_containers
}

/// The pod's securityContext: the containers' supplementary groups, fsGroup, sysctls.
fn pod_security_context(pod: &PodRecord, specs: &[ContainerSpec], notes: &mut Vec<String>) -> Map<String, Value> {
    // fsGroup is a supplementary group of every container already: written once, as fsGroup.
    let groups: Vec<Vec<u32>> = specs.iter().map(|c| c.group_add.iter().copied().filter(|g| Some(*g) != pod.fs_group).collect()).collect();
    let mut pod_sc = Map::new();
    if let Some(first) = groups.first().filter(|g| !g.is_empty()) {
        if groups.iter().any(|g| g != first) {
            notes.push("the containers have different supplementary groups; Kubernetes has them per pod: the first container's are used".into());
        }
        pod_sc.insert("supplementalGroups".into(), json!(first));
    }
    if let Some(g) = pod.fs_group {
        pod_sc.insert("fsGroup".into(), json!(g));
    }
    // Sysctls are the pod's; each container carries them.
    if let Some(first) = specs.first().filter(|c| !c.security.sysctls.is_empty()) {
        pod_sc.insert("sysctls".into(), first.security.sysctls.iter().map(|(k, v)| json!({ "name": k, "value": v })).collect());
    }
    pod_sc
}

/// A container's securityContext: capabilities, privileges, seccomp, user.
fn security_context(c: &ContainerSpec) -> Map<String, Value> {
    let mut sc = Map::new();
    let s = &c.security;
    if !s.cap_add.is_empty() || !s.cap_drop.is_empty() {
        let mut caps = Map::new();
        if !s.cap_add.is_empty() {
            caps.insert("add".into(), json!(s.cap_add));
        }
        if !s.cap_drop.is_empty() {
            caps.insert("drop".into(), json!(s.cap_drop));
        }
        sc.insert("capabilities".into(), Value::Object(caps));
    }
    if s.privileged {
        sc.insert("privileged".into(), json!(true));
    }
    if s.read_only {
        sc.insert("readOnlyRootFilesystem".into(), json!(true));
    }
    if let Some(p) = &s.seccomp_localhost {
        sc.insert("seccompProfile".into(), json!({ "type": "Localhost", "localhostProfile": p }));
    } else if s.seccomp_unconfined {
        sc.insert("seccompProfile".into(), json!({ "type": "Unconfined" }));
    }
    if s.allow_privilege_escalation {
        sc.insert("allowPrivilegeEscalation".into(), json!(true));
    }
    if let Some((uid, gid)) = c.user {
        sc.insert("runAsUser".into(), json!(uid));
        sc.insert("runAsGroup".into(), json!(gid));
    }
    sc
}

fn volume_mount(m: &crate::pod::volumes::VolumeMount) -> Value {
        let mut o = json!({ "name": m.name, "mountPath": m.mount_path });
        if m.read_only {
            o["readOnly"] = json!(true);
        }
        if let Some(sp) = &m.sub_path {
            o["subPath"] = json!(sp);
        }
        if m.host_to_container {
            o["mountPropagation"] = json!("HostToContainer");
        }
        o
}

fn action(a: &Action) -> Value {
    match a {
        Action::Exec(cmd) => json!({ "exec": { "command": cmd } }),
        Action::Http { host, port, path } => {
            let mut g = json!({ "path": path, "port": port });
            if let Some(h) = host {
                g["host"] = json!(h);
            }
            json!({ "httpGet": g })
        }
        Action::Tcp { host, port } => {
            let mut t = json!({ "port": port });
            if let Some(h) = host {
                t["host"] = json!(h);
            }
            json!({ "tcpSocket": t })
        }
    }
}

fn volume(v: &Volume, notes: &mut Vec<String>) -> Value {
    match &v.source {
        VolumeSource::EmptyDir { memory, size_limit } => {
            let mut e = Map::new();
            if *memory {
                e.insert("medium".into(), json!("Memory"));
            }
            if let Some(s) = size_limit {
                e.insert("sizeLimit".into(), json!(self::memory(*s as i64)));
            }
            json!({ "name": v.name, "emptyDir": e })
        }
        VolumeSource::HostPath { path, kind } => {
            let mut h = json!({ "path": path });
            if *kind != HostPathType::Unset {
                h["type"] = json!(format!("{kind:?}"));
            }
            json!({ "name": v.name, "hostPath": h })
        }
        VolumeSource::Files { secret, object, items, default_mode, optional, .. } => {
            // The contents are not recorded (a secret's never touch a disk): the manifest names
            // the object, which must be given beside it.
            let kind = if *secret { "Secret" } else { "ConfigMap" };
            notes.push(format!("volume {}: add the {kind} {object:?} as another document (---); podbox does not keep its data", v.name));
            let mut o = if *secret { json!({ "secretName": object }) } else { json!({ "name": object }) };
            if !items.is_empty() {
                o["items"] = items
                    .iter()
                    .map(|(k, p, m)| {
                        let mut i = json!({ "key": k, "path": p });
                        if let Some(m) = m {
                            i["mode"] = json!(m);
                        }
                        i
                    })
                    .collect();
            }
            if let Some(m) = default_mode {
                o["defaultMode"] = json!(m);
            }
            if *optional {
                o["optional"] = json!(true);
            }
            json!({ "name": v.name, if *secret { "secret" } else { "configMap" }: o })
        }
    }
}

fn protocol(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Limits, and a CPU request where it differs from the limit (a limit alone requests itself).
fn resources(r: &Resources) -> Option<Value> {
    let mut limits = BTreeMap::new();
    if let Some(m) = r.memory_bytes {
        limits.insert("memory", memory(m));
    }
    if let Some(c) = r.cpu_millis {
        limits.insert("cpu", cpu(c));
    }
    let mut out = Map::new();
    if !limits.is_empty() {
        out.insert("limits".into(), json!(limits));
    }
    if let Some(c) = r.cpu_request_millis.filter(|&c| Some(c) != r.cpu_millis) {
        out.insert("requests".into(), json!({ "cpu": cpu(c) }));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn memory(bytes: i64) -> String {
    for (unit, shift) in [("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes > 0 && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) { (millis / 1000).to_string() } else { format!("{millis}m") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_written_as_kubernetes_does() {
        assert_eq!(memory(64 << 20), "64Mi");
        assert_eq!(memory(3 << 30), "3Gi");
        assert_eq!(memory(1000), "1000");
        assert_eq!(cpu(500), "500m");
        assert_eq!(cpu(2000), "2");
    }
}
