//! `pod apply -f`: the subset of a Kubernetes Pod manifest that podbox implements, in JSON or
//! YAML. Unknown fields are errors naming the field's path (e.g. `spec.containers[0].stdinOnce`),
//! never silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::PodError;
use crate::container::RestartPolicy;
use super::model::{ContainerSpec, PodSpec, Resources};
use super::quantity;
use crate::network::{PortMapping, Protocol};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    /// Accepted for compatibility; podbox has no namespaces of objects.
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    share_process_namespace: bool,
    #[serde(default)]
    restart_policy: Option<String>,
    #[serde(default)]
    host_network: bool,
    containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Container {
    name: String,
    /// The image the container runs from; without one it runs from `--rootfs`.
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    image_pull_policy: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    resources: Option<ResourceRequirements>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceRequirements {
    #[serde(default)]
    limits: Option<ResourceList>,
    #[serde(default)]
    requests: Option<ResourceList>,
}

/// Quantities are strings or plain numbers in manifests (`cpu: 0.5`, `memory: 64Mi`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceList {
    #[serde(default)]
    memory: Option<Quantity>,
    #[serde(default)]
    cpu: Option<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Quantity {
    Text(String),
    Number(f64),
}

impl Quantity {
    fn text(&self) -> String {
        match self {
            Quantity::Text(s) => s.clone(),
            Quantity::Number(n) => n.to_string(),
        }
    }
}

/// Limits become cgroup limits; a cpu request becomes the CPU weight (shares), as in the
/// kubelet. A memory request only guides a scheduler, which podbox has not, so it is accepted
/// and checked but has no effect.
fn resources(i: usize, r: &ResourceRequirements) -> Result<Resources, PodError> {
    let field = |part: &str, name: &str| format!("spec.containers[{i}].resources.{part}.{name}");
    let wrap = |f: String| move |e: PodError| invalid(&f, e.to_string());
    let mut out = Resources::default();
    if let Some(l) = &r.limits {
        if let Some(m) = &l.memory {
            out.memory_bytes = Some(quantity::memory_bytes(&m.text()).map_err(wrap(field("limits", "memory")))?);
        }
        if let Some(c) = &l.cpu {
            out.cpu_millis = Some(quantity::cpu_millis(&c.text()).map_err(wrap(field("limits", "cpu")))?);
        }
    }
    if let Some(q) = &r.requests {
        if let Some(m) = &q.memory {
            let req = quantity::memory_bytes(&m.text()).map_err(wrap(field("requests", "memory")))?;
            if out.memory_bytes.is_some_and(|l| req > l) {
                return Err(invalid(&field("requests", "memory"), "must not exceed limits.memory"));
            }
        }
        if let Some(c) = &q.cpu {
            let req = quantity::cpu_millis(&c.text()).map_err(wrap(field("requests", "cpu")))?;
            if out.cpu_millis.is_some_and(|l| req > l) {
                return Err(invalid(&field("requests", "cpu"), "must not exceed limits.cpu"));
            }
            out.cpu_request_millis = Some(req);
        }
    }
    // As in Kubernetes, a limit without a request requests the limit.
    if out.cpu_request_millis.is_none() {
        out.cpu_request_millis = out.cpu_millis;
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Port {
    container_port: u16,
    #[serde(default)]
    host_port: Option<u16>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

fn invalid(field: &str, msg: impl Into<String>) -> PodError {
    PodError::Manifest { field: field.into(), msg: msg.into() }
}

/// Parse and validate a manifest (JSON if it starts with `{`, YAML otherwise).
pub fn parse(text: &str) -> Result<PodSpec, PodError> {
    let m: Manifest = if text.trim_start().starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?
    } else {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?
    };
    if let Some(v) = &m.api_version
        && v != "v1" {
            return Err(invalid("apiVersion", format!("{v:?}: only v1 is supported")));
        }
    if let Some(k) = &m.kind
        && k != "Pod" {
            return Err(invalid("kind", format!("{k:?}: only Pod is supported")));
        }
    if m.spec.host_network {
        return Err(invalid("spec.hostNetwork", "true is not supported: every podbox pod has its own network namespace"));
    }
    // Kubernetes' default is Always.
    let restart = match m.spec.restart_policy.as_deref() {
        None | Some("Always") => RestartPolicy::Always,
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        Some(p) => return Err(invalid("spec.restartPolicy", format!("{p:?}: must be Always, OnFailure or Never"))),
    };
    if m.spec.containers.is_empty() {
        return Err(invalid("spec.containers", "at least one container is required"));
    }
    let mut pod = PodSpec {
        name: m.metadata.name,
        hostname: m.spec.hostname,
        share_pid: m.spec.share_process_namespace,
        network: true,
        ..Default::default()
    };
    for (i, c) in m.spec.containers.into_iter().enumerate() {
        // With an image, command replaces its Entrypoint and args its Cmd (resolved at run).
        let entrypoint = (!c.command.is_empty()).then(|| c.command.clone());
        let cmd = (!c.args.is_empty()).then(|| c.args.clone());
        let mut args = c.command;
        args.extend(c.args);
        if args.is_empty() && c.image.is_none() {
            return Err(invalid(&format!("spec.containers[{i}].command"), "a container without an image needs a command (and args)"));
        }
        let pull_policy = match c.image_pull_policy.as_deref() {
            None => None,
            Some(p) => Some(p.parse().map_err(|e: String| invalid(&format!("spec.containers[{i}].imagePullPolicy"), e))?),
        };
        let mut ports = Vec::new();
        for (j, p) in c.ports.iter().enumerate() {
            let field = format!("spec.containers[{i}].ports[{j}]");
            let protocol = match p.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some(other) => return Err(invalid(&format!("{field}.protocol"), format!("{other:?}: must be TCP or UDP"))),
            };
            if p.container_port == 0 {
                return Err(invalid(&format!("{field}.containerPort"), "must be 1-65535"));
            }
            ports.push((p.container_port, protocol));
            if let Some(h) = p.host_port {
                if h == 0 {
                    return Err(invalid(&format!("{field}.hostPort"), "must be 1-65535"));
                }
                pod.ports.push(PortMapping { host_port: h, container_port: p.container_port, protocol });
            }
        }
        for (j, e) in c.env.iter().enumerate() {
            if e.name.is_empty() || e.name.contains('=') {
                return Err(invalid(&format!("spec.containers[{i}].env[{j}].name"), format!("{:?} is not a valid variable name", e.name)));
            }
        }
        let resources = match &c.resources {
            Some(r) => resources(i, r)?,
            None => Resources::default(),
        };
        pod.containers.push(ContainerSpec {
            name: c.name,
            args,
            env: c.env.into_iter().map(|e| (e.name, e.value)).collect(),
            working_dir: c.working_dir,
            user: None,
            ports,
            resources,
            restart,
            image: c.image,
            pull_policy,
            entrypoint,
            cmd,
            ..Default::default()
        });
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  hostname: webhost
  shareProcessNamespace: true
  restartPolicy: Never
  containers:
  - name: server
    image: busybox
    command: ["httpd", "-f"]
    args: ["-p", "80"]
    env: [{name: A, value: "1"}]
    workingDir: /tmp
    ports: [{containerPort: 80, hostPort: 8080}]
    resources:
      limits: {memory: 64Mi, cpu: 500m}
      requests: {memory: 32Mi, cpu: 0.25}
  - name: client
    command: ["sleep", "1000"]
    ports: [{containerPort: 53, protocol: UDP}]
"#;

    #[test]
    fn yaml_subset_is_understood() {
        let p = parse(YAML).unwrap();
        assert_eq!(p.name, "web");
        assert_eq!(p.hostname.as_deref(), Some("webhost"));
        assert!(p.share_pid);
        assert_eq!(p.containers[0].args, vec!["httpd", "-f", "-p", "80"]);
        assert_eq!(p.containers[0].env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(p.ports, vec![PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp }]);
        assert_eq!(p.containers[1].ports, vec![(53, Protocol::Udp)]);
        assert_eq!(p.containers[0].resources, Resources { memory_bytes: Some(64 << 20), cpu_millis: Some(500), cpu_request_millis: Some(250), pids: None });
        assert_eq!(p.containers[1].resources, Resources::default());
        p.validate().unwrap();
    }

    #[test]
    fn json_is_accepted() {
        let p = parse(r#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","command":["true"]}]}}"#).unwrap();
        assert_eq!(p.containers[0].args, vec!["true"]);
    }

    fn field_of(text: &str) -> String {
        match parse(text) {
            Err(PodError::Manifest { field, .. }) => field,
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(&YAML.replace("workingDir", "stdinOnce")), "spec.containers[0].stdinOnce");
        assert!(parse(&YAML.replace("workingDir", "stdinOnce")).unwrap_err().to_string().contains("stdinOnce"));
        assert_eq!(field_of(&YAML.replace("workingDir: /tmp", "imagePullPolicy: Sometimes")), "spec.containers[0].imagePullPolicy");
        assert_eq!(field_of(&YAML.replace("UDP", "SCTP")), "spec.containers[1].ports[0].protocol");
        assert_eq!(field_of(&YAML.replace("containerPort: 80", "containerPort: 99999")), "spec.containers[0].ports[0].containerPort");
        assert_eq!(field_of(&YAML.replace("restartPolicy: Never", "restartPolicy: Sometimes")), "spec.restartPolicy");
        assert_eq!(field_of(&YAML.replace("memory: 64Mi", "memory: 64Xi")), "spec.containers[0].resources.limits.memory");
        assert_eq!(field_of(&YAML.replace("cpu: 0.25", "cpu: 2")), "spec.containers[0].resources.requests.cpu");
        assert!(parse(&YAML.replace("cpu: 500m", "gpu: 1")).unwrap_err().to_string().contains("gpu"));
        assert_eq!(field_of("metadata: {name: a}\nspec: {containers: []}"), "spec.containers");
        assert_eq!(field_of("{\"metadata\":{},\"spec\":{\"containers\":[]}}"), "metadata");
        assert_eq!(field_of("kind: Deployment\nmetadata: {name: a}\nspec: {containers: []}"), "kind");
    }
}
