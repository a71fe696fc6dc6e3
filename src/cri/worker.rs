//! The CRI calls that change something, each run by the pod layer in a child process
//! (`podbox cri --worker`, a request as JSON on stdin, the reply on stdout). Why a process: the
//! pod layer forks (pins, pause, monitors) and runs its own netlink runtime, which must not
//! happen from a many-threaded tokio server; and a server killed mid-call leaves the child to
//! finish its step as a CLI command would, with the same crash safety.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use serde::{Deserialize, Serialize};

use super::{CriError, Result, api};
use crate::container::LogLimits;
use crate::network::{PortMapping, Protocol};
use crate::pod::model::{ContainerSpec, PodSpec, PullPolicy};
use crate::pod::volumes::{HostPathType, Volume, VolumeMount, VolumeSource};
use crate::pod::{Ctx, PodError, containers, lifecycle};

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// A protobuf-encoded PodSandboxConfig.
    RunPod { config: Vec<u8> },
    StopPod { id: String },
    RemovePod { id: String },
    /// Protobuf-encoded ContainerConfig and PodSandboxConfig.
    CreateContainer { pod_id: String, config: Vec<u8>, sandbox: Vec<u8> },
    StartContainer { id: String },
    StopContainer { id: String, timeout: i64 },
    RemoveContainer { id: String },
    /// A protobuf-encoded LinuxContainerResources.
    UpdateResources { id: String, resources: Vec<u8> },
    PullImage { image: String, creds: Option<(String, String)> },
    RemoveImage { image: String },
}

impl Request {
    /// Whether the call starts or enters a container: its worker runs from a sealed copy of
    /// the binary (`container::sealed_exe`), as the CLI's `run` and `exec` do. The others save
    /// that second exec (RunPodSandbox: the pause is its own embedded binary; CreateContainer
    /// only resolves the image and writes the record, `containers::create` forks nothing).
    fn enters_container(&self) -> bool {
        matches!(self, Request::StartContainer { .. })
    }
}

/// What the child answers: a value (an id, an image ref) or an error with its gRPC code.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Ok(String),
    Err { code: i32, message: String },
}

/// In the child: read one request, do it, print the reply. Returns the exit code.
pub fn main(ctx: &Ctx) -> i32 {
    let mut input = String::new();
    let reply = match std::io::stdin().read_to_string(&mut input) {
        Err(e) => Reply::Err { code: tonic::Code::Internal as i32, message: format!("reading the request: {e}") },
        Ok(_) => match serde_json::from_str::<Request>(&input) {
            Err(e) => Reply::Err { code: tonic::Code::Internal as i32, message: format!("bad worker request: {e}") },
            Ok(req) => match handle(ctx, req) {
                Ok(v) => Reply::Ok(v),
                Err(e) => {
                    let s = tonic::Status::from(e);
                    Reply::Err { code: s.code() as i32, message: s.message().to_string() }
                }
            },
        },
    };
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    0
}

fn decode<M: Message + Default>(b: &[u8], what: &str) -> Result<M> {
    M::decode(b).map_err(|e| CriError::Invalid(format!("{what}: {e}")))
}

fn handle(ctx: &Ctx, req: Request) -> Result<String> {
    match req {
        Request::RunPod { config } => run_pod(ctx, &decode(&config, "PodSandboxConfig")?),
        Request::StopPod { id } => match super::find_pod(ctx, &id) {
            // Idempotent, as the kubelet retries: a pod that is gone is stopped.
            Err(CriError::NotFound(_)) => Ok(String::new()),
            Err(e) => Err(e),
            // Containers are killed at once: the kubelet stopped them with their grace before.
            Ok(p) => lifecycle::stop(ctx, &p.id, Duration::ZERO).map(|_| String::new()).map_err(Into::into),
        },
        Request::RemovePod { id } => match super::find_pod(ctx, &id) {
            Err(CriError::NotFound(_)) => Ok(String::new()),
            Err(e) => Err(e),
            Ok(p) => {
                for name in crate::state::list_dir(&ctx.root.pod_dir(&p.id).join("containers")).unwrap_or_default() {
                    remove_log_link(ctx, &p.id, &name);
                }
                match lifecycle::remove(ctx, &p.id, true) {
                    Err(PodError::UnknownPod(_)) => Ok(String::new()),
                    r => r.map(|_| String::new()).map_err(Into::into),
                }
            }
        },
        Request::CreateContainer { pod_id, config, sandbox } => {
            create_container(ctx, &pod_id, &decode(&config, "ContainerConfig")?, &decode(&sandbox, "PodSandboxConfig")?)
        }
        Request::StartContainer { id } => {
            let (pod, name) = super::find_container(ctx, &id)?;
            containers::start(ctx, &pod.id, &name)?;
            Ok(String::new())
        }
        Request::StopContainer { id, timeout } => {
            let (pod, name) = super::find_container(ctx, &id)?;
            containers::stop(ctx, &pod.id, &name, Duration::from_secs(timeout.max(0) as u64))?;
            Ok(String::new())
        }
        Request::RemoveContainer { id } => match super::find_container(ctx, &id) {
            Err(CriError::NotFound(_)) => Ok(String::new()),
            Err(e) => Err(e),
            Ok((pod, name)) => {
                remove_log_link(ctx, &pod.id, &name);
                match containers::remove(ctx, &pod.id, &name, true) {
                    Err(PodError::UnknownContainer { .. }) => Ok(String::new()),
                    r => r.map(|_| String::new()).map_err(Into::into),
                }
            }
        },
        Request::UpdateResources { id, resources } => {
            let (pod, name) = super::find_container(ctx, &id)?;
            update_resources(ctx, &pod, &name, &decode(&resources, "LinuxContainerResources")?)?;
            Ok(String::new())
        }
        Request::PullImage { image, creds } => {
            let store = ctx.image_store()?;
            let mut opts = crate::image::registry::PullOptions::from_env();
            opts.progress = crate::image::registry::Progress::Quiet;
            opts.creds = creds;
            let info = crate::pod::image::ensure_image(&store, &image, Some(PullPolicy::Always), &opts)?;
            Ok(info.config_digest)
        }
        Request::RemoveImage { image } => {
            let store = ctx.image_store()?;
            if store.lookup(&image)?.is_none() {
                return Ok(String::new());
            }
            // Every name of the image goes, as CRI removes an image, not a tag.
            let info = store.image(&image)?;
            let users = |d: &str| ctx.image_users(d);
            for n in if info.names.is_empty() { vec![image.clone()] } else { info.names.clone() } {
                store.remove(&n, false, &users)?;
            }
            Ok(String::new())
        }
    }
}

fn run_pod(ctx: &Ctx, cfg: &api::PodSandboxConfig) -> Result<String> {
    let meta = cfg.metadata.clone().ok_or_else(|| CriError::Invalid("PodSandboxConfig.metadata is required".into()))?;
    if meta.name.is_empty() {
        return Err(CriError::Invalid("PodSandboxConfig.metadata.name is required".into()));
    }
    let ns = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.as_ref());
    let mode = |m: i32| api::NamespaceMode::try_from(m).unwrap_or(api::NamespaceMode::Pod);
    let (net, pid, ipc) = ns.map(|n| (mode(n.network), mode(n.pid), mode(n.ipc))).unwrap_or((api::NamespaceMode::Pod, api::NamespaceMode::Container, api::NamespaceMode::Pod));
    let mut node_namespaces = std::collections::BTreeSet::new();
    for (what, key, m) in [("network", "net", net), ("pid", "pid", pid), ("ipc", "ipc", ipc)] {
        if m == api::NamespaceMode::Node {
            node_namespaces.insert(key.to_string());
        }
        if m == api::NamespaceMode::Target {
            return Err(CriError::Unimplemented(format!("namespace_options.{what} TARGET is not supported by podbox")));
        }
    }
    let host_network = net == api::NamespaceMode::Node;
    if host_network {
        // hostNetwork: the node's hostname too, as the kubelet and containerd have it.
        node_namespaces.insert("uts".to_string());
    }
    // In a namespace shared with the node, a sysctl would be the node's: refused, as the
    // kubelet's validation does.
    let sysctls = cfg.linux.as_ref().map(|l| &l.sysctls);
    let node_sysctl = |prefixes: &[&str], key: &str| node_namespaces.contains(key) && sysctls.is_some_and(|s| s.keys().any(|k| prefixes.iter().any(|p| k.starts_with(p))));
    if node_sysctl(&["net."], "net") || node_sysctl(&["kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue."], "ipc") {
        return Err(CriError::Invalid("PodSandboxConfig.linux.sysctls: a sysctl of a namespace the pod shares with the node (host network or IPC) would change the node's".into()));
    }
    let mut ports = Vec::new();
    for p in &cfg.port_mappings {
        if p.host_port <= 0 || host_network {
            // Only a container port, or the node's own network where the port is the node's:
            // nothing to forward.
            continue;
        }
        let protocol = match api::Protocol::try_from(p.protocol) {
            Ok(api::Protocol::Tcp) => Protocol::Tcp,
            Ok(api::Protocol::Udp) => Protocol::Udp,
            _ => return Err(CriError::Invalid(format!("port mapping {}: only TCP and UDP are supported", p.host_port))),
        };
        let port = |v: i32, what: &str| u16::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| CriError::Invalid(format!("port mapping: {what} port {v} is not 1-65535")));
        ports.push(PortMapping { host_port: port(p.host_port, "host")?, container_port: port(p.container_port, "container")?, protocol });
    }
    let spec = PodSpec {
        name: super::pod_name(&meta),
        hostname: (!cfg.hostname.is_empty()).then(|| cfg.hostname.clone()),
        share_pid: pid == api::NamespaceMode::Pod,
        network: !host_network,
        node_namespaces,
        ports,
        labels: cfg.labels.clone().into_iter().collect(),
        ..Default::default()
    };
    let rec = lifecycle::create(ctx, &spec)?;
    let finish = || -> Result<()> {
        let dir = ctx.root.pod_dir(&rec.id);
        if let Some(dns) = &cfg.dns_config
            && !(dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty())
        {
            let mut r = String::new();
            for s in &dns.servers {
                r.push_str(&format!("nameserver {s}\n"));
            }
            if !dns.searches.is_empty() {
                r.push_str(&format!("search {}\n", dns.searches.join(" ")));
            }
            if !dns.options.is_empty() {
                r.push_str(&format!("options {}\n", dns.options.join(" ")));
            }
            let p = dir.join("etc/resolv.conf");
            std::fs::write(&p, r).map_err(|e| CriError::Internal(format!("writing {}: {e}", p.display())))?;
        }
        if !cfg.log_directory.is_empty() {
            std::fs::create_dir_all(&cfg.log_directory).map_err(|e| CriError::Internal(format!("creating the log directory {}: {e}", cfg.log_directory)))?;
        }
        super::write_config(&dir.join(super::SANDBOX_CONFIG), cfg)
    };
    if let Err(e) = finish() {
        let _ = lifecycle::remove(ctx, &rec.id, true);
        return Err(e);
    }
    Ok(rec.id)
}

fn create_container(ctx: &Ctx, pod_id: &str, cfg: &api::ContainerConfig, sandbox: &api::PodSandboxConfig) -> Result<String> {
    let pod = super::find_pod(ctx, pod_id)?;
    let meta = cfg.metadata.clone().ok_or_else(|| CriError::Invalid("ContainerConfig.metadata is required".into()))?;
    let image = cfg.image.as_ref().map(|i| i.image.clone()).filter(|i| !i.is_empty()).ok_or_else(|| CriError::Invalid("ContainerConfig.image.image is required".into()))?;
    if !cfg.devices.is_empty() {
        return Err(CriError::Unimplemented("ContainerConfig.devices are not supported by podbox's CRI server yet".into()));
    }
    let name = super::container_name(&meta);
    let mut c = ContainerSpec {
        name: name.clone(),
        image: Some(image),
        // The kubelet pulls first; CreateContainer never pulls.
        pull_policy: Some(PullPolicy::Never),
        entrypoint: (!cfg.command.is_empty()).then(|| cfg.command.clone()),
        cmd: (!cfg.args.is_empty()).then(|| cfg.args.clone()),
        env: cfg.envs.iter().map(|e| (e.key.clone(), e.value.clone())).collect(),
        working_dir: (!cfg.working_dir.is_empty()).then(|| cfg.working_dir.clone()),
        // With a log path the kubelet rotates the log (rename + ReopenContainerLog), not podbox.
        log: match super::cri_log_path(Some(sandbox), cfg) {
            Some(_) => LogLimits { cri_format: true, max_size: u64::MAX, max_files: 1 },
            None => LogLimits { cri_format: true, ..Default::default() },
        },
        writable_size: Some(256 << 20),
        // Its monitor keeps stdin (and the tty) open for Attach.
        attach: (cfg.stdin || cfg.tty).then_some(crate::container::attach::AttachOptions { stdin: cfg.stdin, stdin_once: cfg.stdin_once, tty: cfg.tty }),
        ..Default::default()
    };
    if let Some(l) = &cfg.linux {
        if let Some(sc) = &l.security_context {
            c.security.privileged = sc.privileged;
            c.security.read_only = sc.readonly_rootfs;
            if let Some(caps) = &sc.capabilities {
                c.security.cap_add = caps.add_capabilities.clone();
                c.security.cap_drop = caps.drop_capabilities.clone();
            }
            if let Some((uid, gid, extra)) = run_as(ctx, c.image.as_deref().unwrap_or_default(), sc)? {
                c.user = Some((uid, gid));
                c.group_add.extend(extra);
            }
            (c.security.seccomp_unconfined, c.security.seccomp_profile) = seccomp(sc)?;
            // Empty lists (what an unset field decodes to) keep podbox's defaults, as containerd does.
            c.security.masked_paths = (!sc.masked_paths.is_empty()).then(|| sc.masked_paths.clone());
            c.security.readonly_paths = (!sc.readonly_paths.is_empty()).then(|| sc.readonly_paths.clone());
            c.run_as_non_root = false;
            c.group_add.extend(sc.supplemental_groups.iter().filter_map(|g| u32::try_from(*g).ok()));
            c.security.allow_privilege_escalation = !sc.no_new_privs;
        }
        if let Some(r) = &l.resources {
            if r.memory_limit_in_bytes > 0 {
                c.resources.memory_bytes = Some(r.memory_limit_in_bytes);
            }
            if r.cpu_quota > 0 && r.cpu_period > 0 {
                c.resources.cpu_millis = Some((r.cpu_quota as u64 * 1000).div_ceil(r.cpu_period as u64));
            }
            if r.cpu_shares > 0 {
                // The inverse of Kubernetes' MilliCPUToShares (1024 per CPU), rounded up so that
                // the shares written are the shares asked for.
                c.resources.cpu_request_millis = Some((r.cpu_shares as u64 * 1000).div_ceil(1024));
            }
        }
    }
    if cfg.linux.as_ref().and_then(|l| l.security_context.as_ref()).is_none() {
        // No security context: no seccomp profile, which Kubernetes runs unconfined.
        c.security.seccomp_unconfined = true;
    }
    let host_volumes = host_path_mounts(&cfg.mounts, &mut c)?;
    // Pod-wide sysctls are set by each container's init in the pod's namespaces.
    if let Some(l) = &sandbox.linux {
        c.security.sysctls = l.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    }
    containers::create(ctx, &pod.id, &c, &host_volumes)?;
    let dir = ctx.root.container_dir(&pod.id, &name);
    let finish = || -> Result<()> {
        super::write_config(&dir.join(super::CONTAINER_CONFIG), cfg)?;
        // The monitor writes the log where the kubelet asked for it (so that the kubelet can
        // rotate it by renaming): the container's own log is a link to it.
        if let Some(path) = super::cri_log_path(Some(sandbox), cfg) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| CriError::Internal(format!("creating the log directory {}: {e}", parent.display())))?;
            }
            let link = dir.join(containers::LOG_FILE);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&path, &link).map_err(|e| CriError::Internal(format!("linking {} to the log {}: {e}", link.display(), path.display())))?;
        }
        Ok(())
    };
    if let Err(e) = finish() {
        let _ = containers::remove(ctx, &pod.id, &name, true);
        return Err(e);
    }
    Ok(super::container_id(&pod.id, &name))
}

/// The user a security context asks for, as containerd resolves it: a uid or a name through the
/// image's own /etc/passwd (its primary group unless run_as_group is given) plus the groups of
/// the image's /etc/group that list it, which Kubernetes adds to supplemental_groups.
fn run_as(ctx: &Ctx, image: &str, sc: &api::LinuxContainerSecurityContext) -> Result<Option<(u32, u32, Vec<u32>)>> {
    let id = |v: i64| u32::try_from(v).map_err(|_| CriError::Invalid(format!("user/group id {v} is not 0-4294967294")));
    let user = match (&sc.run_as_user, sc.run_as_username.as_str()) {
        (Some(uid), _) => id(uid.value)?.to_string(),
        (None, "") if sc.run_as_group.is_some() => return Err(CriError::Invalid("security_context.run_as_group needs run_as_user or run_as_username".into())),
        (None, "") => return Ok(None),
        (None, name) => name.to_string(),
    };
    let spec = match &sc.run_as_group {
        Some(g) => format!("{user}:{}", id(g.value)?),
        None => user,
    };
    let store = ctx.image_store()?;
    let info = store.image(image)?;
    let mut lowers = store.layer_dirs(&info)?;
    lowers.reverse();
    Ok(Some(crate::image::config::resolve_user(&spec, &lowers)?))
}

/// New limits written into a container's cgroup (memory, CPU quota, shares and cpuset); the
/// rest of the request is refused by name rather than ignored.
fn update_resources(ctx: &Ctx, pod: &crate::pod::model::PodRecord, name: &str, r: &api::LinuxContainerResources) -> Result<()> {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};
    if !r.unified.is_empty() || r.hugepage_limits.iter().any(|h| h.limit > 0) || r.memory_swap_limit_in_bytes > 0 {
        return Err(CriError::Unimplemented("UpdateContainerResources: unified, hugepage and swap limits are not supported".into()));
    }
    let bad = |e: oci_spec::OciSpecError| CriError::Invalid(format!("resources: {e}"));
    let mut b = LinuxResourcesBuilder::default();
    if r.memory_limit_in_bytes > 0 {
        b = b.memory(LinuxMemoryBuilder::default().limit(r.memory_limit_in_bytes).build().map_err(bad)?);
    }
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if r.cpu_quota > 0 && r.cpu_period > 0 {
        cpu = cpu.quota(r.cpu_quota).period(r.cpu_period as u64);
        any_cpu = true;
    }
    if r.cpu_shares > 0 {
        cpu = cpu.shares(r.cpu_shares as u64);
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
        any_cpu = true;
    }
    if any_cpu {
        b = b.cpu(cpu.build().map_err(bad)?);
    }
    let st = ctx.container_status(pod, name)?.ok_or_else(|| CriError::NotFound(format!("container {name} not found")))?;
    let path = st.record.cgroup.clone().unwrap_or_else(|| crate::pod::spec::container_cgroup(&pod.id, name));
    let cg = crate::container::cgroups::Cgroup::resolve(&path).map_err(PodError::from)?;
    cg.create(Some(&b.build().map_err(bad)?)).map_err(PodError::from)?;
    Ok(())
}

/// The seccomp filter CRI asks for: (unconfined, a profile from the node). As in Kubernetes,
/// no profile at all means unconfined; RuntimeDefault is podbox's default filter; Localhost
/// reads an OCI seccomp JSON profile from the node. The deprecated `seccomp_profile_path` is
/// read when `seccomp` is unset.
// The kubelet of Kubernetes 1.29 still sends the deprecated field for old pods.
#[allow(deprecated)]
fn seccomp(sc: &api::LinuxContainerSecurityContext) -> Result<(bool, Option<oci_spec::runtime::LinuxSeccomp>)> {
    let localhost = |path: &str| -> Result<(bool, Option<oci_spec::runtime::LinuxSeccomp>)> {
        let text = std::fs::read_to_string(path).map_err(|e| CriError::Invalid(format!("seccomp profile {path}: {e}")))?;
        let profile = serde_json::from_str(&text).map_err(|e| CriError::Invalid(format!("seccomp profile {path}: not an OCI seccomp profile: {e}")))?;
        Ok((false, Some(profile)))
    };
    match &sc.seccomp {
        Some(p) => match api::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(api::security_profile::ProfileType::RuntimeDefault) => Ok((false, None)),
            Ok(api::security_profile::ProfileType::Unconfined) => Ok((true, None)),
            Ok(api::security_profile::ProfileType::Localhost) => localhost(&p.localhost_ref),
            Err(_) => Err(CriError::Invalid(format!("seccomp profile type {}", p.profile_type))),
        },
        None => match sc.seccomp_profile_path.as_str() {
            "" | "unconfined" => Ok((true, None)),
            "runtime/default" | "docker/default" => Ok((false, None)),
            p => match p.strip_prefix("localhost/") {
                Some(path) => localhost(path),
                None => Err(CriError::Invalid(format!("seccomp_profile_path {p:?}: expected runtime/default, unconfined or localhost/PATH"))),
            },
        },
    }
}

/// CRI mounts are node paths bound into the container: each becomes a hostPath volume of the
/// pod (named after the path) and a mount of it. A missing host path is made a directory, as
/// containerd does.
fn host_path_mounts(mounts: &[api::Mount], c: &mut ContainerSpec) -> Result<Vec<Volume>> {
    let mut out = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("ContainerConfig.mounts[{i}]");
        let host = std::path::Path::new(&m.host_path);
        if !host.is_absolute() || !m.container_path.starts_with('/') {
            return Err(CriError::Invalid(format!("{field}: host_path {:?} and container_path {:?} must be absolute", m.host_path, m.container_path)));
        }
        let (host_to_container, bidirectional) = match api::MountPropagation::try_from(m.propagation) {
            Ok(api::MountPropagation::PropagationPrivate) => (false, false),
            Ok(api::MountPropagation::PropagationHostToContainer) => (true, false),
            // As Kubernetes' validation: a container that can mount on the node is privileged.
            Ok(api::MountPropagation::PropagationBidirectional) if !c.security.privileged => {
                return Err(CriError::Invalid(format!("{field}: bidirectional propagation makes mounts in the container show on the node: it needs a privileged container")));
            }
            Ok(api::MountPropagation::PropagationBidirectional) => (true, true),
            Err(_) => return Err(CriError::Invalid(format!("{field}: unknown propagation {}", m.propagation))),
        };
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(CriError::Unimplemented(format!("{field}: id-mapped mounts are not supported")));
        }
        if !host.exists() {
            std::fs::create_dir_all(host).map_err(|e| CriError::Internal(format!("{field}: creating {}: {e}", host.display())))?;
        }
        let name = format!("cri-{}", &crate::image::digest::sha256(m.host_path.as_bytes())["sha256:".len()..][..16]);
        out.push(Volume { name: name.clone(), source: VolumeSource::HostPath { path: host.to_path_buf(), kind: HostPathType::Unset } });
        c.mounts.push(VolumeMount { name, mount_path: m.container_path.clone(), read_only: m.readonly, sub_path: None, host_to_container, bidirectional });
    }
    Ok(out)
}

/// The log at the kubelet's path, which goes with the container (files the kubelet rotated
/// away are the kubelet's).
fn remove_log_link(ctx: &Ctx, pod_id: &str, name: &str) {
    let link = ctx.root.container_dir(pod_id, name).join(containers::LOG_FILE);
    if let Ok(target) = std::fs::read_link(&link) {
        let _ = std::fs::remove_file(target);
    }
}

/// In the server: run `req` in a worker child with the server's own global options, bounded by
/// `timeout`. The child is killed at the timeout (its step is then left as a killed CLI leaves
/// it: for `gc` or the next call to finish).
pub async fn call(globals: &[std::ffi::OsString], req: &Request, timeout: Duration) -> std::result::Result<String, tonic::Status> {
    use tokio::io::AsyncWriteExt;
    let exe: PathBuf = std::env::current_exe().map_err(|e| tonic::Status::internal(format!("finding the podbox binary: {e}")))?;
    let outside: &[&str] = if req.enters_container() { &[] } else { &["--worker-outside-containers"] };
    let mut child = tokio::process::Command::new(exe)
        .args(globals)
        .args(["cri", "--worker"])
        .args(outside)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        // A call its client gave up on (the handler is dropped) still finishes its step: the
        // kubelet lists and removes what it does not know, and a step killed half-way would
        // be left for `gc`.
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| tonic::Status::internal(format!("starting a podbox worker: {e}")))?;
    let body = serde_json::to_vec(req).map_err(|e| tonic::Status::internal(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.map_err(|e| tonic::Status::internal(format!("writing to the worker: {e}")))?;
    }
    let pid = child.id();
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| tonic::Status::internal(format!("waiting for the worker: {e}")))?,
        Err(_) => {
            // Hung: end it, and let gc finish what it left half-made.
            if let Some(pid) = pid {
                // SAFETY: kill(2) of our own child; tokio has not reaped it (the wait was pending).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            gc(globals).await;
            return Err(tonic::Status::deadline_exceeded(format!("{} did not finish within {timeout:?}", req_name(req))));
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<Reply>(text.trim()) {
        Ok(Reply::Ok(v)) => Ok(v),
        Ok(Reply::Err { code, message }) => Err(tonic::Status::new(tonic::Code::from_i32(code), message)),
        Err(_) => Err(tonic::Status::internal(format!("the podbox worker for {} ended ({}) without a reply", req_name(req), out.status))),
    }
}

/// `podbox gc` with the server's options, bounded in time: finishes the removal of whatever a
/// killed server or worker left half-made. Problems are logged, not fatal.
pub async fn gc(globals: &[std::ffi::OsString]) {
    let Ok(exe) = std::env::current_exe() else { return };
    let child = tokio::process::Command::new(exe).args(globals).arg("gc").stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true).spawn();
    let Ok(child) = child else { return };
    match tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            for l in text.lines() {
                eprintln!("podbox cri: gc: {l}");
            }
        }
        _ => eprintln!("podbox cri: gc did not finish within 120 s"),
    }
}

fn req_name(r: &Request) -> &'static str {
    match r {
        Request::RunPod { .. } => "RunPodSandbox",
        Request::StopPod { .. } => "StopPodSandbox",
        Request::RemovePod { .. } => "RemovePodSandbox",
        Request::CreateContainer { .. } => "CreateContainer",
        Request::StartContainer { .. } => "StartContainer",
        Request::StopContainer { .. } => "StopContainer",
        Request::RemoveContainer { .. } => "RemoveContainer",
        Request::UpdateResources { .. } => "UpdateContainerResources",
        Request::PullImage { .. } => "PullImage",
        Request::RemoveImage { .. } => "RemoveImage",
    }
}
