//! A read Pod document into the validated `PodSpec`: identity, seccomp, resources, sysctls and
//! each container.

use crate::pod::PodError;
use crate::pod::model::{ContainerSpec, PodSpec, Resources, Security};
use crate::pod::{quantity, security, volumes};
use crate::pod::volumes::VolumeMount;
use crate::container::probe::Probes;
use crate::container::RestartPolicy;
use crate::network::{PortMapping, Protocol};

use super::*;

/// What every container of the pod takes from the pod's own spec.
struct PodWide {
    sec: PodSecurityContext,
    seccomp: Option<(bool, Option<String>)>,
    /// fsGroup is also a supplementary group of every container, as in Kubernetes.
    group_add: Vec<u32>,
    sysctls: Vec<(String, String)>,
    restart: RestartPolicy,
}

pub(super) fn to_pod_spec(m: Manifest, objects: &objects::Objects, ignored: &mut Vec<String>) -> Result<PodSpec, PodError> {
    let mut volumes = Vec::new();
    for (i, v) in m.spec.volumes.into_iter().enumerate() {
        volumes.push(volume(i, v, objects, ignored)?);
    }
    let _ = m.spec.os;
    let restart = restart_policy(m.spec.restart_policy.as_deref())?;
    if m.spec.containers.is_empty() {
        return Err(invalid("spec.containers", "at least one container is required"));
    }
    let sec = m.spec.security_context.unwrap_or_default();
    let seccomp = seccomp_choice("spec.securityContext.seccompProfile", &sec.seccomp_profile)?;
    let sysctls = pod_sysctls(&sec)?;
    let mut group_add = sec.supplemental_groups.clone();
    group_add.extend(sec.fs_group.filter(|g| !group_add.contains(g)));
    // hostNetwork comes with the node's UTS namespace (its hostname), as in Kubernetes.
    let node_namespaces = [("net", m.spec.host_network), ("uts", m.spec.host_network), ("pid", m.spec.host_pid), ("ipc", m.spec.host_ipc)];
    let mut pod = PodSpec {
        name: m.metadata.name,
        hostname: m.spec.hostname,
        share_pid: m.spec.share_process_namespace,
        userns: m.spec.host_users == Some(false),
        network: !m.spec.host_network,
        node_namespaces: node_namespaces.into_iter().filter(|(_, on)| *on).map(|(n, _)| n.to_string()).collect(),
        labels: m.metadata.labels,
        volumes,
        fs_group: sec.fs_group,
        grace_seconds: m.spec.termination_grace_period_seconds,
        ..Default::default()
    };
    let wide = PodWide { sec, seccomp, group_add, sysctls, restart };
    // Init containers are read by the same code; their errors are renamed to their list.
    let items = m.spec.init_containers.into_iter().enumerate().map(|(i, c)| (true, i, c)).chain(m.spec.containers.into_iter().enumerate().map(|(i, c)| (false, i, c)));
    for (init, i, c) in items {
        let rename = |e: PodError| match e {
            PodError::Manifest { doc, field, msg } if init => PodError::Manifest { doc, field: field.replacen("spec.containers[", "spec.initContainers[", 1), msg },
            e => e,
        };
        let mut host_ports = Vec::new();
        let spec = container(i, c, init, &wide, &mut host_ports).map_err(rename)?;
        if init {
            let spec = ContainerSpec { restart: if restart == RestartPolicy::Never { RestartPolicy::Never } else { RestartPolicy::OnFailure }, ..spec };
            pod.init_containers.push(spec);
        } else {
            add_app_container(&mut pod, spec, host_ports, ignored);
        }
    }
    check_unique_names(&pod)?;
    let mounts = pod.mount_lists();
    let mounts: Vec<(&str, &str, &[VolumeMount])> = mounts.iter().map(|(l, i, m)| (*l, i.as_str(), *m)).collect();
    volumes::check(&pod.volumes, &mounts).map_err(|(f, m)| invalid(&f, m))?;
    Ok(pod)
}

/// An app container joins the pod with its hostPorts, which in the node's network are noted as
/// ignored: there the container binds the node's port itself.
fn add_app_container(pod: &mut PodSpec, spec: ContainerSpec, host_ports: Vec<PortMapping>, ignored: &mut Vec<String>) {
    if pod.node_namespaces.contains("net") {
        let line = "spec.containers[].ports[].hostPort: with hostNetwork the container listens on the node's port itself".to_string();
        if !host_ports.is_empty() && !ignored.contains(&line) {
            ignored.push(line);
        }
    } else {
        pod.ports.extend(host_ports);
    }
    pod.containers.push(spec);
}

/// The pod's restartPolicy; Kubernetes' default is Always.
fn restart_policy(policy: Option<&str>) -> Result<RestartPolicy, PodError> {
    match policy {
        None | Some("Always") => Ok(RestartPolicy::Always),
        Some("OnFailure") => Ok(RestartPolicy::OnFailure),
        Some("Never") => Ok(RestartPolicy::Never),
        Some(p) => Err(invalid("spec.restartPolicy", format!("{p:?}: must be Always, OnFailure or Never"))),
    }
}

/// The pod's sysctls: only those of the pod's own namespaces.
fn pod_sysctls(sec: &PodSecurityContext) -> Result<Vec<(String, String)>, PodError> {
    let mut sysctls = Vec::new();
    for (j, sc) in sec.sysctls.iter().enumerate() {
        let valid = !sc.name.is_empty() && sc.name.split(['.', '/']).all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)));
        if !valid || !namespaced_sysctl(&sc.name) {
            return Err(invalid(&format!("spec.securityContext.sysctls[{j}].name"), format!("{:?} is not a namespaced sysctl (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*): it would change the whole node", sc.name)));
        }
        sysctls.push((sc.name.clone(), sc.value.clone()));
    }
    Ok(sysctls)
}

/// Init and app containers share one name space (their state and `podbox logs POD NAME`).
fn check_unique_names(pod: &PodSpec) -> Result<(), PodError> {
    let mut names = std::collections::HashSet::new();
    let lists = pod.init_containers.iter().enumerate().map(|(i, c)| ("initContainers", i, c)).chain(pod.containers.iter().enumerate().map(|(i, c)| ("containers", i, c)));
    for (list, i, c) in lists {
        if !names.insert(c.name.as_str()) {
            return Err(invalid(&format!("spec.{list}[{i}].name"), format!("{:?}: two containers of the pod have this name", c.name)));
        }
    }
    Ok(())
}

/// Container `i` of the manifest (an init container with `init`; errors name it as
/// `spec.containers[i]`, the caller renames them); its hostPorts are added to `host_ports`.
fn container(i: usize, c: Container, init: bool, wide: &PodWide, host_ports: &mut Vec<PortMapping>) -> Result<ContainerSpec, PodError> {
    // With an image, command replaces its Entrypoint and args its Cmd (resolved at run).
    let entrypoint = (!c.command.is_empty()).then(|| c.command.clone());
    let cmd = (!c.args.is_empty()).then(|| c.args.clone());
    let mut args = c.command;
    args.extend(c.args);
    if args.is_empty() && c.image.is_none() {
        return Err(invalid(&format!("spec.containers[{i}].command"), "a container without an image needs a command (and args)"));
    }
    let pull_policy = c.image_pull_policy.as_deref().map(|p| p.parse().map_err(|e: String| invalid(&format!("spec.containers[{i}].imagePullPolicy"), e))).transpose()?;
    let ports = container_ports(i, &c.ports, host_ports)?;
    check_env_names(i, &c.env)?;
    let resources = match &c.resources {
        Some(r) => resources(i, r)?,
        None => Resources::default(),
    };
    let sc = c.security_context.unwrap_or_default();
    let (user, run_as_non_root) = identity(i, &wide.sec, &sc, c.image.is_some())?;
    let security = container_security(i, sc, wide)?;
    let lifecycle = c.lifecycle.unwrap_or(LifecycleDoc { post_start: None, pre_stop: None });
    if init && (c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some() || lifecycle.post_start.is_some() || lifecycle.pre_stop.is_some()) {
        return Err(invalid(&format!("spec.containers[{i}]"), "an init container runs to completion: it has no probes or lifecycle hooks"));
    }
    let field = |what: &str| format!("spec.containers[{i}].{what}");
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
        group_add: wide.group_add.clone(),
        security,
        resources,
        restart: wide.restart,
        mounts: volume_mounts("containers", i, c.volume_mounts)?,
        probes: Probes {
            liveness: c.liveness_probe.map(|p| probe(&field("livenessProbe"), p, true)).transpose()?,
            readiness: c.readiness_probe.map(|p| probe(&field("readinessProbe"), p, false)).transpose()?,
            startup: c.startup_probe.map(|p| probe(&field("startupProbe"), p, true)).transpose()?,
        },
        post_start: lifecycle.post_start.map(|h| action(&field("lifecycle.postStart"), h)).transpose()?,
        pre_stop: lifecycle.pre_stop.map(|h| action(&field("lifecycle.preStop"), h)).transpose()?,
        // An init container runs to completion: the pod's policy only decides whether a
        // failed one is tried again (Never: no; OnFailure, Always: yes).
        init,
        ..Default::default()
    })
}

/// The names of container `i`'s env entries: not empty and without '='.
fn check_env_names(i: usize, env: &[EnvVar]) -> Result<(), PodError> {
    for (j, e) in env.iter().enumerate() {
        if e.name.is_empty() || e.name.contains('=') {
            return Err(invalid(&format!("spec.containers[{i}].env[{j}].name"), format!("{:?} is not a valid variable name", e.name)));
        }
    }
    Ok(())
}

/// A container's ports (containerPort, protocol); those with a hostPort are also added to
/// `host_ports`.
fn container_ports(i: usize, ports: &[Port], host_ports: &mut Vec<PortMapping>) -> Result<Vec<(u16, Protocol)>, PodError> {
    let mut out = Vec::new();
    for (j, p) in ports.iter().enumerate() {
        let field = format!("spec.containers[{i}].ports[{j}]");
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some(other) => return Err(invalid(&format!("{field}.protocol"), format!("{other:?}: must be TCP or UDP"))),
        };
        if p.container_port == 0 {
            return Err(invalid(&format!("{field}.containerPort"), "must be 1-65535"));
        }
        out.push((p.container_port, protocol));
        if let Some(h) = p.host_port {
            if h == 0 {
                return Err(invalid(&format!("{field}.hostPort"), "must be 1-65535"));
            }
            host_ports.push(PortMapping { host_port: h, container_port: p.container_port, protocol });
        }
    }
    Ok(out)
}

/// A container's securityContext (capabilities, seccomp over the pod's, privileges) with the
/// pod's sysctls.
fn container_security(i: usize, mut sc: SecurityContext, wide: &PodWide) -> Result<Security, PodError> {
    let caps = sc.capabilities.take().unwrap_or_default();
    for (list, names) in [("add", &caps.add), ("drop", &caps.drop)] {
        for (j, name) in names.iter().enumerate() {
            security::parse_cap(name).map_err(|e| invalid(&format!("spec.containers[{i}].securityContext.capabilities.{list}[{j}]"), e.to_string()))?;
        }
    }
    let (unconfined, localhost) = seccomp_choice(&format!("spec.containers[{i}].securityContext.seccompProfile"), &sc.seccomp_profile)?.or(wide.seccomp.clone()).unwrap_or((false, None));
    Ok(Security {
        cap_add: caps.add,
        cap_drop: caps.drop,
        privileged: sc.privileged.unwrap_or(false),
        seccomp_unconfined: unconfined,
        seccomp_localhost: localhost,
        seccomp_profile: None,
        read_only: sc.read_only_root_filesystem.unwrap_or(false),
        allow_privilege_escalation: sc.allow_privilege_escalation.unwrap_or(false),
        sysctls: wide.sysctls.clone(),
        ..Default::default()
    })
}

/// The user and groups a container runs as: its own securityContext over the pod's; and whether
/// runAsNonRoot is left to check against the image's user when the container starts.
pub(super) fn identity(i: usize, pod: &PodSecurityContext, c: &SecurityContext, has_image: bool) -> Result<(Option<(u32, u32)>, bool), PodError> {
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
pub(super) fn seccomp_choice(field: &str, p: &Option<SeccompProfile>) -> Result<Option<(bool, Option<String>)>, PodError> {
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

/// Limits become cgroup limits; a cpu request becomes the CPU weight (shares), as in the
/// kubelet. A memory request only guides a scheduler, which podbox has not, so it is accepted
/// and checked but has no effect.
pub(super) fn resources(i: usize, r: &ResourceRequirements) -> Result<Resources, PodError> {
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

/// Whether sysctl `name` belongs to a namespace of the pod (IPC or network), as the kubelet's
/// list of safe and namespaced sysctls has it; others would change the whole node.
pub(super) fn namespaced_sysctl(name: &str) -> bool {
    const IPC: &[&str] = &["kernel.shmmax", "kernel.shmall", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"];
    IPC.contains(&name) || name.starts_with("fs.mqueue.") || name.starts_with("net.")
}
