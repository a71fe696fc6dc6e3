//! The plugin's network configuration as the runtime passes it on stdin (the reference `bridge`
//! plugin's keys, `ipam` host-local ranges, routes, runtime capabilities), resolved into a `Net`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::Value;
use crate::network::cni::hostlocal::Range;
use crate::network::{NetConfig, PortMapping, Protocol};

use super::*;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Conf {
    pub(super) cni_version: String,
    pub(super) name: String,
    #[serde(default = "default_bridge")]
    pub(super) bridge: String,
    #[serde(default)]
    pub(super) is_gateway: bool,
    #[serde(default)]
    pub(super) is_default_gateway: bool,
    #[serde(default)]
    pub(super) ip_masq: bool,
    pub(super) mtu: Option<u32>,
    #[serde(default)]
    pub(super) hairpin_mode: bool,
    pub(super) subnet: Option<String>,
    pub(super) gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub(super) ipam: Ipam,
    #[serde(default)]
    pub(super) runtime_config: RuntimeConfig,
    /// The runtime capabilities this config declares (`portMappings`).
    #[serde(default)]
    pub(super) capabilities: std::collections::HashMap<String, bool>,
    pub(super) prev_result: Option<Value>,
    /// GC: the attachments to keep.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub(super) valid_attachments: Vec<ValidAttachment>,
}

pub(super) fn default_bridge() -> String {
    "cni0".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ipam {
    #[serde(rename = "type")]
    pub(super) ty: Option<String>,
    #[serde(default)]
    pub(super) ranges: Vec<Vec<RangeConf>>,
    pub(super) subnet: Option<String>,
    pub(super) range_start: Option<Ipv4Addr>,
    pub(super) range_end: Option<Ipv4Addr>,
    pub(super) gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub(super) routes: Vec<RouteConf>,
    pub(super) data_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RangeConf {
    pub(super) subnet: String,
    pub(super) range_start: Option<Ipv4Addr>,
    pub(super) range_end: Option<Ipv4Addr>,
    pub(super) gateway: Option<Ipv4Addr>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RouteConf {
    pub(super) dst: String,
    pub(super) gw: Option<Ipv4Addr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RuntimeConfig {
    #[serde(default)]
    pub(super) port_mappings: Vec<PortMappingConf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PortMappingConf {
    pub(super) host_port: u16,
    pub(super) container_port: u16,
    #[serde(default)]
    pub(super) protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub(super) container_id: String,
    pub(super) ifname: String,
}

/// The network a config describes, resolved and checked.
#[derive(Debug)]
pub(super) struct Net {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) bridge: String,
    pub(super) subnet: Ipv4Net,
    pub(super) range: Range,
    pub(super) is_gateway: bool,
    pub(super) ip_masq: bool,
    pub(super) mtu: u32,
    pub(super) hairpin: bool,
    pub(super) routes: Vec<(Ipv4Net, Ipv4Addr)>,
    pub(super) data_dir: PathBuf,
    pub(super) ports: Vec<PortMapping>,
    /// Whether the config declares `portMappings`: without it no runtime passes host ports, so
    /// DEL has no NAT elements to look for (an `nft` run spared).
    pub(super) port_capable: bool,
}

pub(super) fn parse_v4net(s: &str, what: &str) -> Result<Ipv4Net, PluginError> {
    s.parse::<Ipv4Net>().map_err(|_| err(code::INVALID_CONFIG, format!("{what} {s:?} is not an IPv4 CIDR"), "podbox-cni handles IPv4 only"))
}

/// The runtime's `portMappings` capability arguments.
fn port_mappings(mappings: &[PortMappingConf]) -> Result<Vec<PortMapping>, PluginError> {
    let mut ports = Vec::new();
    for p in mappings {
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
    Ok(ports)
}

pub(super) fn resolve(c: &Conf) -> Result<Net, PluginError> {
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
    let ports = port_mappings(&c.runtime_config.port_mappings)?;
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
    pub(super) fn nat_config(&self) -> NetConfig {
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

    pub(super) fn state_root(&self) -> PathBuf {
        let base = std::env::var_os("PODBOX_CNI_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| STATE_DIR.into());
        base.join(&self.name)
    }
}
