//! Detaching pods by id alone (after a crash too), freeing what no live pod holds (`gc`), and
//! moving the node to a new configuration.

use std::net::Ipv4Addr;
use std::path::Path;

use super::*;

/// Apply a config change to the node: take the old gateway address off the old bridge when the
/// bridge, subnet or gateway changed (the caller makes sure no pod holds an address), and rewrite
/// the NAT rules. The next `setup` puts the new address on.
pub fn reconfigure(root: &Path, old: &NetConfig, new: &NetConfig) -> Result<(), NetError> {
    // Another root's bridge and NAT rules are not ours to rewrite.
    check_owner(root, &old.bridge)?;
    if (&old.bridge, old.subnet, old.gateway) != (&new.bridge, new.subnet, new.gateway) {
        let (br, gw, p) = (old.bridge.clone(), old.gateway, old.subnet.prefix_len());
        netlink::run(|h| async move { netlink::remove_address(&h, &br, gw, p).await })?;
    }
    nft::refresh(new)
}

/// Undo `setup` for `pod_id`: delete the host veth (the pod end goes with it), release the
/// address, remove the host ports. Idempotent; whatever is gone already counts as done.
pub fn teardown(root: &Path, pod_id: &str) -> Result<(), NetError> {
    teardown_with(root, pod_id, TeardownHints::default())
}

/// What the caller knows that lets `teardown_with` skip work. The default skips nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct TeardownHints {
    /// The caller has just dropped the last reference to the pod's network namespace: the
    /// kernel deletes the veth pair when it destroys the namespace, so do not delete it here
    /// (a synchronous delete waits ~20 ms for RCU).
    pub veth_goes_with_netns: bool,
    /// The pod never had host ports: skip looking for NAT elements (an `nft` run).
    pub no_host_ports: bool,
    /// The address the pod's record says it holds: released by name, without reading every
    /// allocation (O(pods) per teardown). Should it not be the pod's, all are searched.
    pub address: Option<Ipv4Addr>,
}

/// `teardown`, skipping what `hints` say is not needed.
pub fn teardown_with(root: &Path, pod_id: &str, hints: TeardownHints) -> Result<(), NetError> {
    check_pod_id(pod_id)?;
    // (An unreadable config falls through to the built-in teardown, which needs none.)
    if let Ok(NetConfig { cni: Some(c), .. }) = NetConfig::load(root) {
        return cni::teardown(root, pod_id, &c.bin_dirs);
    }
    let veth = host_veth_name(pod_id);
    let link = if hints.veth_goes_with_netns { Ok(()) } else { netlink::run(|h| async move { netlink::delete_link(&h, &veth).await }) };
    // The anti-spoofing elements name the veth by index, which the kernel does not hand out
    // again: once the veth is gone they match nothing. Deleting them costs an nft transaction
    // with an RCU wait (~12 ms), so they are noted and removed in batches (nft::mark_stale).
    nft::mark_stale(root, pod_id);
    // Keep going on errors so one stuck piece does not leak the others; report the first.
    let ports = if hints.no_host_ports { Ok(()) } else { nft::remove_pod(pod_id) };
    let addr = match hints.address.map(|ip| ipam::release_address(root, ip, pod_id)) {
        Some(Ok(true)) => Ok(()),
        _ => ipam::release(root, pod_id),
    };
    link.and(ports).and(addr)
}

/// Free addresses, veths and rules of pods not in `live`. Veths and rules only if this root owns
/// the node's bridge: those of another root's pods are not ours to judge.
pub fn gc(root: &Path, live: &[String]) -> Result<(), NetError> {
    let cfg = NetConfig::load(root)?;
    if let Some(c) = &cfg.cni {
        return cni::gc(root, c, live);
    }
    if owned_by_other(root, &cfg.bridge)?.is_some() {
        return ipam::gc(root, live).map(|_| ());
    }
    let live_veths: Vec<String> = live.iter().filter(|id| check_pod_id(id).is_ok()).map(|id| host_veth_name(id)).collect();
    // Veths of ours are recognised by name and by being ports of our bridge.
    let bridge = cfg.bridge.clone();
    let links = netlink::run(|h| async move {
        let all = netlink::links(&h).await?;
        let Some(br) = all.iter().find(|l| netlink::name(l) == bridge).map(|l| l.header.index) else { return Ok(()) };
        for l in all.iter().filter(|l| netlink::controller(l) == Some(br)) {
            let n = netlink::name(l);
            if n.starts_with("veth") && !live_veths.contains(&n) {
                netlink::delete_link(&h, &n).await?;
            }
        }
        Ok(())
    });
    let ports = nft::gc(root, live);
    nft::forget_base(root);
    // The node sysctls are checked (and set) again by the next pod.
    let _ = std::fs::remove_file(config::net_dir(root).join("sysctl.applied"));
    let addrs = ipam::gc(root, live).map(|_| ());
    links.and(ports).and(addrs)
}
