//! The kernel settings the node's and the pods' networks need (forwarding on the bridge, the pod
//! namespace's own), written once per node and stamped.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;

/// Per-namespace sysctls of the node: forwarding (pods reach beyond the bridge only if the node
/// routes); route_localnet on the bridge, so that a host port works from the node's 127.0.0.1 too
/// (the DNAT'ed packet leaves, and its reply comes back, through the bridge with a loopback
/// address) — which would also let pods reach the node's loopback services, were it not for the
/// nft rule that drops anything addressed to 127.0.0.0/8 arriving elsewhere than on `lo` (nft.rs);
/// and no router advertisements taken from the bridge, where any pod can send one.
///
/// Performance: a path lookup under /proc/sys compares the name with the same-named entry of
/// every network namespace that looked it up (proc_sys_compare), so each read here cost O(pods)
/// (a profile at 1,000 pods: 12 % of a create). Written once per node and bridge: a stamp
/// (`network/sysctl.applied` under `root`, podbox's state root or podbox-cni's state directory
/// of the network: the node's netns inode, the bridge's name and index) says they are set; a new
/// bridge (new index) or another node namespace writes them again.
pub(crate) fn node_sysctls_once(root: &Path, cfg: &NetConfig, bridge_idx: u32) -> Result<(), NetError> {
    let stamp_path = config::net_dir(root).join("sysctl.applied");
    let stamp = std::fs::metadata("/proc/self/ns/net").ok().map(|m| format!("{} {} {bridge_idx}", m.ino(), cfg.bridge));
    if stamp.is_some() && std::fs::read_to_string(&stamp_path).ok() == stamp {
        return Ok(());
    }
    node_sysctls(cfg)?;
    if let Some(stamp) = stamp {
        // Best effort: without the stamp the next pod checks the values again. podbox-cni's
        // directory is made by the first ADD that needs it.
        let write = || crate::state::write_atomic(&stamp_path, stamp.as_bytes());
        if write().is_err() && std::fs::create_dir_all(config::net_dir(root)).is_ok() {
            let _ = write();
        }
    }
    Ok(())
}

/// The node settings themselves (see `node_sysctls_once`). A value already right is only read.
fn node_sysctls(cfg: &NetConfig) -> Result<(), NetError> {
    let mut settings = vec![
        ("/proc/sys/net/ipv4/ip_forward".to_string(), "1"),
        (format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge), "1"),
    ];
    // A kernel without IPv6 (or booted with ipv6.disable=1) has no such file and no RA to refuse;
    // asked of socket(2), not of a /proc/sys lookup (above).
    if netlink::ipv6_enabled() {
        settings.push((format!("/proc/sys/net/ipv6/conf/{}/accept_ra", cfg.bridge), "0"));
    }
    write_sysctls(&settings)
}

// No sysctl is written in a pod's own namespace. Router advertisements reach a pod only over the
// bridge, whose `table bridge podbox` drops every one that enters from a pod's port (nft.rs), and
// the node's own end, the bridge, has accept_ra=0 (above); a pod's eth0 has no IPv6 address
// (`netlink::configure_pod`). podbox used to also set accept_ra=0 on the pod's all/default/eth0:
// each such write looks up the pod namespace's /proc/sys/net/ipv6, and that lookup compares the
// name with the `ipv6` entry of every network namespace the node has had, live or not yet
// reclaimed (proc_sys_compare): ~1 ms a pod at 1,000 pods and growing run after run (perf:
// 7.5 % of a create's CPU), the largest per-pod cost left that grew with the node (issue 19).

pub(super) fn write_sysctls(settings: &[(String, &str)]) -> Result<(), NetError> {
    for (path, val) in settings {
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == *val) {
            continue;
        }
        std::fs::write(path, val).map_err(|e| config::io_err(Path::new(path), e))?;
    }
    Ok(())
}
