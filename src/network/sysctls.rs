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
/// (`network/sysctl.applied`: the node's netns inode, the bridge's name and index) says they are
/// set; a new bridge (new index) or another node namespace writes them again.
pub(super) fn node_sysctls_once(root: &Path, cfg: &NetConfig, bridge_idx: u32) -> Result<(), NetError> {
    let stamp_path = config::net_dir(root).join("sysctl.applied");
    let stamp = std::fs::metadata("/proc/self/ns/net").ok().map(|m| format!("{} {} {bridge_idx}", m.ino(), cfg.bridge));
    if stamp.is_some() && std::fs::read_to_string(&stamp_path).ok() == stamp {
        return Ok(());
    }
    node_sysctls(cfg)?;
    if let Some(stamp) = stamp {
        // Best effort: without the stamp the next pod checks the values again.
        let _ = crate::state::write_atomic(&stamp_path, stamp.as_bytes());
    }
    Ok(())
}

/// The node settings themselves (see `node_sysctls_once`); podbox-cni, which keeps no node
/// stamp, calls this directly. A value already right is only read.
pub(crate) fn node_sysctls(cfg: &NetConfig) -> Result<(), NetError> {
    let mut settings = vec![
        ("/proc/sys/net/ipv4/ip_forward".to_string(), "1"),
        (format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge), "1"),
    ];
    // A kernel without IPv6 (or booted with ipv6.disable=1) has no such file and no RA to refuse.
    if Path::new("/proc/sys/net/ipv6").exists() {
        settings.push((format!("/proc/sys/net/ipv6/conf/{}/accept_ra", cfg.bridge), "0"));
    }
    write_sysctls(&settings)
}

/// The pod's own network namespace (the calling thread must be in it): no router advertisements,
/// from anyone. Pods get IPv4 from podbox and no IPv6 address (`netlink::configure_pod`), but
/// SLAAC would still make one from a router advertisement that reached the pod (the bridge drops
/// those pods send, nft.rs; this is the pod's own guard).
///
/// Performance: looking up the pod namespace's `/proc/sys/net/ipv6` compares the name with the
/// `ipv6` entry of every network namespace (proc_sys_compare, O(pods): ~10 % of a create's CPU
/// at 1,000 pods, `perf`), so the `conf` directory is looked up once and the three files are
/// opened relative to it. The namespace is new: the values are written without being read first.
pub(super) fn pod_sysctls() -> Result<(), NetError> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    const CONF: &str = "/proc/sys/net/ipv6/conf";
    let conf = match open(CONF, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        // A kernel without IPv6 (or booted with ipv6.disable=1) has no RA to refuse.
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(config::io_err(Path::new(CONF), e.into())),
    };
    for iface in ["all", "default", "eth0"] {
        let rel = format!("{iface}/accept_ra");
        let io = |e: std::io::Error| config::io_err(&Path::new(CONF).join(&rel), e);
        let fd = openat(&conf, rel.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| io(e.into()))?;
        std::io::Write::write_all(&mut std::fs::File::from(fd), b"0").map_err(io)?;
    }
    Ok(())
}

pub(super) fn write_sysctls(settings: &[(String, &str)]) -> Result<(), NetError> {
    for (path, val) in settings {
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == *val) {
            continue;
        }
        std::fs::write(path, val).map_err(|e| config::io_err(Path::new(path), e))?;
    }
    Ok(())
}
