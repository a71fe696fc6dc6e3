//! `pod apply -f`: Kubernetes Pod manifests as kubectl, podman or a cluster write them, in JSON or
//! YAML, one or several documents (`---`) or a `kind: List`. Every field is classified in
//! `fields::FIELDS` (honoured, accepted and ignored, refused); unknown names are errors naming the
//! field's path and the nearest known name. What is honoured becomes a validated `PodSpec`.

pub mod fields;
pub mod generate;
pub mod objects;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::PodError;
use super::model::{ContainerSpec, PodSpec, Resources, Security};
use super::{quantity, security, volumes};
use super::volumes::{HostPathType, Volume, VolumeMount, VolumeSource};
use crate::container::probe::{Action, Probe, Probes};
use crate::container::RestartPolicy;
use crate::network::{PortMapping, Protocol};

/// The largest manifest podbox reads: a pod is a few KiB; this stops `-f /dev/zero` at once.
pub const MAX_BYTES: usize = 1 << 20;
/// The deepest nesting of `[`/`{` a manifest may have (a Pod needs fewer than 10 levels). Checked
/// by a linear scan before parsing, so a hostile flow nesting costs no parser time.
pub const MAX_DEPTH: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Manifest {
    #[serde(default)]
    #[allow(dead_code)] // checked on the untyped document
    api_version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    kind: Option<String>,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    share_process_namespace: bool,
    /// false: a user namespace for the pod (`pod create --userns`).
    #[serde(default)]
    host_users: Option<bool>,
    #[serde(default)]
    restart_policy: Option<String>,
    #[serde(default)]
    security_context: Option<PodSecurityContext>,
    #[serde(default)]
    volumes: Vec<VolumeDoc>,
    #[serde(default)]
    os: Option<Value>,
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
    #[serde(default)]
    termination_grace_period_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodSecurityContext {
    #[serde(default)]
    run_as_user: Option<u32>,
    #[serde(default)]
    run_as_group: Option<u32>,
    #[serde(default)]
    run_as_non_root: Option<bool>,
    #[serde(default)]
    supplemental_groups: Vec<u32>,
    #[serde(default)]
    seccomp_profile: Option<SeccompProfile>,
    #[serde(default)]
    fs_group: Option<u32>,
    #[serde(default)]
    sysctls: Vec<Sysctl>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sysctl {
    name: String,
    value: String,
}

/// Whether sysctl `name` belongs to a namespace of the pod (IPC or network), as the kubelet's
/// list of safe and namespaced sysctls has it; others would change the whole node.
fn namespaced_sysctl(name: &str) -> bool {
    const IPC: &[&str] = &["kernel.shmmax", "kernel.shmall", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"];
    IPC.contains(&name) || name.starts_with("fs.mqueue.") || name.starts_with("net.")
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SecurityContext {
    #[serde(default)]
    capabilities: Option<Capabilities>,
    #[serde(default)]
    privileged: Option<bool>,
    #[serde(default)]
    read_only_root_filesystem: Option<bool>,
    #[serde(default)]
    run_as_user: Option<u32>,
    #[serde(default)]
    run_as_group: Option<u32>,
    #[serde(default)]
    run_as_non_root: Option<bool>,
    #[serde(default)]
    seccomp_profile: Option<SeccompProfile>,
    #[serde(default)]
    allow_privilege_escalation: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Capabilities {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SeccompProfile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    localhost_profile: Option<String>,
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
    #[serde(default)]
    security_context: Option<SecurityContext>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMountDoc>,
    #[serde(default)]
    liveness_probe: Option<ProbeDoc>,
    #[serde(default)]
    readiness_probe: Option<ProbeDoc>,
    #[serde(default)]
    startup_probe: Option<ProbeDoc>,
    #[serde(default)]
    lifecycle: Option<LifecycleDoc>,
}

/// A probe's or hook's action: exactly one of exec, httpGet, tcpSocket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HandlerDoc {
    #[serde(default)]
    exec: Option<ExecDoc>,
    #[serde(default)]
    http_get: Option<HttpGetDoc>,
    #[serde(default)]
    tcp_socket: Option<TcpDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecDoc {
    #[serde(default)]
    command: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpGetDoc {
    #[serde(default)]
    path: Option<String>,
    port: Value,
    #[serde(default)]
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpDoc {
    port: Value,
    #[serde(default)]
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProbeDoc {
    #[serde(flatten)]
    handler: HandlerDoc,
    #[serde(default)]
    initial_delay_seconds: Option<u32>,
    #[serde(default)]
    period_seconds: Option<u32>,
    #[serde(default)]
    timeout_seconds: Option<u32>,
    #[serde(default)]
    success_threshold: Option<u32>,
    #[serde(default)]
    failure_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LifecycleDoc {
    #[serde(default)]
    post_start: Option<HandlerDoc>,
    #[serde(default)]
    pre_stop: Option<HandlerDoc>,
}

/// A probe's or hook's action (`field`: its path).
fn action(field: &str, h: HandlerDoc) -> Result<Action, PodError> {
    let port = |f: &str, v: &Value| -> Result<u16, PodError> {
        match v.as_u64() {
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(invalid(&format!("{field}.{f}.port"), format!("{v}: a port number 1-65535 (named ports are not supported)"))),
        }
    };
    match (h.exec, h.http_get, h.tcp_socket) {
        (Some(e), None, None) if !e.command.is_empty() => Ok(Action::Exec(e.command)),
        (Some(_), None, None) => Err(invalid(&format!("{field}.exec.command"), "a command is required")),
        (None, Some(g), None) => {
            let path = g.path.unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                return Err(invalid(&format!("{field}.httpGet.path"), format!("{path:?}: an absolute path without spaces")));
            }
            Ok(Action::Http { host: g.host.filter(|h| !h.is_empty()), port: port("httpGet", &g.port)?, path })
        }
        (None, None, Some(t)) => Ok(Action::Tcp { host: t.host.filter(|h| !h.is_empty()), port: port("tcpSocket", &t.port)? }),
        _ => Err(invalid(field, "give exactly one of exec, httpGet, tcpSocket")),
    }
}

fn probe(field: &str, p: ProbeDoc, one_success: bool) -> Result<Probe, PodError> {
    let success_threshold = p.success_threshold.unwrap_or(1);
    if one_success && success_threshold != 1 {
        return Err(invalid(&format!("{field}.successThreshold"), "must be 1 for liveness and startup probes"));
    }
    let positive = |name: &str, v: Option<u32>, default: u32| -> Result<u32, PodError> {
        match v {
            Some(0) => Err(invalid(&format!("{field}.{name}"), "must be at least 1")),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    Ok(Probe {
        action: action(field, p.handler)?,
        initial_delay: p.initial_delay_seconds.unwrap_or(0),
        period: positive("periodSeconds", p.period_seconds, 10)?,
        timeout: positive("timeoutSeconds", p.timeout_seconds, 1)?,
        success_threshold: positive("successThreshold", Some(success_threshold), 1)?,
        failure_threshold: positive("failureThreshold", p.failure_threshold, 3)?,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VolumeDoc {
    name: String,
    #[serde(default)]
    empty_dir: Option<EmptyDirDoc>,
    #[serde(default)]
    host_path: Option<HostPathDoc>,
    #[serde(default)]
    config_map: Option<FilesVolumeDoc>,
    #[serde(default)]
    secret: Option<FilesVolumeDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EmptyDirDoc {
    #[serde(default)]
    medium: Option<String>,
    #[serde(default)]
    size_limit: Option<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostPathDoc {
    path: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// A configMap volume (`name`) or a secret volume (`secretName`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilesVolumeDoc {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    secret_name: Option<String>,
    #[serde(default)]
    items: Vec<KeyToPath>,
    #[serde(default, deserialize_with = "file_mode")]
    default_mode: Option<u32>,
    #[serde(default)]
    optional: bool,
}

/// A file mode: a number (JSON: decimal, 420 = 0644), or YAML 1.1's octal `0644`, which kubectl
/// reads as octal and a YAML 1.2 parser leaves as the string "0644".
fn file_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Number(u32),
        Text(String),
    }
    match Option::<Mode>::deserialize(d)? {
        None => Ok(None),
        Some(Mode::Number(n)) => Ok(Some(n)),
        Some(Mode::Text(t)) => {
            let digits = t.strip_prefix("0o").or_else(|| t.strip_prefix('0')).filter(|d| !d.is_empty());
            digits.and_then(|d| u32::from_str_radix(d, 8).ok()).map(Some).ok_or_else(|| serde::de::Error::custom(format!("{t:?} is not a file mode (an octal number like 0644, or decimal 420)")))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyToPath {
    key: String,
    path: String,
    #[serde(default, deserialize_with = "file_mode")]
    mode: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct VolumeMountDoc {
    name: String,
    mount_path: String,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    sub_path: Option<String>,
    #[serde(default)]
    mount_propagation: Option<String>,
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
}

fn invalid(field: &str, msg: impl Into<String>) -> PodError {
    invalid_at("", field, msg)
}

/// An error at `field` of the document labelled `doc` ("" when the manifest has one document).
pub(crate) fn invalid_at(doc: &str, field: &str, msg: impl Into<String>) -> PodError {
    PodError::Manifest { doc: doc.into(), field: field.into(), msg: msg.into() }
}

/// Read a manifest (`-` is stdin), at most `MAX_BYTES`.
pub fn read(path: &Path) -> Result<String, PodError> {
    let name = path.display();
    let file: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| PodError::Invalid(format!("reading {name}: {e}")))?)
    };
    let mut buf = Vec::new();
    file.take(MAX_BYTES as u64 + 1).read_to_end(&mut buf).map_err(|e| PodError::Invalid(format!("reading {name}: {e}")))?;
    if buf.len() > MAX_BYTES {
        return Err(PodError::Invalid(format!("{name}: a manifest may have at most {MAX_BYTES} bytes")));
    }
    String::from_utf8(buf).map_err(|e| PodError::Invalid(format!("{name}: not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// Refuse nesting deeper than `MAX_DEPTH` before a parser sees it. Counts `[`/`{` that open a
/// flow collection (at the start of a value) and their closers, skipping quoted scalars and
/// comments; YAML's block nesting needs indentation, so the size cap bounds it.
fn check_depth(text: &str) -> Result<(), PodError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    // The character before, outside quotes: an opener counts only where a value can start.
    let mut prev = '\n';
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        if let Some(q) = quote {
            if c == '\\' && q == '"' {
                chars.next();
            } else if c == q {
                quote = None;
            }
            prev = c;
            continue;
        }
        let value_starts = matches!(prev, '\n' | ' ' | '\t' | ':' | ',' | '[' | '{' | '-');
        match c {
            '"' | '\'' if value_starts => quote = Some(c),
            '#' if matches!(prev, '\n' | ' ' | '\t') => {
                while chars.next_if(|&n| n != '\n').is_some() {}
            }
            '[' | '{' if value_starts => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PodError::Invalid(format!("manifest line {line}: nested deeper than {MAX_DEPTH} levels")));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    Ok(())
}

/// The documents of a manifest: one JSON value, or each YAML document (empty ones skipped).
fn documents(text: &str) -> Result<Vec<Value>, PodError> {
    if text.len() > MAX_BYTES {
        return Err(PodError::Invalid(format!("a manifest may have at most {MAX_BYTES} bytes")));
    }
    check_depth(text)?;
    if text.trim_start().starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(text);
        let v: Value = serde_path_to_error::deserialize(de).map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?;
        return Ok(vec![v]);
    }
    let mut out = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v: Value = serde_path_to_error::deserialize(de).map_err(|e| invalid_at(&format!("document {}", i + 1), &e.path().to_string(), e.inner().to_string()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Parse and validate a manifest: every Pod it holds (documents, and the items of `kind: List`).
pub fn parse_all(text: &str) -> Result<Vec<PodSpec>, PodError> {
    let docs = documents(text)?;
    if docs.is_empty() {
        return Err(invalid("", "the manifest holds no document"));
    }
    let several = docs.len() > 1;
    let mut pods: Vec<(String, Value)> = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let label = if several { format!("document {}", i + 1) } else { String::new() };
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            check_api_version(&label, &doc)?;
            let Some(Value::Array(items)) = doc.get("items") else {
                return Err(invalid_at(&label, "items", "a List needs a list of items"));
            };
            for (j, item) in items.iter().enumerate() {
                let l = if label.is_empty() { format!("items[{j}]") } else { format!("{label} items[{j}]") };
                pods.push((l, item.clone()));
            }
        } else {
            pods.push((label, doc));
        }
    }
    // ConfigMaps and Secrets first: a Pod may come before the objects its volumes name.
    let mut objects = objects::Objects::default();
    let mut rest = Vec::new();
    for (label, doc) in pods {
        // The document's name helps find it in an error.
        let label = match doc.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if !label.is_empty() => format!("{label} ({n})"),
            _ => label,
        };
        match doc.get("kind").and_then(Value::as_str) {
            Some("ConfigMap" | "Secret") => {
                check_api_version(&label, &doc)?;
                objects.add(&label, doc)?;
            }
            _ => rest.push((label, doc)),
        }
    }
    if rest.is_empty() {
        return Err(invalid("", "the manifest holds no Pod"));
    }
    let mut out: Vec<PodSpec> = Vec::new();
    for (label, mut doc) in rest {
        let pod = parse_doc(&label, &mut doc, &objects)?;
        if out.iter().any(|p| p.name == pod.name) {
            return Err(invalid_at(&label, "metadata.name", format!("{:?}: two pods of this manifest have this name", pod.name)));
        }
        out.push(pod);
    }
    Ok(out)
}

/// Where `seccompProfile: {type: Localhost}` profiles are found unless `pod apply --seccomp-root`
/// says otherwise (the kubelet's is /var/lib/kubelet/seccomp).
pub const SECCOMP_ROOT: &str = "/var/lib/podbox/seccomp";

/// Read the Localhost seccomp profiles the containers of `pods` name, below `root`: OCI seccomp
/// JSON (defaultAction, architectures, syscalls), the format of runc's and the kubelet's profiles.
/// Done before anything is created, so a missing or bad profile changes nothing.
pub fn load_seccomp_profiles(pods: &mut [PodSpec], root: &Path) -> Result<(), PodError> {
    for pod in pods {
        let doc = format!("pod {}", pod.name);
        let lists = [("initContainers", &mut pod.init_containers), ("containers", &mut pod.containers)];
        for (list, cs) in lists {
            for (i, c) in cs.iter_mut().enumerate() {
                let Some(rel) = &c.security.seccomp_localhost else { continue };
                let field = format!("spec.{list}[{i}].securityContext.seccompProfile.localhostProfile");
                let path = root.join(rel);
                let text = std::fs::read_to_string(&path).map_err(|e| invalid_at(&doc, &field, format!("reading {}: {e}", path.display())))?;
                let profile: oci_spec::runtime::LinuxSeccomp =
                    serde_json::from_str(&text).map_err(|e| invalid_at(&doc, &field, format!("{}: not an OCI seccomp profile: {e}", path.display())))?;
                c.security.seccomp_profile = Some(profile);
            }
        }
    }
    Ok(())
}

/// Parse a manifest that holds exactly one Pod.
pub fn parse(text: &str) -> Result<PodSpec, PodError> {
    let mut pods = parse_all(text)?;
    if pods.len() != 1 {
        return Err(invalid("", format!("{} pods where one was expected", pods.len())));
    }
    Ok(pods.remove(0))
}

fn check_api_version(label: &str, doc: &Value) -> Result<(), PodError> {
    match doc.get("apiVersion") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(v)) if v == "v1" => Ok(()),
        Some(v) => Err(invalid_at(label, "apiVersion", format!("{v}: only v1 is supported"))),
    }
}

fn parse_doc(label: &str, doc: &mut Value, objects: &objects::Objects) -> Result<PodSpec, PodError> {
    if !doc.is_object() {
        return Err(invalid_at(label, "", "a document must be a mapping (a Kubernetes object)"));
    }
    check_api_version(label, doc)?;
    match doc.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if k == "Pod" => {}
        Some(k) => return Err(invalid_at(label, "kind", format!("{k}: only Pod, ConfigMap and Secret (and a List of them) are supported"))),
    }
    let mut ignored = Vec::new();
    fields::walk(label, doc, &mut ignored)?;
    let m: Manifest = serde_path_to_error::deserialize(doc.take()).map_err(|e| invalid_at(label, &e.path().to_string(), e.inner().to_string()))?;
    let mut pod = to_pod_spec(m, objects, &mut ignored).map_err(|e| match e {
        PodError::Manifest { field, msg, .. } => invalid_at(label, &field, msg),
        e => e,
    })?;
    pod.ignored = ignored;
    Ok(pod)
}

/// The user and groups a container runs as: its own securityContext over the pod's; and whether
/// runAsNonRoot is left to check against the image's user when the container starts.
fn identity(i: usize, pod: &PodSecurityContext, c: &SecurityContext, has_image: bool) -> Result<(Option<(u32, u32)>, bool), PodError> {
    let uid = c.run_as_user.or(pod.run_as_user);
    let gid = c.run_as_group.or(pod.run_as_group);
    let non_root = c.run_as_non_root.or(pod.run_as_non_root) == Some(true);
    // Without an image nothing else names a user: no runAsUser means root.
    if non_root && (uid == Some(0) || (uid.is_none() && !has_image)) {
        let field = if c.run_as_non_root.is_some() { format!("spec.containers[{i}].securityContext.runAsNonRoot") } else { "spec.securityContext.runAsNonRoot".into() };
        return Err(invalid(&field, "the container would run as root: give runAsUser a non-zero UID"));
    }
    // As in Kubernetes without a user database: the primary group defaults to 0.
    let user = if uid.is_some() || gid.is_some() { Some((uid.unwrap_or(0), gid.unwrap_or(0))) } else { None };
    Ok((user, non_root && uid.is_none()))
}

/// A seccompProfile: None when not given, else (unconfined, Localhost profile path). `field` is
/// the path of the profile (`…securityContext.seccompProfile`).
fn seccomp_choice(field: &str, p: &Option<SeccompProfile>) -> Result<Option<(bool, Option<String>)>, PodError> {
    let Some(p) = p else { return Ok(None) };
    match (p.kind.as_str(), &p.localhost_profile) {
        ("RuntimeDefault", None) => Ok(Some((false, None))),
        ("Unconfined", None) => Ok(Some((true, None))),
        ("Localhost", Some(path)) => {
            if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
                return Err(invalid(&format!("{field}.localhostProfile"), format!("{path:?}: must be a path relative to the seccomp profile root (pod apply --seccomp-root), without '..'")));
            }
            Ok(Some((false, Some(path.clone()))))
        }
        ("Localhost", None) => Err(invalid(&format!("{field}.localhostProfile"), "required with type Localhost")),
        ("RuntimeDefault" | "Unconfined", Some(_)) => Err(invalid(&format!("{field}.localhostProfile"), "only with type Localhost")),
        (k, _) => Err(invalid(&format!("{field}.type"), format!("{k:?}: must be RuntimeDefault, Unconfined or Localhost"))),
    }
}

/// A volume of the manifest; `ignored` gets the parts podbox accepts without effect.
fn volume(i: usize, v: VolumeDoc, objects: &objects::Objects, ignored: &mut Vec<String>) -> Result<Volume, PodError> {
    let field = format!("spec.volumes[{i}]");
    let kinds = [v.empty_dir.is_some(), v.host_path.is_some(), v.config_map.is_some(), v.secret.is_some()];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err(invalid(&field, "a volume has exactly one type (emptyDir, hostPath, configMap, secret)"));
    }
    let files = |kind: &str, secret: bool, d: FilesVolumeDoc| -> Result<VolumeSource, PodError> {
        let f = format!("{field}.{kind}");
        let object = if secret { d.secret_name } else { d.name }.filter(|n| !n.is_empty());
        let object = object.ok_or_else(|| invalid(&format!("{f}.{}", if secret { "secretName" } else { "name" }), "required"))?;
        let items: Vec<_> = d.items.into_iter().map(|k| (k.key, k.path, k.mode)).collect();
        let files = objects.files(&f, secret, &object, &items, d.default_mode, d.optional)?;
        Ok(VolumeSource::Files { secret, object, items, default_mode: d.default_mode, optional: d.optional, files })
    };
    let source = if let Some(h) = v.host_path {
        let kind = h.kind.as_deref().unwrap_or("");
        let kind = HostPathType::parse(kind).ok_or_else(|| {
            invalid(&format!("{field}.hostPath.type"), format!("{kind:?}: must be \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice or BlockDevice"))
        })?;
        VolumeSource::HostPath { path: h.path.into(), kind }
    } else if let Some(d) = v.config_map {
        files("configMap", false, d)?
    } else if let Some(d) = v.secret {
        files("secret", true, d)?
    } else {
        // As on the API server, a volume without a type is an emptyDir.
        let d = v.empty_dir.unwrap_or_default();
        let memory = match d.medium.as_deref() {
            None | Some("") => false,
            Some("Memory") => true,
            Some(m) => return Err(invalid(&format!("{field}.emptyDir.medium"), format!("{m:?}: must be \"\" (disk) or Memory"))),
        };
        let size_limit = match &d.size_limit {
            None => None,
            Some(q) => Some(quantity::memory_bytes(&q.text()).map_err(|e| invalid(&format!("{field}.emptyDir.sizeLimit"), e.to_string()))? as u64),
        };
        if size_limit.is_some() && !memory {
            let line = "spec.volumes[].emptyDir.sizeLimit (disk): not enforced; the kubelet evicts a pod past it, podbox has no eviction (medium: Memory makes it a hard limit)".to_string();
            if !ignored.contains(&line) {
                ignored.push(line);
            }
        }
        VolumeSource::EmptyDir { memory, size_limit: if memory { size_limit } else { None } }
    };
    Ok(Volume { name: v.name, source })
}

fn volume_mounts(list: &str, i: usize, ms: Vec<VolumeMountDoc>) -> Result<Vec<VolumeMount>, PodError> {
    let mut out = Vec::new();
    for (j, m) in ms.into_iter().enumerate() {
        let host_to_container = match m.mount_propagation.as_deref() {
            None | Some("None") => false,
            Some("HostToContainer") => true,
            Some(p) => {
                return Err(invalid(&format!("spec.{list}[{i}].volumeMounts[{j}].mountPropagation"), format!("{p:?} is not supported (only None or HostToContainer): a container's mounts never propagate to the node")));
            }
        };
        out.push(VolumeMount { name: m.name, mount_path: m.mount_path, read_only: m.read_only, sub_path: m.sub_path.filter(|s| !s.is_empty()), host_to_container });
    }
    Ok(out)
}

fn to_pod_spec(m: Manifest, objects: &objects::Objects, ignored: &mut Vec<String>) -> Result<PodSpec, PodError> {
    let mut volumes = Vec::new();
    for (i, v) in m.spec.volumes.into_iter().enumerate() {
        volumes.push(volume(i, v, objects, ignored)?);
    }
    let _ = m.spec.os;
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
    let pod_sec = m.spec.security_context.unwrap_or_default();
    let pod_seccomp = seccomp_choice("spec.securityContext.seccompProfile", &pod_sec.seccomp_profile)?;
    let mut sysctls = Vec::new();
    for (j, sc) in pod_sec.sysctls.iter().enumerate() {
        let valid = !sc.name.is_empty() && sc.name.split(['.', '/']).all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)));
        if !valid || !namespaced_sysctl(&sc.name) {
            return Err(invalid(&format!("spec.securityContext.sysctls[{j}].name"), format!("{:?} is not a namespaced sysctl (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*): it would change the whole node", sc.name)));
        }
        sysctls.push((sc.name.clone(), sc.value.clone()));
    }
    // fsGroup is also a supplementary group of every container, as in Kubernetes.
    let mut group_add = pod_sec.supplemental_groups.clone();
    group_add.extend(pod_sec.fs_group.filter(|g| !group_add.contains(g)));
    let mut pod = PodSpec {
        name: m.metadata.name,
        hostname: m.spec.hostname,
        share_pid: m.spec.share_process_namespace,
        userns: m.spec.host_users == Some(false),
        network: true,
        labels: m.metadata.labels,
        volumes,
        fs_group: pod_sec.fs_group,
        grace_seconds: m.spec.termination_grace_period_seconds,
        ..Default::default()
    };
    // Init containers are read by the same code; their errors are renamed to their list.
    let items = m.spec.init_containers.into_iter().enumerate().map(|(i, c)| (true, i, c)).chain(m.spec.containers.into_iter().enumerate().map(|(i, c)| (false, i, c)));
    for (init, i, c) in items {
        let rename = |e: PodError| match e {
            PodError::Manifest { doc, field, msg } if init => PodError::Manifest { doc, field: field.replacen("spec.containers[", "spec.initContainers[", 1), msg },
            e => e,
        };
        let mut host_ports = Vec::new();
        let spec = (|| -> Result<ContainerSpec, PodError> {
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
                host_ports.push(PortMapping { host_port: h, container_port: p.container_port, protocol });
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
        let mut sc = c.security_context.unwrap_or_default();
        let caps = sc.capabilities.take().unwrap_or_default();
        for (list, names) in [("add", &caps.add), ("drop", &caps.drop)] {
            for (j, name) in names.iter().enumerate() {
                security::parse_cap(name).map_err(|e| invalid(&format!("spec.containers[{i}].securityContext.capabilities.{list}[{j}]"), e.to_string()))?;
            }
        }
        let (unconfined, localhost) = seccomp_choice(&format!("spec.containers[{i}].securityContext.seccompProfile"), &sc.seccomp_profile)?.or(pod_seccomp.clone()).unwrap_or((false, None));
        let (user, run_as_non_root) = identity(i, &pod_sec, &sc, c.image.is_some())?;
        let lifecycle = c.lifecycle.unwrap_or(LifecycleDoc { post_start: None, pre_stop: None });
        if init && (c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some() || lifecycle.post_start.is_some() || lifecycle.pre_stop.is_some()) {
            return Err(invalid(&format!("spec.containers[{i}]"), "an init container runs to completion: it has no probes or lifecycle hooks"));
        }
        Ok(ContainerSpec {
            name: c.name,
            image: c.image,
            pull_policy,
            entrypoint,
            cmd,
            run_as_non_root,
            args,
            env: c.env.into_iter().map(|e| (e.name, e.value)).collect(),
            working_dir: c.working_dir,
            user,
            ports,
            group_add: group_add.clone(),
            security: Security {
                cap_add: caps.add,
                cap_drop: caps.drop,
                privileged: sc.privileged.unwrap_or(false),
                seccomp_unconfined: unconfined,
                seccomp_localhost: localhost,
                seccomp_profile: None,
                read_only: sc.read_only_root_filesystem.unwrap_or(false),
                allow_privilege_escalation: sc.allow_privilege_escalation.unwrap_or(false),
                sysctls: sysctls.clone(),
                ..Default::default()
            },
            resources,
            restart,
            mounts: volume_mounts("containers", i, c.volume_mounts)?,
            probes: Probes {
                liveness: c.liveness_probe.map(|p| probe(&format!("spec.containers[{i}].livenessProbe"), p, true)).transpose()?,
                readiness: c.readiness_probe.map(|p| probe(&format!("spec.containers[{i}].readinessProbe"), p, false)).transpose()?,
                startup: c.startup_probe.map(|p| probe(&format!("spec.containers[{i}].startupProbe"), p, true)).transpose()?,
            },
            post_start: lifecycle.post_start.map(|h| action(&format!("spec.containers[{i}].lifecycle.postStart"), h)).transpose()?,
            pre_stop: lifecycle.pre_stop.map(|h| action(&format!("spec.containers[{i}].lifecycle.preStop"), h)).transpose()?,
            // An init container runs to completion: the pod's policy only decides whether a
            // failed one is tried again (Never: no; OnFailure, Always: yes).
            init,
            ..Default::default()
        })
        })().map_err(rename)?;
        if init {
            let spec = ContainerSpec { restart: if restart == RestartPolicy::Never { RestartPolicy::Never } else { RestartPolicy::OnFailure }, ..spec };
            pod.init_containers.push(spec);
        } else {
            pod.ports.extend(host_ports);
            pod.containers.push(spec);
        }
    }
    // Init and app containers share one name space (their state and `podbox logs POD NAME`).
    let mut names = std::collections::HashSet::new();
    let lists = pod.init_containers.iter().enumerate().map(|(i, c)| ("initContainers", i, c)).chain(pod.containers.iter().enumerate().map(|(i, c)| ("containers", i, c)));
    for (list, i, c) in lists {
        if !names.insert(c.name.as_str()) {
            return Err(invalid(&format!("spec.{list}[{i}].name"), format!("{:?}: two containers of the pod have this name", c.name)));
        }
    }
    let mounts = pod.mount_lists();
    let mounts: Vec<(&str, &str, &[VolumeMount])> = mounts.iter().map(|(l, i, m)| (*l, i.as_str(), *m)).collect();
    volumes::check(&pod.volumes, &mounts).map_err(|(f, m)| invalid(&f, m))?;
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
        assert_eq!(field_of(&YAML.replace("workingDir", "workDir")), "spec.containers[0].workDir");
        assert!(parse(&YAML.replace("workingDir", "workDir")).unwrap_err().to_string().contains("did you mean `workingDir`"));
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

    const KUBECTL_RUN: &str = include_str!("../../../tests/fixtures/kubectl-run.yaml");
    const KUBECTL_RUN_ARGS: &str = include_str!("../../../tests/fixtures/kubectl-run-args.yaml");
    const KUBECTL_GET: &str = include_str!("../../../tests/fixtures/kubectl-get-pod.yaml");
    const PODMAN: &str = include_str!("../../../tests/fixtures/podman-kube-generate.yaml");

    fn err_of(text: &str) -> (String, String, String) {
        match parse_all(text) {
            Err(e @ PodError::Manifest { .. }) => {
                let msg = e.to_string();
                let PodError::Manifest { doc, field, .. } = e else { unreachable!() };
                (doc, field, msg)
            }
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }

    #[test]
    fn kubectl_run_output_is_accepted() {
        // Everything in it (creationTimestamp: null, resources: {}, dnsPolicy, status: {}) is
        // accepted; without a command the image's Entrypoint/Cmd runs.
        let p = parse(KUBECTL_RUN).unwrap();
        assert_eq!(p.containers[0].image.as_deref(), Some("busybox"));
        assert!(p.containers[0].args.is_empty() && p.containers[0].entrypoint.is_none());
        let p = parse(KUBECTL_RUN_ARGS).unwrap();
        assert_eq!(p.containers[0].args, ["httpd", "-f", "-p", "8080", "-h", "/var/www"]);
        assert_eq!(p.containers[0].image.as_deref(), Some("busybox"));
        assert_eq!(p.labels.get("run").map(String::as_str), Some("web"));
        assert!(p.ignored.iter().any(|i| i.starts_with("spec.dnsPolicy:")), "{:?}", p.ignored);
        assert!(p.ignored.iter().any(|i| i.starts_with("status:")), "{:?}", p.ignored);
        assert!(p.ignored.iter().any(|i| i.starts_with("metadata.creationTimestamp:")), "{:?}", p.ignored);
        p.validate().unwrap();
    }

    #[test]
    fn a_kubectl_get_dump_is_accepted_with_its_control_plane_fields_ignored() {
        let p = parse(KUBECTL_GET).unwrap();
        assert_eq!(p.name, "web");
        assert_eq!(p.containers.len(), 1);
        assert_eq!(p.containers[0].args[..2], ["sh", "-c"]);
        assert_eq!(p.containers[0].env, [("GREETING".to_string(), "hello".to_string())]);
        assert_eq!(p.containers[0].ports, [(8080, Protocol::Tcp)]);
        assert_eq!(p.containers[0].restart, RestartPolicy::Always);
        for f in ["metadata.managedFields", "metadata.uid", "metadata.resourceVersion", "spec.nodeName", "spec.tolerations", "status",
                  "spec.volumes[kube-api-access-*] and its volumeMounts", "spec.containers[].terminationMessagePath", "spec.serviceAccountName"] {
            assert!(p.ignored.iter().any(|i| i.starts_with(&format!("{f}:"))), "{f} not listed: {:?}", p.ignored);
        }
        // Clusters before 1.22 mounted a `default-token-*` secret instead.
        let old = KUBECTL_GET.replace("    projected:\n", "    secret:\n      secretName: default-token-x7k2p\n    xprojected:\n").replace("kube-api-access-x7k2p", "default-token-x7k2p");
        let old: String = old.split("    xprojected:\n").next().unwrap().to_string() + "status:\n  phase: Running\n";
        assert!(parse(&old).unwrap_or_else(|e| panic!("{e}")).ignored.iter().any(|i| i.contains("service-account token")));
        // Listed once, not once per occurrence.
        assert_eq!(p.ignored.iter().filter(|i| i.starts_with("spec.containers[].terminationMessagePath")).count(), 1);
        // A `kubectl get pods -o yaml` list of two such pods.
        let item = |name: &str| KUBECTL_GET.replace("name: web\n  namespace", &format!("name: {name}\n  namespace")).lines().map(|l| format!("  {l}\n")).collect::<String>();
        let list = format!("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n- {}- {}", &item("a")[2..], &item("b")[2..]);
        let pods = parse_all(&list).unwrap();
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn podman_kube_generate_output_is_accepted() {
        let p = parse(PODMAN).unwrap();
        assert_eq!(p.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["server", "sidecar"]);
        assert_eq!(p.ports, [PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp }]);
        assert_eq!(p.containers[0].working_dir.as_deref(), Some("/tmp"));
        assert_eq!(p.containers[1].resources.memory_bytes, Some(64 << 20));
        assert_eq!(p.containers[0].restart, RestartPolicy::Never);
        assert!(p.ignored.iter().any(|i| i.starts_with("metadata.annotations:")));
    }

    #[test]
    fn a_misspelt_field_names_the_one_meant() {
        let (_, field, msg) = err_of(&KUBECTL_RUN_ARGS.replace("  containers:", "  contianers:"));
        assert_eq!(field, "spec.contianers");
        assert!(msg.contains("did you mean `containers`"), "{msg}");
        let (_, field, msg) = err_of(&KUBECTL_RUN_ARGS.replace("containerPort", "containerport"));
        assert_eq!(field, "spec.containers[0].ports[0].containerport");
        assert!(msg.contains("`containerPort`"), "{msg}");
    }

    #[test]
    fn fields_that_change_what_runs_are_refused_by_name() {
        let pod = |extra: &str| format!("metadata: {{name: a}}\nspec:\n  containers:\n  - name: c\n    command: [sleep, '1']\n{extra}");
        for (extra, want) in [
            ("  volumes:\n  - name: data\n    persistentVolumeClaim: {claimName: data}\n", "spec.volumes[0].persistentVolumeClaim"),
            ("  volumes:\n  - name: data\n    nfs: {server: x, path: /}\n", "spec.volumes[0].nfs"),
            ("  volumes:\n  - {name: data, emptyDir: {}}\n  - {name: data, emptyDir: {}}\n", "spec.volumes[1].name"),
            ("  volumes:\n  - {name: data, emptyDir: {medium: HugePages}}\n", "spec.volumes[0].emptyDir.medium"),
            ("  volumes:\n  - {name: data, hostPath: {path: /x, type: Dir}}\n", "spec.volumes[0].hostPath.type"),
            ("  volumes:\n  - {name: data, emptyDir: {}, hostPath: {path: /x}}\n", "spec.volumes[0]"),
            ("  volumes:\n  - {name: data, configMap: {name: nope}}\n", "spec.volumes[0].configMap.name"),
            ("  ephemeralContainers:\n  - name: debug\n    image: busybox\n", "spec.ephemeralContainers"),
            ("  initContainers:\n  - name: init\n    commando: [true]\n", "spec.initContainers[0].commando"),
            ("  initContainers:\n  - name: c\n    command: ['true']\n", "spec.containers[0].name"),
            ("  initContainers:\n  - name: init\n    command: ['true']\n    volumeMounts: [{name: x, mountPath: /x}]\n", "spec.initContainers[0].volumeMounts[0].name"),
            ("  hostNetwork: true\n", "spec.hostNetwork"),
            ("  dnsPolicy: None\n", "spec.dnsPolicy"),
            ("    livenessProbe: {grpc: {port: 1}}\n", "spec.containers[0].livenessProbe.grpc"),
            ("    readinessProbe: {httpGet: {port: http}}\n", "spec.containers[0].readinessProbe.httpGet.port"),
            ("    startupProbe: {tcpSocket: {port: 80}, successThreshold: 2}\n", "spec.containers[0].startupProbe.successThreshold"),
            ("    readinessProbe: {tcpSocket: {port: 80}, exec: {command: [x]}}\n", "spec.containers[0].readinessProbe"),
            ("    readinessProbe: {exec: {command: [x]}, periodSeconds: 0}\n", "spec.containers[0].readinessProbe.periodSeconds"),
            ("    lifecycle: {preStop: {sleep: {seconds: 1}}}\n", "spec.containers[0].lifecycle.preStop.sleep"),
            ("    lifecycle: {preStop: {httpGet: {port: 80, httpHeaders: []}}}\n", "spec.containers[0].lifecycle.preStop.httpGet.httpHeaders"),
            ("    volumeMounts: [{name: data, mountPath: /data}]\n", "spec.containers[0].volumeMounts[0].name"),
            ("    volumeMounts: [{name: data, mountPath: /data, mountPropagation: Bidirectional}]\n", "spec.containers[0].volumeMounts[0].mountPropagation"),
            ("    env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n", "spec.containers[0].env[0].valueFrom"),
            ("    securityContext: {seccompProfile: {type: Localhost}}\n", "spec.containers[0].securityContext.seccompProfile.localhostProfile"),
            ("    securityContext: {seccompProfile: {type: Localhost, localhostProfile: ../x.json}}\n", "spec.containers[0].securityContext.seccompProfile.localhostProfile"),
            ("    securityContext: {seccompProfile: {type: Strict}}\n", "spec.containers[0].securityContext.seccompProfile.type"),
            ("    securityContext: {runAsNonRoot: true}\n", "spec.containers[0].securityContext.runAsNonRoot"),
            ("    securityContext: {capabilities: {add: [NET_FLY]}}\n", "spec.containers[0].securityContext.capabilities.add[0]"),
        ] {
            let (_, field, msg) = err_of(&pod(extra));
            assert_eq!(field, want, "{extra}: {msg}");
        }
        // ... and the same fields with the values podbox behaves as anyway are fine.
        let fine = "metadata: {name: a}\nspec:\n  hostNetwork: false\n  hostUsers: true\n  initContainers: []\n  dnsPolicy: Default\n  containers:\n  - name: c\n    command: [sleep, '1']\n    securityContext: {runAsUser: 1000, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [CAP_MKNOD]}, seccompProfile: {type: Unconfined}}\n";
        let p = parse(fine).unwrap_or_else(|e| panic!("{e}"));
        let c = &p.containers[0];
        assert_eq!(c.user, Some((1000, 0)));
        assert_eq!(c.security.cap_drop, ["CAP_MKNOD"]);
        assert!(c.security.seccomp_unconfined);
    }

    #[test]
    fn volumes_and_objects_are_understood() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: cache, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
  - {name: big, emptyDir: {sizeLimit: 1Gi}}
  - {name: typeless}
  - {name: node, hostPath: {path: /srv, type: DirectoryOrCreate}}
  - {name: cfg, configMap: {name: cfg, defaultMode: 0400, items: [{key: a, path: conf/a.txt}]}}
  - {name: sec, secret: {secretName: sec, defaultMode: 256}}
  containers:
  - name: c
    command: [sh]
    volumeMounts:
    - {name: shared, mountPath: /data, subPath: x, readOnly: true}
    - {name: node, mountPath: /node, mountPropagation: HostToContainer}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {pw: s3cret}
"#;
        let p = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let src: Vec<&VolumeSource> = p.volumes.iter().map(|v| &v.source).collect();
        assert_eq!(src[0], &VolumeSource::EmptyDir { memory: false, size_limit: None });
        assert_eq!(src[1], &VolumeSource::EmptyDir { memory: true, size_limit: Some(1 << 20) });
        assert_eq!(src[2], &VolumeSource::EmptyDir { memory: false, size_limit: None });
        assert!(p.ignored.iter().any(|i| i.starts_with("spec.volumes[].emptyDir.sizeLimit (disk)")), "{:?}", p.ignored);
        assert_eq!(src[3], &VolumeSource::EmptyDir { memory: false, size_limit: None });
        assert_eq!(src[4], &VolumeSource::HostPath { path: "/srv".into(), kind: HostPathType::DirectoryOrCreate });
        let VolumeSource::Files { secret: false, files, .. } = src[5] else { panic!("{:?}", src[5]) };
        // YAML's 0400 is octal, as kubectl reads it.
        assert_eq!((files[0].path.as_str(), files[0].data.as_slice(), files[0].mode), ("conf/a.txt", &b"hello"[..], 0o400));
        let VolumeSource::Files { secret: true, files, .. } = src[6] else { panic!("{:?}", src[6]) };
        assert_eq!((files[0].path.as_str(), files[0].data.as_slice(), files[0].mode), ("pw", &b"s3cret"[..], 0o400));
        let m = &p.containers[0].mounts;
        assert_eq!((m[0].sub_path.as_deref(), m[0].read_only, m[1].host_to_container), (Some("x"), true, true));
    }

    #[test]
    fn probes_and_hooks_are_understood() {
        let p = parse(r#"
metadata: {name: p}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    command: [sh]
    livenessProbe: {exec: {command: [cat, /tmp/ok]}, periodSeconds: 2, failureThreshold: 1, terminationGracePeriodSeconds: 3}
    readinessProbe: {httpGet: {path: /healthz, port: 8080, scheme: HTTP}, initialDelaySeconds: 1, successThreshold: 2}
    startupProbe: {tcpSocket: {port: 80}}
    lifecycle:
      postStart: {exec: {command: [touch, /tmp/ok]}}
      preStop: {httpGet: {port: 80, path: /quit}}
"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.grace_seconds, Some(5));
        let c = &p.containers[0];
        let l = c.probes.liveness.as_ref().unwrap();
        assert_eq!((&l.action, l.period, l.failure_threshold, l.timeout, l.success_threshold), (&Action::Exec(vec!["cat".into(), "/tmp/ok".into()]), 2, 1, 1, 1));
        let r = c.probes.readiness.as_ref().unwrap();
        assert_eq!((&r.action, r.initial_delay, r.success_threshold, r.period), (&Action::Http { host: None, port: 8080, path: "/healthz".into() }, 1, 2, 10));
        assert_eq!(c.probes.startup.as_ref().unwrap().action, Action::Tcp { host: None, port: 80 });
        assert_eq!(c.post_start, Some(Action::Exec(vec!["touch".into(), "/tmp/ok".into()])));
        assert_eq!(c.pre_stop, Some(Action::Http { host: None, port: 80, path: "/quit".into() }));
        let (_, field, _) = err_of("metadata: {name: p}\nspec:\n  initContainers:\n  - name: i\n    command: ['true']\n    readinessProbe: {exec: {command: [x]}}\n  containers:\n  - {name: c, command: [sh]}\n");
        assert_eq!(field, "spec.initContainers[0]");
    }

    #[test]
    fn several_documents_each_error_names_its_document() {
        let two = "metadata: {name: a}\nspec: {containers: [{name: c, command: [sleep, '1']}]}\n---\nmetadata: {name: b}\nspec: {containers: [{name: c, command: [sleep, '1']}]}\n---\n";
        let pods = parse_all(two).unwrap();
        assert_eq!(pods.len(), 2);
        let (doc, field, msg) = err_of(&two.replace("name: b}\nspec: {containers", "name: b}\nspec: {contaners"));
        assert_eq!((doc.as_str(), field.as_str()), ("document 2 (b)", "spec.contaners"), "{msg}");
        assert!(msg.starts_with("manifest document 2 (b), field spec.contaners:"), "{msg}");
        let (doc, field, _) = err_of(&format!("{two}apiVersion: v1\nkind: Service\nmetadata: {{name: svc}}\n"));
        assert_eq!((doc.as_str(), field.as_str()), ("document 3 (svc)", "kind"));
        let (doc, field, _) = err_of(&format!("{two}apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{a: '!'}}\n"));
        assert_eq!((doc.as_str(), field.as_str()), ("document 3 (s)", "data.a"));
        let (_, field, _) = err_of(&two.replace("name: b", "name: a"));
        assert_eq!(field, "metadata.name");
        let (_, field, _) = err_of("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n");
        assert_eq!(field, "apiVersion");
    }

    #[test]
    fn size_and_nesting_are_capped_before_parsing() {
        let big = format!("metadata: {{name: a}}\n#{}\n", "x".repeat(MAX_BYTES));
        assert!(matches!(parse_all(&big), Err(PodError::Invalid(m)) if m.contains("at most")));
        let t = std::time::Instant::now();
        let deep = "[".repeat(MAX_BYTES - 10);
        assert!(matches!(parse_all(&deep), Err(PodError::Invalid(m)) if m.contains("nested deeper than 100")));
        let deep_json = format!("{{\"a\":{}", "[".repeat(200_000));
        assert!(matches!(parse_all(&deep_json), Err(PodError::Invalid(m)) if m.contains("nested deeper")));
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
        // Block nesting without indentation (`- - - …`) and alias bombs are the parser's to stop
        // (its recursion and repetition limits), also in linear time.
        let t = std::time::Instant::now();
        assert!(parse_all(&"- ".repeat(MAX_BYTES / 2 - 10)).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..40 {
            bomb += &format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", "));
        }
        assert!(parse_all(&bomb).unwrap_err().to_string().contains("repetition limit"));
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        // Brackets inside quoted scalars, comments and words do not count.
        let script = format!("metadata: {{name: a}}\n# {}\nspec:\n  containers:\n  - name: c\n    command:\n    - sh\n    - \"echo {}\"\n    - x[1]\n", "[".repeat(200), "{[".repeat(200));
        parse(&script).unwrap();
    }

    #[test]
    fn generate_round_trips_volumes_init_containers_probes_and_security() {
        use crate::pod::model::{ContainerRecord, ContainerState, ContainerStatus, PodPhase, PodRecord};
        const OBJECTS: &str = "---\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: x}\n---\nkind: Secret\nmetadata: {name: sec}\nstringData: {pw: y}\n";
        let text = format!("{}{OBJECTS}", r#"
metadata: {name: p}
spec:
  terminationGracePeriodSeconds: 7
  securityContext: {fsGroup: 2000, supplementalGroups: [4000], sysctls: [{name: net.ipv4.ping_group_range, value: "0 0"}]}
  volumes:
  - {name: a, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
  - {name: b, hostPath: {path: /srv, type: DirectoryOrCreate}}
  - {name: c, configMap: {name: cfg, defaultMode: 0640, items: [{key: a, path: x/a, mode: 0600}]}}
  - {name: d, secret: {secretName: sec, optional: true}}
  initContainers:
  - {name: i, command: ['true'], volumeMounts: [{name: a, mountPath: /a}]}
  containers:
  - name: m
    command: [sleep, '1']
    volumeMounts: [{name: a, mountPath: /a, subPath: s, readOnly: true}, {name: b, mountPath: /b, mountPropagation: HostToContainer}]
    livenessProbe: {exec: {command: ['true']}, periodSeconds: 2}
    readinessProbe: {httpGet: {port: 80, path: /r}, successThreshold: 2}
    startupProbe: {tcpSocket: {port: 81, host: 127.0.0.1}}
    lifecycle: {postStart: {exec: {command: ['true']}}, preStop: {httpGet: {port: 80}}}
    securityContext: {allowPrivilegeEscalation: true, seccompProfile: {type: Localhost, localhostProfile: p.json}}
"#);
        let spec = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let rec = PodRecord {
            id: "x".into(), name: spec.name.clone(), hostname: spec.name.clone(), phase: PodPhase::Ready, created_at: String::new(),
            share_pid: false, network: true, ports: vec![], namespaces: Default::default(), attachment: None, pause: None,
            declared_ports: Default::default(), labels: Default::default(), ignored_fields: vec![], volumes: spec.volumes.clone(), fs_group: spec.fs_group, grace_seconds: spec.grace_seconds, user_range: None,
        };
        let statuses: Vec<ContainerStatus> = spec.init_containers.iter().chain(&spec.containers).map(|c| ContainerStatus {
            record: ContainerRecord { name: c.name.clone(), pod_id: "x".into(), args: c.args.clone(), created_at: String::new(), started_at: None, pid: None, monitor: None, start_error: None, spec: Some(c.clone()), image: None, image_digest: None, stop_signal: None, cgroup: None, awaiting_start: false },
            state: ContainerState::Running, exit: None, restarts: 0, last_exit: None, ready: true, probe: None,
        }).collect();
        let (doc, notes) = generate::pod_manifest(&rec, &statuses);
        // Two containers ran from --rootfs; two volumes' objects are not kept.
        assert_eq!(notes.len(), 4, "{notes:?}");
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        let mut back = parse(&format!("{yaml}{OBJECTS}")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let mut want = spec.clone();
        want.ignored.clear();
        back.ignored.clear();
        for c in want.containers.iter_mut().chain(want.init_containers.iter_mut()) {
            c.image = Some(generate::DEFAULT_IMAGE.into());
            c.entrypoint = Some(c.args.clone());
        }
        assert_eq!(back, want, "{yaml}");
    }

    #[test]
    fn generate_round_trips_through_parse() {
        use crate::pod::model::{ContainerRecord, ContainerState, ContainerStatus, PodPhase, PodRecord};
        let spec = parse(YAML).unwrap();
        let rec = PodRecord {
            id: "x".into(), name: spec.name.clone(), hostname: spec.hostname.clone().unwrap(), phase: PodPhase::Ready, created_at: String::new(),
            share_pid: spec.share_pid, network: true, ports: spec.ports.clone(), namespaces: Default::default(), attachment: None, pause: None,
            declared_ports: Default::default(), labels: spec.labels.clone(), ignored_fields: vec![], volumes: vec![], fs_group: None, grace_seconds: None, user_range: None,
        };
        let statuses: Vec<ContainerStatus> = spec.containers.iter().map(|c| ContainerStatus {
            record: ContainerRecord { name: c.name.clone(), pod_id: "x".into(), args: c.args.clone(), created_at: String::new(), started_at: None, pid: None, monitor: None, start_error: None, spec: Some(c.clone()), image: None, image_digest: None, stop_signal: None, cgroup: None, awaiting_start: false },
            state: ContainerState::Running, exit: None, restarts: 0, last_exit: None, ready: true, probe: None,
        }).collect();
        let (doc, notes) = generate::pod_manifest(&rec, &statuses);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("ran from --rootfs"), "{notes:?}");
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        let mut back = parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        // `args` come back as one command; the rest is the same.
        let mut want = spec.clone();
        want.ignored.clear();
        // A container without an image gets the default one.
        want.containers[1].image = Some(generate::DEFAULT_IMAGE.into());
        want.containers[1].entrypoint = Some(want.containers[1].args.clone());
        back.ignored.clear();
        assert_eq!(back, want, "{yaml}");
    }
}
