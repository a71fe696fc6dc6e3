//! RunPodSandbox in the worker: a PodSandboxConfig → a `PodSpec` (namespace modes, sysctls,
//! host ports), the pod created, then its resolv.conf, log directory and the config recorded.

use super::{CriError, Result, api};
use crate::network::{PortMapping, Protocol};
use crate::pod::model::PodSpec;
use crate::pod::{Ctx, lifecycle};

/// RunPodSandbox: the pod created and finished, or, when finishing fails, removed again.
pub(super) fn run_pod(ctx: &Ctx, cfg: &api::PodSandboxConfig) -> Result<String> {
    let rec = lifecycle::create(ctx, &pod_spec(cfg)?)?;
    if let Err(e) = finish_pod(ctx, &rec.id, cfg) {
        let _ = lifecycle::remove(ctx, &rec.id, true);
        return Err(e);
    }
    Ok(rec.id)
}

/// The pod a PodSandboxConfig asks for; refused before anything exists when podbox cannot give it.
fn pod_spec(cfg: &api::PodSandboxConfig) -> Result<PodSpec> {
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
    let ports = port_mappings(cfg, host_network)?;
    Ok(PodSpec {
        name: super::pod_name(&meta),
        hostname: (!cfg.hostname.is_empty()).then(|| cfg.hostname.clone()),
        share_pid: pid == api::NamespaceMode::Pod,
        network: !host_network,
        node_namespaces,
        ports,
        labels: cfg.labels.clone().into_iter().collect(),
        ..Default::default()
    })
}

/// The host ports to forward (none with the node's own network, where a port is the node's).
fn port_mappings(cfg: &api::PodSandboxConfig, host_network: bool) -> Result<Vec<PortMapping>> {
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
    Ok(ports)
}

/// What CRI adds to a created pod: its resolv.conf, the kubelet's log directory, and the
/// config recorded for the reads. An error here removes the pod again.
fn finish_pod(ctx: &Ctx, id: &str, cfg: &api::PodSandboxConfig) -> Result<()> {
    let dir = ctx.root.pod_dir(id);
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
}
