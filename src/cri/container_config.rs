//! CreateContainer and UpdateContainerResources in the worker: a ContainerConfig → a
//! `ContainerSpec` (image, command, security context with its user and seccomp profile,
//! resources, host path mounts), the container created, then its config and log link recorded.

use super::{CriError, Result, api};
use crate::container::LogLimits;
use crate::pod::model::{ContainerSpec, PullPolicy};
use crate::pod::volumes::{HostPathType, Volume, VolumeMount, VolumeSource};
use crate::pod::{Ctx, PodError, containers};

/// CreateContainer: the container created in pod `pod_id` and finished, or, when finishing
/// fails, removed again.
pub(super) fn create_container(ctx: &Ctx, pod_id: &str, cfg: &api::ContainerConfig, sandbox: &api::PodSandboxConfig) -> Result<String> {
    let pod = super::find_pod(ctx, pod_id)?;
    let (c, host_volumes) = container_spec(ctx, cfg, sandbox)?;
    let name = c.name.clone();
    containers::create(ctx, &pod.id, &c, &host_volumes)?;
    let dir = ctx.root.container_dir(&pod.id, &name);
    if let Err(e) = finish_container(&dir, cfg, sandbox) {
        let _ = containers::remove(ctx, &pod.id, &name, true);
        return Err(e);
    }
    Ok(super::container_id(&pod.id, &name))
}

/// The container a ContainerConfig asks for, and the hostPath volumes its CRI mounts become.
fn container_spec(ctx: &Ctx, cfg: &api::ContainerConfig, sandbox: &api::PodSandboxConfig) -> Result<(ContainerSpec, Vec<Volume>)> {
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
            apply_security_context(ctx, &mut c, sc)?;
        }
        if let Some(r) = &l.resources {
            apply_resources(&mut c, r);
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
    Ok((c, host_volumes))
}

/// A security context's privileges, capabilities, user and groups, seccomp profile and paths.
fn apply_security_context(ctx: &Ctx, c: &mut ContainerSpec, sc: &api::LinuxContainerSecurityContext) -> Result<()> {
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
    Ok(())
}

/// The resources a ContainerConfig sets: memory limit, CPU quota and shares.
fn apply_resources(c: &mut ContainerSpec, r: &api::LinuxContainerResources) {
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

/// What CRI adds to a created container in `dir`: its config, recorded for the reads, and the
/// log link. An error here removes the container again.
fn finish_container(dir: &std::path::Path, cfg: &api::ContainerConfig, sandbox: &api::PodSandboxConfig) -> Result<()> {
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
pub(super) fn update_resources(ctx: &Ctx, pod: &crate::pod::model::PodRecord, name: &str, r: &api::LinuxContainerResources) -> Result<()> {
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
    let path = st.record.cgroup.clone().unwrap_or_else(|| crate::pod::spec::container_cgroup(pod, name));
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
