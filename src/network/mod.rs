//! Network layer: wires a pod's network namespace to the node — bridge, veth pair, IPAM, routes,
//! NAT and host ports — over netlink (rtnetlink) and nftables. Knows nothing of pods beyond an id
//! and a namespace path.
//!
//! Contract with the pod layer:
//! - `setup` is called once per pod, after its namespaces are pinned and before the pause starts;
//!   on error it has already rolled back everything it created.
//! - `teardown` is keyed by the pod id alone (deterministic veth name, IPAM files that record the
//!   id, NAT rules tagged with the id) so that it also works after a crash left no record; it is
//!   idempotent: whatever is already gone counts as done.
//! - `gc` frees everything whose pod id is not in `live`.

pub mod loopback;

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network setup for pod {pod}: {msg}")]
    Setup { pod: String, msg: String },
    #[error("{0}")]
    Config(String),
    #[error("I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
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

/// Attach the network namespace pinned at `netns` to the node bridge (stub: not yet implemented).
pub fn setup(_root: &Path, pod_id: &str, _netns: &Path, _ports: &[PortMapping]) -> Result<Attachment, NetError> {
    Err(NetError::Setup { pod: pod_id.into(), msg: "pod networking is not implemented yet; use --network none".into() })
}

/// Undo `setup` for `pod_id`; idempotent.
pub fn teardown(_root: &Path, _pod_id: &str) -> Result<(), NetError> {
    Ok(())
}

/// Free addresses, veths and rules of pods not in `live`.
pub fn gc(_root: &Path, _live: &[String]) -> Result<(), NetError> {
    Ok(())
}
