//! The node ports pods hold, read back from the nft sets: what `network status` lists and what a
//! new pod's ports are checked against.

use std::net::Ipv4Addr;
use std::process::Command;
use crate::network::{NetError, PortMapping, Protocol};

use super::*;

/// A host-port element as found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: Protocol,
    pub host_port: u16,
    pub ip: Ipv4Addr,
    pub container_port: u16,
    pub pod_id: String,
}

/// The host ports currently mapped; none if our table does not exist yet.
pub fn host_ports() -> Result<Vec<HostPort>, NetError> {
    let out = Command::new("nft")
        .args(["-j", "list", "map"])
        .args(TABLE.split(' '))
        .arg("hostports")
        .output()
        .map_err(|e| NetError::Nft(format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(Vec::new());
        }
        return Err(NetError::Nft(err.trim().to_string()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| NetError::Nft(format!("parsing `nft -j list map`: {e}")))?;
    let mut found = Vec::new();
    let maps = v["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get("map"));
    for elem in maps.flat_map(|m| m["elem"].as_array().cloned().unwrap_or_default()) {
        // [{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "ID"}}, {"concat": ["10.244.0.5", 80]}]
        let parsed = (|| {
            let key = &elem[0]["elem"];
            let protocol = match key["val"]["concat"][0].as_str()? {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => return None,
            };
            Some(HostPort {
                protocol,
                host_port: key["val"]["concat"][1].as_u64()? as u16,
                ip: elem[1]["concat"][0].as_str()?.parse().ok()?,
                container_port: elem[1]["concat"][1].as_u64()? as u16,
                pod_id: key["comment"].as_str().unwrap_or_default().to_string(),
            })
        })();
        found.extend(parsed);
    }
    Ok(found)
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} -> {}:{} (pod {})", self.host_port, proto(self.protocol), self.ip, self.container_port, self.pod_id)
    }
}

/// Refuse host ports another pod already holds, before anything is changed. (The atomic
/// `create element` at the end of setup still catches a racing pod.)
pub fn check_ports_free(pod_id: &str, ports: &[PortMapping]) -> Result<(), NetError> {
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].iter().any(|q| q.host_port == p.host_port && q.protocol == p.protocol) {
            return Err(NetError::PortTaken { port: p.host_port, proto: proto(p.protocol), owner: pod_id.into() });
        }
    }
    if ports.is_empty() {
        return Ok(());
    }
    let taken = host_ports()?;
    for p in ports {
        if let Some(h) = taken.iter().find(|h| h.host_port == p.host_port && h.protocol == p.protocol) {
            return Err(NetError::PortTaken { port: p.host_port, proto: proto(p.protocol), owner: h.pod_id.clone() });
        }
    }
    Ok(())
}
