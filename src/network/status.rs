//! What `network status` reports: the bridge, the pods' addresses and ports, the route a peer
//! node needs to reach this node's pods.

use std::net::Ipv4Addr;
use std::path::Path;
use serde::Serialize;

use super::*;

/// The route other nodes (or the router) need to reach this node's pods: "subnet via address".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRoute {
    pub subnet: ipnet::Ipv4Net,
    pub via: Ipv4Addr,
    /// The node interface that address is on.
    pub dev: String,
}

impl std::fmt::Display for PeerRoute {
    /// In `ip route add` syntax, so the line can be pasted on the router.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.subnet, self.via)
    }
}

/// This node's pod subnet and the node address peers should send it to: the first IPv4 address
/// of `via_dev`, or of the interface of the default route — the node's address on the network
/// the other nodes share (F7's "pod slice X via node Y's eth0"). Read from the kernel.
pub fn peer_route(root: &Path, via_dev: Option<&str>) -> Result<PeerRoute, NetError> {
    let cfg = NetConfig::load(root)?;
    let via_dev = via_dev.map(str::to_string);
    let (dev, via) = netlink::run(|h| async move {
        let all = netlink::links(&h).await?;
        let link = match &via_dev {
            Some(d) => all.iter().find(|l| &netlink::name(l) == d).ok_or_else(|| NetError::Config(format!("no interface {d} on this node")))?,
            None => {
                let routes = netlink::routes(&h).await?;
                let oif = routes.iter().find(|r| r.dst.prefix_len() == 0).and_then(|r| r.oif).ok_or_else(|| {
                    NetError::Config("this node has no default route; name the interface peers reach it on with --via-dev".into())
                })?;
                all.iter().find(|l| l.header.index == oif).ok_or_else(|| NetError::Config(format!("default route via unknown link {oif}")))?
            }
        };
        let name = netlink::name(link);
        let addrs = netlink::addresses(&h, link.header.index).await?;
        let (ip, _) = addrs.first().ok_or_else(|| NetError::Config(format!("interface {name} has no IPv4 address")))?;
        Ok((name, *ip))
    })?;
    Ok(PeerRoute { subnet: cfg.subnet, via, dev })
}

/// One pod's port on the bridge, as seen by `status`.
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    pub host_veth: String,
    pub oper_up: bool,
    pub pod_id: Option<String>,
    pub ip: Option<Ipv4Addr>,
}

/// The live state of the node network, read from the kernel and IPAM.
#[derive(Debug, Clone, Serialize)]
pub struct NetStatus {
    pub config: NetConfig,
    pub bridge_present: bool,
    pub bridge_addresses: Vec<String>,
    pub ports: Vec<PortStatus>,
    pub allocations: Vec<(Ipv4Addr, String)>,
    pub host_ports: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni: Option<cni::CniStatus>,
}

pub fn status(root: &Path) -> Result<NetStatus, NetError> {
    let cfg = NetConfig::load(root)?;
    if let Some(c) = &cfg.cni {
        let st = cni::status(root, c)?;
        let allocations = st.attachments.iter().filter_map(|(id, ip, _)| Some((ip.parse().ok()?, id.clone()))).collect();
        return Ok(NetStatus { config: cfg.clone(), bridge_present: false, bridge_addresses: vec![], ports: vec![], allocations, host_ports: vec![], cni: Some(st) });
    }
    let allocs = ipam::allocations(root)?;
    let bridge = cfg.bridge.clone();
    let (bridge_present, bridge_addresses, veths) = netlink::run(|h| async move {
        let all = netlink::links(&h).await?;
        let Some(br) = all.iter().find(|l| netlink::name(l) == bridge) else { return Ok((false, vec![], vec![])) };
        let idx = br.header.index;
        let addrs = netlink::addresses(&h, idx).await?.iter().map(|(ip, p)| format!("{ip}/{p}")).collect();
        let ports = all.iter().filter(|l| netlink::controller(l) == Some(idx)).map(|l| (netlink::name(l), netlink::oper_up(l))).collect::<Vec<_>>();
        Ok((true, addrs, ports))
    })?;
    let ports = veths
        .into_iter()
        .map(|(name, up)| {
            let a = allocs.iter().find(|a| a.pod_id.len() == 32 && host_veth_name(&a.pod_id) == name);
            PortStatus { host_veth: name, oper_up: up, pod_id: a.map(|a| a.pod_id.clone()), ip: a.map(|a| a.ip) }
        })
        .collect();
    let host_ports = nft::host_ports()?
        .iter()
        .map(|h| h.to_string())
        .collect();
    Ok(NetStatus {
        config: cfg,
        bridge_present,
        bridge_addresses,
        ports,
        allocations: allocs.into_iter().map(|a| (a.ip, a.pod_id)).collect(),
        host_ports,
        cni: None,
    })
}
