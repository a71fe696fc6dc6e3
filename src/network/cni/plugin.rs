//! `podbox-cni`: podbox's bridge network as a CNI plugin (spec 1.1; results in 0.3.0–1.1.0).
//! Configured like the reference `bridge` plugin (`bridge`, `isGateway`, `isDefaultGateway`,
//! `ipMasq`, `mtu`, `hairpinMode`, `ipam` of type `host-local` with `ranges`/`subnet`, `routes`,
//! `dataDir`; a top-level `subnet`/`gateway` too) plus the `portMappings` capability. It wires
//! with podbox's own netlink functions, keeps addresses in host-local's on-disk layout
//! (`hostlocal`) and does NAT with podbox's nftables table. Errors are the spec's JSON objects.

mod conf;
mod retire;
mod verbs;

use conf::*;
use verbs::*;

use std::io::Read;

use serde_json::{Value, json};

use crate::network::NetError;

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
    // Room for a usual config at once (the default would read it in 32, 64, 128... byte steps).
    let mut stdin = Vec::with_capacity(16 * 1024);
    let _ = std::io::stdin().read_to_end(&mut stdin);
    match run(&stdin) {
        Ok(Some(out)) => {
            println!("{out}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            // The config's version, if it can be read, for the error object (read only now:
            // a call that succeeds parses its config once).
            let version = serde_json::from_slice::<Value>(&stdin).ok().and_then(|v| v["cniVersion"].as_str().map(str::to_string));
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

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::Ipv4Net;
    use std::net::Ipv4Addr;

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
