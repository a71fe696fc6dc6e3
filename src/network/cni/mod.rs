//! CNI, both ways. As a *runtime* (this file): a node whose network config names a CNI config
//! directory wires each pod by calling the plugins of the first network configuration list there,
//! as containerd and CRI-O do — ADD with `prevResult` chaining, DEL in reverse from the result
//! cache, CHECK, STATUS and GC where the plugins speak spec 1.1. As a *plugin* (`plugin`):
//! `podbox-cni` puts podbox's bridge, veth, host-local-compatible IPAM and NAT behind the CNI
//! protocol for other engines.

pub mod cache;
pub mod conf;
pub mod exec;
pub mod hostlocal;
pub mod plugin;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Attachment, NetError, PortMapping, Protocol};
use cache::Entry;
use exec::Call;

pub const IFNAME: &str = "eth0";
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_BIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI config: {0}")]
    Config(String),
    #[error("no CNI network config (*.conflist, *.conf, *.json) in {0}")]
    NoConfig(PathBuf),
    #[error("CNI plugin {plugin:?} not found in {dirs} (set the plugin directories with `podbox network config --cni-bin-dir`)")]
    PluginNotFound { plugin: String, dirs: String },
    /// The plugin's own JSON error object.
    #[error("CNI plugin {plugin} {command} failed (code {code}): {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Plugin { plugin: String, command: String, code: u64, msg: String, details: String },
    #[error("CNI plugin {plugin} {command}: {msg}")]
    Exec { plugin: String, command: String, msg: String },
    #[error("CNI result: {0}")]
    Result(String),
    #[error("I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl CniError {
    pub fn io(path: &Path, source: std::io::Error) -> CniError {
        CniError::Io { path: path.display().to_string(), source }
    }
}

/// The node network config's choice of CNI: where the network configs and the plugins are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniSettings {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniSettings {
    fn default() -> Self {
        CniSettings { conf_dir: DEFAULT_CONF_DIR.into(), bin_dirs: DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect() }
    }
}

/// The spec's rule for container IDs and network names (`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`):
/// they end up in file names, link name hashes and nftables comments, so nothing else may pass.
pub fn valid_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The `portMappings` runtime capability, in the spec's conventions.
fn port_mappings(ports: &[PortMapping]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                let proto = match p.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                };
                json!({ "hostPort": p.host_port, "containerPort": p.container_port, "protocol": proto })
            })
            .collect(),
    )
}

/// The pod's attachment as the chain's final result describes it: the first IPv4 address on the
/// sandbox interface `ifname`, its gateway and MAC; the host-side interfaces (the bridge first,
/// the veth last, as the bridge plugin lists them).
pub fn attachment(result: &Value, ifname: &str) -> Result<Attachment, CniError> {
    let ifaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let sandbox_idx = ifaces.iter().position(|i| i["name"] == ifname && i["sandbox"].as_str().is_some_and(|s| !s.is_empty()));
    let host: Vec<String> = ifaces.iter().filter(|i| i["sandbox"].as_str().unwrap_or_default().is_empty()).filter_map(|i| i["name"].as_str().map(str::to_string)).collect();
    let ip = result["ips"].as_array().into_iter().flatten().find_map(|ip| {
        let on_ours = match (ip["interface"].as_u64(), sandbox_idx) {
            (Some(i), Some(s)) => i as usize == s,
            _ => true,
        };
        let net: Ipv4Net = ip["address"].as_str()?.parse().ok()?;
        on_ours.then(|| (net, ip["gateway"].as_str().and_then(|g| g.parse::<Ipv4Addr>().ok())))
    });
    // Spec 0.2.0 results: {"ip4": {"ip": "10.1.0.5/24", "gateway": …}}.
    let ip = ip.or_else(|| Some((result["ip4"]["ip"].as_str()?.parse().ok()?, result["ip4"]["gateway"].as_str().and_then(|g| g.parse().ok()))));
    let (net, gw) = ip.ok_or_else(|| CniError::Result(format!("no IPv4 address for {ifname} in the result: {result}")))?;
    Ok(Attachment {
        ip: net.addr(),
        prefix_len: net.prefix_len(),
        gateway: gw.unwrap_or(Ipv4Addr::UNSPECIFIED),
        mac: sandbox_idx.and_then(|i| ifaces[i]["mac"].as_str()).unwrap_or_default().to_string(),
        host_veth: host.last().cloned().unwrap_or_default(),
        bridge: if host.len() >= 2 { host[0].clone() } else { String::new() },
    })
}

/// Refuse host ports another pod of this node's CNI network holds (from the cache; the portmap
/// plugin itself would silently let the later rule win).
fn check_ports_free(root: &Path, pod_id: &str, ports: &[PortMapping]) -> Result<(), NetError> {
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].iter().any(|q| q.host_port == p.host_port && q.protocol == p.protocol) {
            return Err(NetError::PortTaken { port: p.host_port, proto: proto(p.protocol), owner: pod_id.into() });
        }
    }
    for e in cache::all(root)? {
        for m in e.capability_args["portMappings"].as_array().into_iter().flatten() {
            let taken = ports.iter().find(|p| m["hostPort"].as_u64() == Some(p.host_port.into()) && m["protocol"].as_str().unwrap_or("tcp") == proto(p.protocol));
            if let Some(p) = taken {
                return Err(NetError::PortTaken { port: p.host_port, proto: proto(p.protocol), owner: e.container_id.clone() });
            }
        }
    }
    Ok(())
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// ADD pod `pod_id` (network namespace pinned at `netns`) to the node's CNI network. On error
/// every plugin that may have done something gets its DEL, and the cache entry goes only once
/// those succeeded (else `gc` retries them).
pub fn setup(root: &Path, settings: &CniSettings, pod_id: &str, pod_name: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment, NetError> {
    let step = |step: &'static str| move |e: NetError| NetError::Step { pod: pod_id.to_string(), step, cause: Box::new(e) };
    let list = conf::load_dir(&settings.conf_dir).map_err(NetError::from).map_err(step("loading the CNI network config"))?;
    if let Some(e) = cache::of(root, pod_id)?.first() {
        return Err(NetError::Conflict(format!("pod {pod_id} is already attached to CNI network {} (remove it with `podbox network del --id {pod_id}`)", e.network_name)));
    }
    check_ports_free(root, pod_id, ports).map_err(step("checking host ports"))?;
    let mut entry = Entry {
        kind: "cniCacheV1".into(),
        container_id: pod_id.into(),
        if_name: IFNAME.into(),
        network_name: list.name.clone(),
        config: list.to_value(),
        cni_args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), "default".into()),
            ("K8S_POD_NAME".into(), pod_name.into()),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), pod_id.into()),
        ],
        capability_args: json!({ "portMappings": port_mappings(ports) }),
        netns: netns.display().to_string(),
        result: None,
    };
    // The record of "ADD started" comes first: a crash from here on leaves what gc needs.
    cache::write(root, &entry).map_err(NetError::from).map_err(step("writing the CNI cache"))?;
    let added = add_list(&list, &entry, &settings.bin_dirs).and_then(|r| Ok((attachment(&r, IFNAME)?, r)));
    let res = added.and_then(|(a, r)| {
        entry.result = Some(r);
        cache::write(root, &entry)?;
        Ok(a)
    });
    res.map_err(|e| {
        // Roll back; a DEL that fails keeps the entry, so gc retries it.
        let undo = del_entry(root, &entry, &settings.bin_dirs);
        let e = NetError::from(e);
        match undo {
            Ok(()) => step("CNI ADD")(e),
            Err(u) => NetError::Setup { pod: pod_id.into(), msg: format!("CNI ADD failed: {e}; its rollback failed too ({u}); `podbox gc` retries it") },
        }
    })
}

fn call<'a>(entry: &'a Entry, command: &'a str, netns: &'a str, bin_dirs: &'a [PathBuf]) -> Call<'a> {
    Call { command, container_id: &entry.container_id, netns, ifname: &entry.if_name, args: &entry.cni_args, bin_dirs }
}

fn add_list(list: &conf::NetworkList, entry: &Entry, bin_dirs: &[PathBuf]) -> Result<Value, CniError> {
    let c = call(entry, "ADD", &entry.netns, bin_dirs);
    let mut prev: Option<Value> = None;
    for (i, p) in list.plugins.iter().enumerate() {
        let stdin = exec::plugin_stdin(p, &list.name, &list.cni_version, prev.as_ref(), &entry.capability_args);
        let out = exec::invoke(&c, list.plugin_type(i), &stdin)?;
        prev = Some(out.ok_or_else(|| CniError::Result(format!("plugin {} printed no result for ADD", list.plugin_type(i))))?);
    }
    Ok(prev.expect("a list has at least one plugin"))
}

/// DEL every plugin of the entry's list in reverse order, each retried; remove the entry when all
/// succeeded. Missing things count as deleted (the plugins' own rule).
fn del_entry(root: &Path, entry: &Entry, bin_dirs: &[PathBuf]) -> Result<(), CniError> {
    let list = conf::parse(&serde_json::to_vec(&entry.config).expect("JSON")).map_err(|m| CniError::Config(format!("cached config of {}: {m}", entry.container_id)))?;
    // The pin may be gone (a half-removed pod): the plugins then free what they can without it.
    let netns = exec::live_netns(Path::new(&entry.netns));
    let c = call(entry, "DEL", &netns, bin_dirs);
    let prev = entry.result.as_ref().filter(|_| exec::version_at_least(&list.cni_version, "0.4.0"));
    let mut first_err = None;
    for i in (0..list.plugins.len()).rev() {
        let stdin = exec::plugin_stdin(&list.plugins[i], &list.name, &list.cni_version, prev, &entry.capability_args);
        let mut attempt = 0;
        let res = loop {
            match exec::invoke(&c, list.plugin_type(i), &stdin) {
                Err(e) if attempt < 2 && !matches!(e, CniError::PluginNotFound { .. }) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 * attempt));
                }
                r => break r,
            }
        };
        if let Err(e) = res {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        None => cache::remove(root, entry),
        Some(e) => Err(e),
    }
}

/// DEL pod `pod_id` from every CNI network it is attached to; nothing cached is success.
pub fn teardown(root: &Path, pod_id: &str, bin_dirs: &[PathBuf]) -> Result<(), NetError> {
    let mut res = Ok(());
    for e in cache::of(root, pod_id)? {
        if let Err(x) = del_entry(root, &e, bin_dirs) {
            res = res.and(Err(x.into()));
        }
    }
    res
}

/// CHECK pod `pod_id`'s attachments (spec ≥ 0.4.0, unless the list disables it).
pub fn check(root: &Path, settings: &CniSettings, pod_id: &str) -> Result<(), NetError> {
    let entries = cache::of(root, pod_id)?;
    if entries.is_empty() {
        return Err(NetError::Config(format!("pod {pod_id} has no CNI attachment")));
    }
    for e in entries {
        let list = conf::parse(&serde_json::to_vec(&e.config).expect("JSON")).map_err(CniError::Config)?;
        if list.disable_check || !exec::version_at_least(&list.cni_version, "0.4.0") {
            continue;
        }
        let Some(result) = e.result.as_ref() else {
            return Err(NetError::Config(format!("pod {pod_id}: ADD never finished")));
        };
        let c = call(&e, "CHECK", &e.netns, &settings.bin_dirs);
        for (i, p) in list.plugins.iter().enumerate() {
            exec::invoke(&c, list.plugin_type(i), &exec::plugin_stdin(p, &list.name, &list.cni_version, Some(result), &e.capability_args))?;
        }
    }
    Ok(())
}

/// DEL what pods not in `live` left (a crash between ADD and the pod record), then GC on the
/// plugins that speak spec 1.1, with the attachments still valid.
pub fn gc(root: &Path, settings: &CniSettings, live: &[String]) -> Result<(), NetError> {
    let mut res: Result<(), NetError> = Ok(());
    let entries = cache::all(root)?;
    for e in entries.iter().filter(|e| !live.contains(&e.container_id)) {
        if let Err(x) = del_entry(root, e, &settings.bin_dirs) {
            res = res.and(Err(x.into()));
        }
    }
    let Ok(list) = conf::load_dir(&settings.conf_dir) else { return res };
    if !exec::version_at_least(&list.cni_version, "1.1.0") {
        return res;
    }
    let valid: Vec<Value> = cache::all(root)?
        .iter()
        .filter(|e| e.network_name == list.name)
        .map(|e| json!({ "containerID": e.container_id, "ifname": e.if_name }))
        .collect();
    for (i, p) in list.plugins.iter().enumerate() {
        let ty = list.plugin_type(i);
        if !exec::versions(ty, &list.cni_version, &settings.bin_dirs).unwrap_or_default().iter().any(|v| exec::version_at_least(v, "1.1.0")) {
            continue;
        }
        let mut stdin = exec::plugin_stdin(p, &list.name, &list.cni_version, None, &json!({}));
        stdin["cni.dev/valid-attachments"] = Value::Array(valid.clone());
        let c = Call { command: "GC", container_id: "", netns: "", ifname: "", args: &[], bin_dirs: &settings.bin_dirs };
        if let Err(x) = exec::invoke(&c, ty, &stdin) {
            res = res.and(Err(x.into()));
        }
    }
    res
}

/// What `net show` tells about a CNI node.
#[derive(Debug, Clone, Serialize)]
pub struct CniStatus {
    pub conf_dir: PathBuf,
    pub conf_file: Option<PathBuf>,
    pub network: Option<String>,
    pub cni_version: Option<String>,
    pub plugins: Vec<String>,
    /// Per plugin: "ready", "not ready: …" (STATUS, spec 1.1) or "no STATUS (speaks up to X)".
    pub plugin_status: Vec<String>,
    pub error: Option<String>,
    /// (pod id, IP, host veth) per attachment in the cache; "-" while ADD is unfinished.
    pub attachments: Vec<(String, String, String)>,
}

pub fn status(root: &Path, settings: &CniSettings) -> Result<CniStatus, NetError> {
    let mut st = CniStatus {
        conf_dir: settings.conf_dir.clone(),
        conf_file: None,
        network: None,
        cni_version: None,
        plugins: vec![],
        plugin_status: vec![],
        error: None,
        attachments: vec![],
    };
    for e in cache::all(root)? {
        let a = e.result.as_ref().and_then(|r| attachment(r, &e.if_name).ok());
        st.attachments.push((e.container_id.clone(), a.as_ref().map(|a| a.ip.to_string()).unwrap_or("-".into()), a.map(|a| a.host_veth).unwrap_or("-".into())));
    }
    match conf::load_dir(&settings.conf_dir) {
        Err(e) => st.error = Some(e.to_string()),
        Ok(list) => {
            for (i, p) in list.plugins.iter().enumerate() {
                let ty = list.plugin_type(i).to_string();
                let s = match exec::versions(&ty, &list.cni_version, &settings.bin_dirs) {
                    Err(e) => format!("unusable: {e}"),
                    Ok(v) if v.iter().any(|v| exec::version_at_least(v, "1.1.0")) && exec::version_at_least(&list.cni_version, "1.1.0") => {
                        let c = Call { command: "STATUS", container_id: "", netns: "", ifname: "", args: &[], bin_dirs: &settings.bin_dirs };
                        match exec::invoke(&c, &ty, &exec::plugin_stdin(p, &list.name, &list.cni_version, None, &json!({}))) {
                            Ok(_) => "ready".into(),
                            Err(e) => format!("not ready: {e}"),
                        }
                    }
                    Ok(v) => format!("no STATUS (speaks up to {})", v.last().cloned().unwrap_or_default()),
                };
                st.plugins.push(ty);
                st.plugin_status.push(s);
            }
            st.conf_file = list.path.clone();
            st.network = Some(list.name);
            st.cni_version = Some(list.cni_version);
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        assert!(valid_name("podman-abc_1.2") && valid_name("0a"));
        for bad in ["", "-x", ".x", "a/b", "a b", "a\"b", "a\nb"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn attachment_from_a_bridge_result() {
        let r = json!({"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa"},{"name":"veth1","mac":"bb"},{"name":"eth0","mac":"cc","sandbox":"/x"}],
            "ips":[{"interface":2,"address":"10.9.0.3/24","gateway":"10.9.0.1"}]});
        let a = attachment(&r, "eth0").unwrap();
        assert_eq!((a.ip.to_string(), a.prefix_len, a.gateway.to_string()), ("10.9.0.3".into(), 24, "10.9.0.1".into()));
        assert_eq!((a.mac.as_str(), a.host_veth.as_str(), a.bridge.as_str()), ("cc", "veth1", "cni0"));
        assert!(attachment(&json!({"interfaces":[]}), "eth0").is_err());
        let old = attachment(&json!({"ip4":{"ip":"10.1.0.5/16"}}), "eth0").unwrap();
        assert_eq!(old.ip.to_string(), "10.1.0.5");
    }
}
