//! The node's network configuration: which bridge, which pod subnet, gateway, MTU and NAT policy.
//! Stored as JSON in `<root>/network/config.json`; a missing file means the defaults.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::NetError;

/// Default pod subnet. It lies inside 10.0.0.0/8 (the default no-masquerade range), so pod-to-pod
/// traffic is never translated; two nodes left at the default collide on purpose (scenario F6).
pub const DEFAULT_SUBNET: &str = "10.244.0.0/24";
pub const DEFAULT_BRIDGE: &str = "cbr0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    pub hairpin: bool,
    pub masquerade: bool,
    /// Destinations that pod traffic reaches with its own source address (ip-masq-agent style).
    pub no_masquerade_dst: Vec<Ipv4Net>,
    /// Wire pods with CNI plugins instead of the built-in bridge (the fields above then do not
    /// apply); absent: the built-in bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<super::cni::CniSettings>,
}

impl Default for NetConfig {
    fn default() -> Self {
        let subnet: Ipv4Net = DEFAULT_SUBNET.parse().unwrap();
        NetConfig {
            bridge: DEFAULT_BRIDGE.into(),
            gateway: first_host(subnet),
            subnet,
            mtu: 1500,
            hairpin: true,
            masquerade: true,
            no_masquerade_dst: vec!["10.0.0.0/8".parse().unwrap()],
            cni: None,
        }
    }
}

/// `<root>/network`: everything this layer keeps on disk lives below it.
pub fn net_dir(root: &Path) -> PathBuf {
    root.join("network")
}

fn config_path(root: &Path) -> PathBuf {
    net_dir(root).join("config.json")
}

pub fn first_host(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// The `index`-th slice of `/node_prefix` inside `cluster` (10.0.0.0/14, 1, 24 → 10.0.1.0/24).
pub fn node_subnet(cluster: Ipv4Net, index: u32, node_prefix: u8) -> Result<Ipv4Net, NetError> {
    let cluster = cluster.trunc();
    if node_prefix < cluster.prefix_len() || node_prefix > 30 {
        return Err(NetError::Config(format!(
            "node mask /{node_prefix} must be between the cluster prefix /{} and /30",
            cluster.prefix_len()
        )));
    }
    let slices = 1u64 << (node_prefix - cluster.prefix_len());
    if u64::from(index) >= slices {
        return Err(NetError::Config(format!(
            "node index {index} out of range: {cluster} holds {slices} /{node_prefix} slices (0..={})",
            slices - 1
        )));
    }
    let base = u32::from(cluster.network()) as u64 + (u64::from(index) << (32 - node_prefix));
    Ok(Ipv4Net::new(Ipv4Addr::from(base as u32), node_prefix).unwrap())
}

impl NetConfig {
    /// Reject configurations the data path cannot work with, with the reason.
    pub fn validate(&self) -> Result<(), NetError> {
        let err = |m: String| Err(NetError::Config(m));
        if self.bridge.is_empty() || self.bridge.len() > 15 || self.bridge.contains(['/', ' ']) {
            return err(format!("invalid bridge name {:?} (1-15 chars, no '/' or space)", self.bridge));
        }
        if self.subnet != self.subnet.trunc() {
            return err(format!("subnet {} has host bits set; did you mean {}?", self.subnet, self.subnet.trunc()));
        }
        if self.subnet.prefix_len() > 30 {
            return err(format!("subnet {} is too small for pods (need at most /30)", self.subnet));
        }
        let g = self.gateway;
        if !self.subnet.contains(&g) || g == self.subnet.network() || g == self.subnet.broadcast() {
            return err(format!("gateway {g} is not a host address of subnet {}", self.subnet));
        }
        if !(68..=65535).contains(&self.mtu) {
            return err(format!("MTU {} out of range 68..65535", self.mtu));
        }
        Ok(())
    }

    /// The stored config, or the defaults when none was written yet.
    pub fn load(root: &Path) -> Result<NetConfig, NetError> {
        let path = config_path(root);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let cfg: NetConfig = serde_json::from_slice(&bytes)
                    .map_err(|e| NetError::Config(format!("{}: {e}", path.display())))?;
                cfg.validate()?;
                Ok(cfg)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NetConfig::default()),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Write atomically (temp file + rename) so a reader never sees half a config.
    pub fn save(&self, root: &Path) -> Result<(), NetError> {
        self.validate()?;
        let dir = net_dir(root);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let path = config_path(root);
        let tmp = dir.join(format!(".config.json.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(self).expect("config serializes");
        std::fs::write(&tmp, json).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
    }
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> NetError {
    NetError::Io { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_slices() {
        let c: Ipv4Net = "10.0.0.0/14".parse().unwrap();
        assert_eq!(node_subnet(c, 1, 24).unwrap().to_string(), "10.0.1.0/24");
        assert_eq!(node_subnet(c, 2, 24).unwrap().to_string(), "10.0.2.0/24");
        assert_eq!(node_subnet(c, 1023, 24).unwrap().to_string(), "10.3.255.0/24");
        assert!(node_subnet(c, 1024, 24).unwrap_err().to_string().contains("out of range"));
        assert_eq!(node_subnet(c, 3, 26).unwrap().to_string(), "10.0.0.192/26");
        assert!(node_subnet(c, 0, 13).is_err());
    }

    #[test]
    fn defaults_valid_and_roundtrip() {
        let d = NetConfig::default();
        d.validate().unwrap();
        assert_eq!(d.gateway, Ipv4Addr::new(10, 244, 0, 1));
        let dir = std::env::temp_dir().join(format!("podbox-cfg-{}", std::process::id()));
        let mut c = d.clone();
        c.mtu = 1400;
        c.save(&dir).unwrap();
        assert_eq!(NetConfig::load(&dir).unwrap(), c);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_bad_gateway() {
        let mut c = NetConfig { gateway: Ipv4Addr::new(10, 244, 0, 255), ..NetConfig::default() };
        assert!(c.validate().is_err());
        c.gateway = Ipv4Addr::new(10, 245, 0, 1);
        assert!(c.validate().is_err());
    }
}
