//! Attaching a pod: bridge, veth pair, address, routes, host ports, step by step with an undo
//! list, so that a failed setup leaves nothing behind.

use std::path::Path;
use std::time::Duration;

use super::*;

pub(super) fn check_pod_id(pod_id: &str) -> Result<(), NetError> {
    if pod_id.len() == 32 && pod_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(NetError::Config(format!("invalid pod id {pod_id:?}: expected 32 lowercase hex characters")))
    }
}

/// Test hook: `PODBOX_NET_FAIL_AFTER=<step>` makes setup fail right after that step, to prove the
/// rollback. Honoured only in debug builds, so a release binary cannot be told to fail.
pub(super) fn injected_failure(step: &'static str) -> Result<(), NetError> {
    if cfg!(debug_assertions) && std::env::var("PODBOX_NET_FAIL_AFTER").is_ok_and(|s| s == step) {
        return Err(NetError::Setup { pod: String::new(), msg: format!("injected failure after {step}") });
    }
    Ok(())
}

/// What to undo if a later step fails, in reverse order.
pub(super) enum Undo {
    Address,
    Veth(String),
    /// Host ports, and the anti-spoofing elements (left for the next prune: see nft::mark_stale).
    Nft,
}

pub(super) fn undo(root: &Path, pod_id: &str, steps: Vec<Undo>) {
    for step in steps.into_iter().rev() {
        // Best effort: the error that caused the rollback is the one worth reporting.
        let _ = match step {
            Undo::Address => ipam::release(root, pod_id),
            Undo::Veth(name) => netlink::run(|h| async move { netlink::delete_link(&h, &name).await }),
            Undo::Nft => {
                nft::mark_stale(root, pod_id);
                nft::remove_pod(pod_id)
            }
        };
    }
}

/// Attach the network namespace pinned at `netns` to the node bridge: an address from the node's
/// pod subnet on `eth0`, default route via the bridge, NAT and `ports`. Runs in the node's network
/// namespace; on error everything it did for this pod is undone.
pub fn setup(root: &Path, pod_id: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment, NetError> {
    if let Some(c) = NetConfig::load(root)?.cni {
        check_pod_id(pod_id)?;
        return cni::setup(root, &c, pod_id, pod_id, netns, ports);
    }
    setup_with(root, pod_id, netns, ports, false)
}

/// `setup_fresh_id` for pod `name`, or on a CNI node the ADD of the node's CNI network (whose
/// plugins get the pod's name in `CNI_ARGS`).
pub fn setup_pod(root: &Path, pod_id: &str, name: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment, NetError> {
    match NetConfig::load(root)?.cni {
        Some(c) => cni::setup(root, &c, pod_id, name, netns, ports),
        None => setup_fresh_id(root, pod_id, netns, ports),
    }
}

/// On a CNI node, DEL the pod while its network namespace is still pinned (plugins undo their
/// work inside it — the bridge plugin's masquerade rules are removed only then). A no-op for the
/// built-in bridge; a failure is retried by `teardown_with`.
pub fn detach_before_unpin(root: &Path, pod_id: &str) {
    if let Ok(Some(c)) = NetConfig::load(root).map(|c| c.cni) {
        let _ = cni::teardown(root, pod_id, &c.bin_dirs);
    }
}

/// `setup` for a pod id the caller has just generated (so it cannot hold an address yet): skips
/// the check for an existing allocation, which reads every allocation file — O(pods) per pod.
pub fn setup_fresh_id(root: &Path, pod_id: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment, NetError> {
    setup_with(root, pod_id, netns, ports, true)
}

pub(super) fn setup_with(root: &Path, pod_id: &str, netns: &Path, ports: &[PortMapping], fresh_id: bool) -> Result<Attachment, NetError> {
    check_pod_id(pod_id)?;
    let mut done = Vec::new();
    let res = setup_steps(root, pod_id, netns, ports, fresh_id, &mut done);
    if res.is_err() {
        undo(root, pod_id, done);
    }
    res
}

/// What a failure in `step` of attaching `pod_id` is reported as.
fn in_step<'a>(pod_id: &'a str, step: &'static str) -> impl FnOnce(NetError) -> NetError + 'a {
    move |e: NetError| NetError::Step { pod: pod_id.to_string(), step, cause: Box::new(e) }
}

/// The checks before anything is created: the pod is not attached yet, its host ports are free,
/// and its veth name is not taken.
fn preflight(root: &Path, pod_id: &str, ports: &[PortMapping], fresh_id: bool, veth: &str) -> Result<(), NetError> {
    let step = |step: &'static str| in_step(pod_id, step);
    if let Some(a) = if fresh_id { None } else { ipam::lookup(root, pod_id).map_err(step("checking IPAM"))? } {
        return Err(NetError::Conflict(format!("pod {pod_id} is already attached with address {}", a.ip)));
    }
    nft::check_ports_free(pod_id, ports).map_err(step("checking host ports"))?;
    // The name comes from the first 11 hex chars of the id; never adopt (or, on rollback, delete)
    // a veth this call did not create.
    let v = veth.to_string();
    if netlink::run(|h| async move { netlink::link_by_name(&h, &v).await }).map_err(step("checking the veth name"))?.is_some() {
        return Err(NetError::Conflict(format!(
            "link {veth} already exists: a leftover of pod {pod_id} (remove it with `podbox network del --id {pod_id}`) \
             or a pod whose id starts with the same 11 characters"
        )));
    }
    Ok(())
}

/// The pod's nft set elements (its port, host ports). A pod racing this one may have taken a
/// port since the check: that is said, not "File exists".
fn install_nat(root: &Path, cfg: &NetConfig, pod_id: &str, port: &nft::PodPort, ports: &[PortMapping]) -> Result<(), NetError> {
    nft::apply_pod(root, cfg, pod_id, port, ports).map_err(|e| match nft::check_ports_free(pod_id, ports) {
        Err(taken @ NetError::PortTaken { .. }) => taken,
        _ => e,
    })
}

pub(super) fn setup_steps(root: &Path, pod_id: &str, netns: &Path, ports: &[PortMapping], fresh_id: bool, done: &mut Vec<Undo>) -> Result<Attachment, NetError> {
    let step = |step: &'static str| in_step(pod_id, step);
    let cfg = NetConfig::load(root).map_err(step("loading the network config"))?;
    let owner = Owner::of(root).map_err(step("naming the bridge owner"))?;
    let veth = host_veth_name(pod_id);

    // Checks first, so that a refused pod changes nothing.
    preflight(root, pod_id, ports, fresh_id, &veth)?;
    let pod_ns = netlink::open_netns(netns).map_err(step("opening the pod network namespace"))?;
    crate::trace::step("net: config, checks, netns open");

    let (bridge, gw, prefix, mtu) = (cfg.bridge.clone(), cfg.gateway, cfg.subnet.prefix_len(), cfg.mtu);
    let bridge_idx = netlink::run(|h| async move { netlink::ensure_bridge(&h, false, &bridge, mtu, gw, prefix, Some(&owner)).await })
        .map_err(|e| match e {
            // Said plainly: nothing was changed, and the fix is the user's.
            owned @ NetError::OwnedByOtherRoot { .. } => owned,
            e => step("preparing the bridge")(e),
        })?;
    node_sysctls_once(root, &cfg, bridge_idx).map_err(step("setting node sysctls"))?;
    crate::trace::step("net: bridge and node sysctls");

    done.push(Undo::Address);
    let ip = ipam::allocate(root, cfg.subnet, cfg.gateway, pod_id).map_err(step("allocating an address"))?;
    injected_failure("ipam").map_err(step("allocating an address"))?;
    crate::trace::step("net: ipam");

    done.push(Undo::Veth(veth.clone()));
    let (v, hairpin, pod_mac) = (veth.clone(), cfg.hairpin, pod_mac(ip));
    let host_idx = netlink::run(|h| async move {
        let idx = netlink::create_veth(&h, &v, bridge_idx, mtu, &pod_ns, pod_mac).await?;
        netlink::setup_port(&h, &v, idx, hairpin).await?;
        Ok(idx)
    })
    .map_err(step("creating the veth pair"))?;
    injected_failure("veth").map_err(step("creating the veth pair"))?;
    crate::trace::step("net: veth pair and bridge port");

    // No sysctl is written in the pod (see sysctls.rs: `accept_ra` is the bridge's business).
    let mac = netlink::in_netns(netns, move |h| async move { netlink::configure_pod(&h, ip, prefix, gw).await })
        .map_err(step("configuring the pod interface"))?;
    crate::trace::step("net: pod address, route");

    done.push(Undo::Nft);
    let port = nft::PodPort { ifindex: host_idx, mac: pod_mac, ip };
    install_nat(root, &cfg, pod_id, &port, ports).map_err(step("installing NAT rules"))?;
    injected_failure("nat").map_err(step("installing NAT rules"))?;
    crate::trace::step("net: nft elements");

    let v = veth.clone();
    netlink::run(|h| async move { netlink::wait_oper_up(&h, &v, Duration::from_secs(2)).await })
        .map_err(step("waiting for the veth"))?;
    crate::trace::step("net: veth up");

    Ok(Attachment { ip, prefix_len: prefix, gateway: gw, mac, host_veth: veth, bridge: cfg.bridge })
}
