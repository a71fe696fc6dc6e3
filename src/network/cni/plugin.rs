//! `podbox-cni`: podbox's bridge network as a CNI plugin (spec 1.1; results in 0.3.0–1.1.0).
//! Configured like the reference `bridge` plugin (`bridge`, `isGateway`, `isDefaultGateway`,
//! `ipMasq`, `mtu`, `hairpinMode`, `ipam` of type `host-local` with `ranges`/`subnet`, `routes`,
//! `dataDir`; a top-level `subnet`/`gateway` too) plus the `portMappings` capability. It wires
//! with podbox's own netlink functions, keeps addresses in host-local's on-disk layout
//! (`hostlocal`) and does NAT with podbox's nftables table. Errors are the spec's JSON objects.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::{Value, json};

use super::hostlocal::{Range, Store};
use crate::network::{NetConfig, NetError, PortMapping, Protocol, netlink, nft};

pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";
/// NAT state (the nft stamp) of podbox-cni; a tmpfs on a usual node, like the kernel state it
/// describes. `PODBOX_CNI_STATE_DIR` overrides it (the runtime's environment reaches plugins).
const STATE_DIR: &str = "/run/podbox-cni";

/// A CNI error object: the spec's well-known codes, or 100+ for podbox-cni's own.
#[derive(Debug, thiserror::Error)]
#[error("{msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const NOT_AVAILABLE: u32 = 50;
    /// podbox-cni: ADD for a (container, interface) that is already attached.
    pub const ALREADY_ATTACHED: u32 = 100;
    /// podbox-cni: CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 101;
    /// podbox-cni: the data path could not be set up (rolled back).
    pub const SETUP_FAILED: u32 = 102;
}

fn err(code: u32, msg: impl Into<String>, details: impl Into<String>) -> PluginError {
    PluginError { code, msg: msg.into(), details: details.into() }
}

impl From<NetError> for PluginError {
    fn from(e: NetError) -> Self {
        let c = match e {
            NetError::Io { .. } => code::IO,
            NetError::Config(_) => code::INVALID_CONFIG,
            _ => code::SETUP_FAILED,
        };
        err(c, e.to_string(), "")
    }
}

impl From<super::CniError> for PluginError {
    fn from(e: super::CniError) -> Self {
        let c = match e {
            super::CniError::Io { .. } => code::IO,
            _ => code::INVALID_CONFIG,
        };
        err(c, e.to_string(), "")
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conf {
    cni_version: String,
    name: String,
    #[serde(default = "default_bridge")]
    bridge: String,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    is_default_gateway: bool,
    #[serde(default)]
    ip_masq: bool,
    mtu: Option<u32>,
    #[serde(default)]
    hairpin_mode: bool,
    subnet: Option<String>,
    gateway: Option<Ipv4Addr>,
    #[serde(default)]
    ipam: Ipam,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    /// The runtime capabilities this config declares (`portMappings`).
    #[serde(default)]
    capabilities: std::collections::HashMap<String, bool>,
    prev_result: Option<Value>,
    /// GC: the attachments to keep.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Vec<ValidAttachment>,
}

fn default_bridge() -> String {
    "cni0".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ipam {
    #[serde(rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    ranges: Vec<Vec<RangeConf>>,
    subnet: Option<String>,
    range_start: Option<Ipv4Addr>,
    range_end: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    #[serde(default)]
    routes: Vec<RouteConf>,
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeConf {
    subnet: String,
    range_start: Option<Ipv4Addr>,
    range_end: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Deserialize)]
struct RouteConf {
    dst: String,
    gw: Option<Ipv4Addr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMappingConf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortMappingConf {
    host_port: u16,
    container_port: u16,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The network a config describes, resolved and checked.
#[derive(Debug)]
struct Net {
    name: String,
    version: String,
    bridge: String,
    subnet: Ipv4Net,
    range: Range,
    is_gateway: bool,
    ip_masq: bool,
    mtu: u32,
    hairpin: bool,
    routes: Vec<(Ipv4Net, Ipv4Addr)>,
    data_dir: PathBuf,
    ports: Vec<PortMapping>,
    /// Whether the config declares `portMappings`: without it no runtime passes host ports, so
    /// DEL has no NAT elements to look for (an `nft` run spared).
    port_capable: bool,
}

fn parse_v4net(s: &str, what: &str) -> Result<Ipv4Net, PluginError> {
    s.parse::<Ipv4Net>().map_err(|_| err(code::INVALID_CONFIG, format!("{what} {s:?} is not an IPv4 CIDR"), "podbox-cni handles IPv4 only"))
}

fn resolve(c: &Conf) -> Result<Net, PluginError> {
    if let Some(t) = &c.ipam.ty
        && t != "host-local"
    {
        return Err(err(code::UNSUPPORTED_FIELD, format!("ipam type {t:?} is not supported"), "podbox-cni allocates itself, in host-local's layout: use \"host-local\""));
    }
    let (subnet, start, end, gw) = if let Some(r) = c.ipam.ranges.first().and_then(|set| set.first()) {
        (parse_v4net(&r.subnet, "ipam.ranges subnet")?, r.range_start, r.range_end, r.gateway)
    } else if let Some(s) = c.ipam.subnet.as_deref().or(c.subnet.as_deref()) {
        (parse_v4net(s, "subnet")?, c.ipam.range_start, c.ipam.range_end, c.ipam.gateway.or(c.gateway))
    } else {
        return Err(err(code::INVALID_CONFIG, "no subnet", "set ipam.ranges (or ipam.subnet, or subnet)"));
    };
    if subnet.prefix_len() > 30 {
        return Err(err(code::INVALID_CONFIG, format!("subnet {subnet} is too small"), "need at most /30"));
    }
    let subnet = subnet.trunc();
    let gateway = gw.unwrap_or_else(|| crate::network::config::first_host(subnet));
    let first = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let last = Ipv4Addr::from(u32::from(subnet.broadcast()) - 1);
    let range = Range { start: start.unwrap_or(first), end: end.unwrap_or(last), gateway };
    for a in [range.start, range.end, gateway] {
        if !(first..=last).contains(&a) {
            return Err(err(code::INVALID_CONFIG, format!("{a} is not a host address of {subnet}"), ""));
        }
    }
    let mut routes = Vec::new();
    for r in &c.ipam.routes {
        routes.push((parse_v4net(&r.dst, "route dst")?, r.gw.unwrap_or(gateway)));
    }
    if c.is_default_gateway && !routes.iter().any(|(d, _)| d.prefix_len() == 0) {
        routes.push((Ipv4Net::default(), gateway));
    }
    let mut ports = Vec::new();
    for p in &c.runtime_config.port_mappings {
        let protocol = match p.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(err(code::UNSUPPORTED_FIELD, format!("port mapping protocol {other:?}"), "tcp or udp")),
        };
        if p.host_port == 0 || p.container_port == 0 {
            return Err(err(code::INVALID_CONFIG, "port mapping with port 0", ""));
        }
        ports.push(PortMapping { host_port: p.host_port, container_port: p.container_port, protocol });
    }
    let mtu = c.mtu.unwrap_or(1500);
    if !(68..=65535).contains(&mtu) {
        return Err(err(code::INVALID_CONFIG, format!("MTU {mtu} out of range 68..65535"), ""));
    }
    if c.bridge.is_empty() || c.bridge.len() > 15 || c.bridge.contains(['/', ' ']) {
        return Err(err(code::INVALID_CONFIG, format!("invalid bridge name {:?}", c.bridge), "1-15 characters, no '/' or space"));
    }
    Ok(Net {
        name: c.name.clone(),
        version: c.cni_version.clone(),
        bridge: c.bridge.clone(),
        subnet,
        range,
        is_gateway: c.is_gateway || c.is_default_gateway,
        ip_masq: c.ip_masq,
        mtu,
        hairpin: c.hairpin_mode,
        routes,
        data_dir: c.ipam.data_dir.clone().unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        port_capable: c.capabilities.get("portMappings").copied().unwrap_or(false) || !ports.is_empty(),
        ports,
    })
}

impl Net {
    /// The node config podbox's NAT functions take: this network's bridge and subnet; ipMasq
    /// translates what leaves the subnet, as the reference plugin does.
    fn nat_config(&self) -> NetConfig {
        NetConfig {
            bridge: self.bridge.clone(),
            subnet: self.subnet,
            gateway: self.range.gateway,
            mtu: self.mtu,
            hairpin: self.hairpin,
            masquerade: self.ip_masq,
            no_masquerade_dst: vec![self.subnet],
            cni: None,
        }
    }

    fn state_root(&self) -> PathBuf {
        let base = std::env::var_os("PODBOX_CNI_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| STATE_DIR.into());
        base.join(&self.name)
    }
}

/// The host-side veth of (container, interface): derived from both (FNV-1a), so DEL and GC
/// need no record; "veth" + 11 hex digits = 15 characters, the kernel's limit.
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("veth{:011x}", h & 0xfff_ffff_ffff)
}

struct Env {
    command: String,
    container_id: String,
    netns: String,
    ifname: String,
}

fn env() -> Result<Env, PluginError> {
    let get = |k: &str| std::env::var(k).unwrap_or_default();
    let e = Env { command: get("CNI_COMMAND"), container_id: get("CNI_CONTAINERID"), netns: get("CNI_NETNS"), ifname: get("CNI_IFNAME") };
    let need = |v: &str, k: &str| if v.is_empty() { Err(err(code::INVALID_ENV, format!("{k} is not set"), "")) } else { Ok(()) };
    match e.command.as_str() {
        "ADD" | "CHECK" => {
            need(&e.container_id, "CNI_CONTAINERID")?;
            need(&e.netns, "CNI_NETNS")?;
            need(&e.ifname, "CNI_IFNAME")?;
        }
        "DEL" => {
            need(&e.container_id, "CNI_CONTAINERID")?;
            need(&e.ifname, "CNI_IFNAME")?;
        }
        "VERSION" | "STATUS" | "GC" => {}
        "" => return Err(err(code::INVALID_ENV, "CNI_COMMAND is not set", "podbox-cni is a CNI plugin; it is run by a container runtime")),
        other => return Err(err(code::INVALID_ENV, format!("unknown CNI_COMMAND {other:?}"), "ADD, DEL, CHECK, VERSION, STATUS or GC")),
    }
    if !e.container_id.is_empty() && !super::valid_name(&e.container_id) {
        return Err(err(code::INVALID_ENV, format!("invalid CNI_CONTAINERID {:?}", e.container_id), "letters, digits, '_', '.' and '-' only"));
    }
    if !e.ifname.is_empty() && (e.ifname.len() > 15 || e.ifname.contains(['/', ' ']) || e.ifname == "." || e.ifname == "..") {
        return Err(err(code::INVALID_ENV, format!("invalid CNI_IFNAME {:?}", e.ifname), ""));
    }
    Ok(e)
}

/// Entry point of `podbox-cni`: the result (or nothing) on stdout and 0, or a JSON error
/// object on stdout and 1.
pub fn main() -> i32 {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let version = serde_json::from_slice::<Value>(&stdin).ok().and_then(|v| v["cniVersion"].as_str().map(str::to_string));
    match run(&stdin) {
        Ok(Some(out)) => {
            println!("{out}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let v = version.filter(|v| SUPPORTED.contains(&v.as_str())).unwrap_or_else(|| "1.1.0".into());
            println!("{}", json!({ "cniVersion": v, "code": e.code, "msg": e.msg, "details": e.details }));
            1
        }
    }
}

fn run(stdin: &[u8]) -> Result<Option<Value>, PluginError> {
    let e = env()?;
    if e.command == "VERSION" {
        let asked = serde_json::from_slice::<Value>(stdin).ok().and_then(|v| v["cniVersion"].as_str().map(str::to_string));
        return Ok(Some(json!({ "cniVersion": asked.filter(|v| SUPPORTED.contains(&v.as_str())).unwrap_or("1.1.0".into()), "supportedVersions": SUPPORTED })));
    }
    let conf: Conf = serde_json::from_slice(stdin).map_err(|x| err(code::DECODE, "cannot decode the network config", x.to_string()))?;
    if !SUPPORTED.contains(&conf.cni_version.as_str()) {
        return Err(err(code::INCOMPATIBLE_VERSION, format!("incompatible CNI version {}", conf.cni_version), format!("podbox-cni supports {}", SUPPORTED.join(", "))));
    }
    if matches!(e.command.as_str(), "STATUS" | "GC") && !super::exec::version_at_least(&conf.cni_version, "1.1.0") {
        return Err(err(code::INCOMPATIBLE_VERSION, format!("{} needs cniVersion 1.1.0, the config says {}", e.command, conf.cni_version), ""));
    }
    if !super::valid_name(&conf.name) {
        return Err(err(code::INVALID_CONFIG, format!("invalid network name {:?}", conf.name), "letters, digits, '_', '.' and '-' only"));
    }
    let net = resolve(&conf)?;
    match e.command.as_str() {
        "ADD" => add(&net, &e).map(Some),
        "DEL" => del(&net, &e).map(|_| None),
        "CHECK" => check(&net, &e, conf.prev_result.as_ref()).map(|_| None),
        "STATUS" => status(&net).map(|_| None),
        "GC" => gc(&net, &conf.valid_attachments).map(|_| None),
        _ => unreachable!("checked in env()"),
    }
}

fn add(net: &Net, e: &Env) -> Result<Value, PluginError> {
    let store = Store::open(&net.data_dir, &net.name)?;
    if let Some(ip) = store.find(&e.container_id, &e.ifname)? {
        return Err(err(
            code::ALREADY_ATTACHED,
            format!("container {} interface {} is already attached to {} with {ip}", e.container_id, e.ifname, net.name),
            "a runtime must DEL before it ADDs the same container and interface again",
        ));
    }
    nft::check_ports_free(&e.container_id, &net.ports)?;
    let veth = host_veth(&e.container_id, &e.ifname);
    let v = veth.clone();
    if netlink::run(|h| async move { netlink::link_by_name(&h, &v).await })?.is_some() {
        return Err(err(code::SETUP_FAILED, format!("link {veth} already exists"), "a leftover of this container (DEL it) or a hash collision"));
    }
    let mut undo = Vec::new();
    let res = add_steps(net, e, &store, &veth, &mut undo);
    if res.is_err() {
        // Best effort: the error that caused the rollback is the one worth reporting.
        for u in undo.into_iter().rev() {
            let _ = match u {
                Undo::Address => store.release(&e.container_id, &e.ifname).map(|_| ()).map_err(NetError::from),
                Undo::Veth => {
                    let v = veth.clone();
                    netlink::run(|h| async move { netlink::delete_link(&h, &v).await })
                }
                Undo::Nat => nft::remove_pod(&e.container_id),
            };
        }
    }
    res
}

/// What to undo if a later step of ADD fails, in reverse order.
enum Undo {
    Address,
    Veth,
    Nat,
}

fn add_steps(net: &Net, e: &Env, store: &Store, veth: &str, undo: &mut Vec<Undo>) -> Result<Value, PluginError> {
    let pod_ns = netlink::open_netns(Path::new(&e.netns)).map_err(|x| err(code::INVALID_ENV, format!("CNI_NETNS {}: cannot open it", e.netns), x.to_string()))?;
    let (bridge, mtu, gw, prefix, is_gw) = (net.bridge.clone(), net.mtu, net.range.gateway, net.subnet.prefix_len(), net.is_gateway);
    let bridge_idx = netlink::run(|h| async move {
        if is_gw { netlink::ensure_bridge(&h, &bridge, mtu, gw, prefix, None).await } else { netlink::ensure_bridge_link(&h, &bridge, mtu).await }
    })?;
    if net.is_gateway {
        crate::network::node_sysctls(&net.nat_config())?;
    }
    undo.push(Undo::Address);
    let ip = store.allocate(net.range, &e.container_id, &e.ifname)?;
    undo.push(Undo::Veth);
    let (v, peer, hairpin) = (veth.to_string(), e.ifname.clone(), net.hairpin);
    // The same address-derived MAC as podbox's own pods: known before the veth exists, so the
    // anti-spoofing elements can name it.
    let mac_addr = crate::network::pod_mac(ip);
    let host_idx = netlink::run(|h| async move {
        let idx = netlink::create_veth_peer(&h, &v, &peer, bridge_idx, mtu, &pod_ns, Some(mac_addr)).await?;
        netlink::setup_port(&h, &v, idx, hairpin).await?;
        Ok(idx)
    })?;
    let (ifn, routes) = (e.ifname.clone(), net.routes.clone());
    let mac = netlink::in_netns(Path::new(&e.netns), move |h| async move { netlink::configure_iface(&h, &ifn, ip, prefix, &routes).await })?;
    undo.push(Undo::Nat);
    if net.ip_masq || !net.ports.is_empty() {
        let root = net.state_root();
        std::fs::create_dir_all(root.join("network")).map_err(|x| err(code::IO, format!("creating {}", root.display()), x.to_string()))?;
        let port = nft::PodPort { ifindex: host_idx, mac: mac_addr, ip };
        nft::apply_pod(&root, &net.nat_config(), &e.container_id, &port, &net.ports)?;
    }
    let (v, b) = (veth.to_string(), net.bridge.clone());
    let (host_mac, bridge_mac) = netlink::run(|h| async move {
        netlink::wait_oper_up(&h, &v, Duration::from_secs(2)).await?;
        let m = |l: Option<rtnetlink::packet_route::link::LinkMessage>| l.map(|l| netlink::mac(&l)).unwrap_or_default();
        Ok((m(netlink::link_by_name(&h, &v).await?), m(netlink::link_by_name(&h, &b).await?)))
    })?;
    let mut ipc = json!({ "address": format!("{ip}/{prefix}"), "gateway": net.range.gateway.to_string(), "interface": 2 });
    if !super::exec::version_at_least(&net.version, "1.0.0") {
        ipc["version"] = json!("4");
    }
    Ok(json!({
        "cniVersion": net.version,
        "interfaces": [
            { "name": net.bridge, "mac": bridge_mac },
            { "name": veth, "mac": host_mac },
            { "name": e.ifname, "mac": mac, "sandbox": e.netns },
        ],
        "ips": [ipc],
        "routes": net.routes.iter().map(|(d, g)| json!({ "dst": d.to_string(), "gw": g.to_string() })).collect::<Vec<_>>(),
        "dns": {},
    }))
}

/// Undo ADD from the container ID and interface alone; whatever is gone counts as done.
fn del(net: &Net, e: &Env) -> Result<(), PluginError> {
    let store = Store::open(&net.data_dir, &net.name)?;
    let veth = host_veth(&e.container_id, &e.ifname);
    let link = netlink::run(|h| async move { netlink::delete_link(&h, &veth).await });
    let ports = if net.port_capable { nft::remove_pod(&e.container_id) } else { Ok(()) };
    if net.ip_masq || net.port_capable {
        // Its anti-spoofing elements match nothing once the veth is gone; pruned in batches.
        nft::mark_stale(&net.state_root(), &e.container_id);
    }
    let addr = store.release(&e.container_id, &e.ifname).map(|_| ()).map_err(NetError::from);
    link.and(ports).and(addr)?;
    Ok(())
}

/// Is the attachment still as ADD (its `prevResult`) left it? Address held, veth on the bridge
/// and up, the address on the container's interface.
fn check(net: &Net, e: &Env, prev: Option<&Value>) -> Result<(), PluginError> {
    let prev = prev.ok_or_else(|| err(code::INVALID_CONFIG, "CHECK needs prevResult", ""))?;
    let want = super::attachment(prev, &e.ifname).map_err(|x| err(code::INVALID_CONFIG, "prevResult has no address for the interface", x.to_string()))?;
    let fail = |m: String| err(code::CHECK_FAILED, m, "");
    let store = Store::open(&net.data_dir, &net.name)?;
    match store.find(&e.container_id, &e.ifname)? {
        Some(ip) if ip == want.ip => {}
        Some(ip) => return Err(fail(format!("the store holds {ip}, the result says {}", want.ip))),
        None => return Err(fail(format!("no address held for {} {}", e.container_id, e.ifname))),
    }
    let (veth, bridge) = (host_veth(&e.container_id, &e.ifname), net.bridge.clone());
    let v = veth.clone();
    let on_bridge = netlink::run(|h| async move {
        let (Some(l), Some(b)) = (netlink::link_by_name(&h, &v).await?, netlink::link_by_name(&h, &bridge).await?) else { return Ok(false) };
        Ok(netlink::controller(&l) == Some(b.header.index) && netlink::oper_up(&l))
    })?;
    if !on_bridge {
        return Err(fail(format!("veth {veth} is missing, down or not a port of {}", net.bridge)));
    }
    let ifn = e.ifname.clone();
    let addrs = netlink::in_netns(Path::new(&e.netns), move |h| async move {
        match netlink::link_by_name(&h, &ifn).await? {
            Some(l) => netlink::addresses(&h, l.header.index).await,
            None => Ok(vec![]),
        }
    })?;
    if !addrs.contains(&(want.ip, want.prefix_len)) {
        return Err(fail(format!("{} in the container does not hold {}/{}", e.ifname, want.ip, want.prefix_len)));
    }
    Ok(())
}

/// Ready when the address store is writable and nftables can be run.
fn status(net: &Net) -> Result<(), PluginError> {
    Store::open(&net.data_dir, &net.name).map_err(|x| err(code::NOT_AVAILABLE, "the address store is not usable", x.to_string()))?;
    nft::host_ports().map_err(|x| err(code::NOT_AVAILABLE, "nftables is not usable", x.to_string()))?;
    Ok(())
}

/// Free every attachment of this network not in `valid`: address, veth, host ports.
fn gc(net: &Net, valid: &[ValidAttachment]) -> Result<(), PluginError> {
    let store = Store::open(&net.data_dir, &net.name)?;
    let is_valid = |id: &str, ifn: &str| valid.iter().any(|v| v.container_id == id && (v.ifname == ifn || ifn.is_empty()));
    let mut first: Option<PluginError> = None;
    for h in store.all()?.into_iter().filter(|h| !is_valid(&h.container_id, &h.ifname)) {
        let veth = host_veth(&h.container_id, &h.ifname);
        let res = netlink::run(|x| async move { netlink::delete_link(&x, &veth).await })
            .and_then(|_| store.release(&h.container_id, &h.ifname).map(|_| ()).map_err(NetError::from));
        if let Err(x) = res {
            first.get_or_insert(x.into());
        }
    }
    let live: Vec<String> = valid.iter().map(|v| v.container_id.clone()).collect();
    if let Err(x) = nft::gc(&net.state_root(), &live) {
        first.get_or_insert(x.into());
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: Value) -> Conf {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn resolves_like_the_reference_bridge() {
        let c = conf(json!({"cniVersion":"1.0.0","name":"n","type":"podbox-cni","bridge":"br9","isGateway":true,"ipMasq":true,
            "ipam":{"type":"host-local","ranges":[[{"subnet":"10.88.0.0/16","rangeStart":"10.88.0.10","rangeEnd":"10.88.0.20"}]],"routes":[{"dst":"0.0.0.0/0"}],"dataDir":"/tmp/x"},
            "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}));
        let n = resolve(&c).unwrap();
        assert_eq!((n.subnet.to_string(), n.range.gateway.to_string(), n.range.start.to_string()), ("10.88.0.0/16".into(), "10.88.0.1".into(), "10.88.0.10".into()));
        assert_eq!(n.routes, [(Ipv4Net::default(), Ipv4Addr::new(10, 88, 0, 1))]);
        assert_eq!(n.ports.len(), 1);
        let legacy = resolve(&conf(json!({"cniVersion":"0.4.0","name":"n","subnet":"10.1.0.0/24","isDefaultGateway":true}))).unwrap();
        assert_eq!(legacy.routes.len(), 1);
        let bad = resolve(&conf(json!({"cniVersion":"1.0.0","name":"n","ipam":{"type":"dhcp"}}))).unwrap_err();
        assert_eq!(bad.code, code::UNSUPPORTED_FIELD);
        let v6 = resolve(&conf(json!({"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local","ranges":[[{"subnet":"fd00::/64"}]]}}))).unwrap_err();
        assert_eq!(v6.code, code::INVALID_CONFIG);
    }

    #[test]
    fn veth_names_are_stable_and_fit() {
        let a = host_veth("abc", "eth0");
        assert_eq!(a, host_veth("abc", "eth0"));
        assert_ne!(a, host_veth("abc", "eth1"));
        assert_eq!(a.len(), 15);
    }
}
