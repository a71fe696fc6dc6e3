//! Network layer: wires a pod's network namespace to the node — bridge, veth pair, IPAM, routes,
//! NAT and host ports — over netlink (rtnetlink) and nftables. Knows nothing of pods beyond an id
//! and a namespace path.
//!
//! Contract with the pod layer:
//! - `setup` is called once per pod, after its namespaces are pinned and its pause has started
//!   (pod/lifecycle.rs); on error it has already rolled back everything it created.
//! - `teardown` is keyed by the pod id alone (deterministic veth name, IPAM files that record the
//!   id, NAT rules tagged with the id) so that it also works after a crash left no record; it is
//!   idempotent: whatever is already gone counts as done.
//! - `gc` frees everything whose pod id is not in `live`.
//! - One state root owns a node's network (the bridge, its subnet, the nft tables belong to the
//!   network namespace, not to a root): the owner is recorded as the bridge's alias, a second
//!   root is refused (`Owner`), and `gc` of a root that does not own the bridge leaves it alone.
//!
//! What a pod may do on the wire: send from its own IPv4 and MAC address only (nft bridge table,
//! see nft.rs); nothing addressed to 127.0.0.0/8 reaches the node from outside `lo`; router
//! advertisements are neither accepted (accept_ra=0 on the bridge and in the pod) nor forwarded.
//! - On a node whose config names CNI (`NetConfig::cni`), all three go to the CNI plugins
//!   (`cni`): ADD, DEL from the result cache, GC.

pub mod cni;
pub mod config;
pub mod ipam;
pub mod loopback;
mod netlink;
mod nfset;
pub mod nft;
pub mod view;

mod owner;
mod setup;
mod status;
mod sysctls;
mod teardown;

use owner::*;
pub use owner::{Owner, check_owner};
use setup::*;
pub use setup::{detach_before_unpin, setup, setup_fresh_id, setup_pod};
pub use status::{NetStatus, PeerRoute, PortStatus, peer_route, status};
pub(crate) use sysctls::node_sysctls_once;
pub use teardown::{TeardownHints, gc, reconfigure, teardown, teardown_with};

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use config::NetConfig;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network setup for pod {pod}: {msg}")]
    Setup { pod: String, msg: String },
    /// A setup step failed; everything done before it was rolled back.
    /// (`cause` rather than `source`: the message already includes it, so chains print it once.)
    #[error("network setup for pod {pod} failed at {step} (rolled back): {cause}")]
    Step { pod: String, step: &'static str, cause: Box<NetError> },
    #[error("{0}")]
    Config(String),
    #[error("I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("no free address in {subnet}")]
    Exhausted { subnet: ipnet::Ipv4Net },
    #[error("host port {port}/{proto} is already used by pod {owner}")]
    PortTaken { port: u16, proto: &'static str, owner: String },
    #[error("{0}")]
    Conflict(String),
    #[error("netlink: {what}: {msg}")]
    Netlink { what: String, msg: String },
    #[error("nftables: {0}")]
    Nft(String),
    #[error(transparent)]
    Cni(#[from] cni::CniError),
    #[error(
        "bridge {bridge} in this network namespace belongs to podbox state root {owner}: one root owns a node's network \
         (two would hand out the same addresses on it, and rewrite each other's NAT table). Use `--root {owner}`, or this root in \
         another network namespace; once that root has no pods, `ip link set {bridge} alias ''` releases the bridge"
    )]
    OwnedByOtherRoot { bridge: String, owner: String },
}

/// A pod's eth0 MAC address, derived from its IPv4 address: locally administered unicast
/// 0a:58 followed by the address bytes. Known before the veth exists (the anti-spoofing elements
/// need it), and stable for an address, so neighbours' ARP caches stay right when it is reused.
pub fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A node port forwarded to a pod port (`-p HOST:CONTAINER/PROTO`, a manifest's hostPort).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// `HOST:CONTAINER[/tcp|udp]`, ports 1-65535, TCP when no protocol is named: the one parser
/// of `-p` (pod create, network check) and a manifest's ports.
impl std::str::FromStr for PortMapping {
    type Err = String;

    fn from_str(s: &str) -> Result<PortMapping, String> {
        let (ports, protocol) = match s.split_once('/') {
            None => (s, Protocol::Tcp),
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some((_, other)) => return Err(format!("unknown protocol {other:?} (tcp or udp)")),
        };
        let (h, c) = ports.split_once(':').ok_or("expected HOST:CONTAINER[/tcp|udp]")?;
        let num = |x: &str| x.parse::<u16>().ok().filter(|&n| n != 0).ok_or_else(|| format!("{x:?} is not a port (1-65535)"));
        Ok(PortMapping { host_port: num(h)?, container_port: num(c)?, protocol })
    }
}

/// What `setup` gave a pod; stored in the pod record and shown by `pod inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub host_veth: String,
    pub bridge: String,
}

/// The node-side veth name of a pod: derived from the id alone, so teardown needs no record.
/// 4 + 11 = 15 chars, the kernel's limit; 44 bits of the id make collisions negligible.
pub fn host_veth_name(pod_id: &str) -> String {
    format!("veth{}", &pod_id[..11])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_bridge_alias_decides_who_may_use_the_bridge() {
        let me = Owner::of(Path::new("/nonexistent/podbox-me")).unwrap();
        assert_eq!(me.alias(), "podbox root /nonexistent/podbox-me");
        assert!(me.check("cbr0", None).is_ok());
        assert!(me.check("cbr0", Some("podbox root /nonexistent/podbox-me")).is_ok());
        // Another root that exists owns it; one that is gone has given it up.
        let other = std::env::temp_dir();
        let err = me.check("cbr0", Some(&format!("podbox root {}", other.display()))).unwrap_err();
        assert!(matches!(&err, NetError::OwnedByOtherRoot { owner, .. } if Path::new(owner) == other), "{err}");
        assert!(me.check("cbr0", Some("podbox root /nonexistent/gone")).is_ok());
        assert!(matches!(me.check("cbr0", Some("uplink to the lab")), Err(NetError::Conflict(_))));
        assert!(Owner::of(&Path::new("/").join("x".repeat(300))).is_err());
    }

    #[test]
    fn pod_mac_is_locally_administered_unicast_from_the_address() {
        let m = pod_mac(Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(m, [0x0a, 0x58, 10, 244, 0, 2]);
        assert_eq!(m[0] & 0b11, 0b10, "locally administered, not multicast");
    }
}
