//! The CNI verbs on a resolved network: ADD (with an undo list), DEL, CHECK, STATUS and GC.

use std::path::Path;
use std::time::Duration;
use serde_json::{Value, json};
use crate::network::cni::hostlocal::Store;
use crate::network::{NetError, netlink, nft};

use super::*;

pub(super) fn add(net: &Net, e: &Env) -> Result<Value, PluginError> {
    let store = Store::open(&net.data_dir, &net.name)?;
    if let Some(ip) = store.find(&e.container_id, &e.ifname)? {
        return Err(err(
            code::ALREADY_ATTACHED,
            format!("container {} interface {} is already attached to {} with {ip}", e.container_id, e.ifname, net.name),
            "a runtime must DEL before it ADDs the same container and interface again",
        ));
    }
    nft::check_ports_free(&e.container_id, &net.ports)?;
    // One runtime and connection for every netlink request of the ADD (see `netlink::Session`).
    let nl = netlink::Session::new()?;
    let name = host_veth(&e.container_id, &e.ifname);
    let veth = name.as_str();
    if nl.run(|h| async move { netlink::link_by_name(&h, veth).await })?.is_some() {
        return Err(err(code::SETUP_FAILED, format!("link {veth} already exists"), "a leftover of this container (DEL it) or a hash collision"));
    }
    let mut undo = Vec::new();
    let res = add_steps(net, e, &nl, &store, veth, &mut undo);
    if res.is_err() {
        // Best effort: the error that caused the rollback is the one worth reporting.
        for u in undo.into_iter().rev() {
            let _ = match u {
                Undo::Address => store.release(&e.container_id, &e.ifname).map(|_| ()).map_err(NetError::from),
                Undo::Veth => nl.run(|h| async move { netlink::delete_link(&h, veth).await }),
                Undo::Nat => nft::remove_pod(&e.container_id),
            };
        }
    }
    res
}

/// What to undo if a later step of ADD fails, in reverse order.
pub(super) enum Undo {
    Address,
    Veth,
    Nat,
}

pub(super) fn add_steps(net: &Net, e: &Env, nl: &netlink::Session, store: &Store, veth: &str, undo: &mut Vec<Undo>) -> Result<Value, PluginError> {
    let pod_ns = &netlink::open_netns(Path::new(&e.netns)).map_err(|x| err(code::INVALID_ENV, format!("CNI_NETNS {}: cannot open it", e.netns), x.to_string()))?;
    let (bridge, mtu, gw, prefix) = (&net.bridge, net.mtu, net.range.gateway, net.subnet.prefix_len());
    let bridge_idx = nl.run(|h| async move {
        if net.is_gateway { netlink::ensure_bridge(&h, true, bridge, mtu, gw, prefix, None).await } else { netlink::ensure_bridge_link(&h, bridge, mtu).await }
    })?;
    if net.is_gateway {
        crate::network::node_sysctls_once(&net.state_root(), &net.nat_config(), bridge_idx)?;
    }
    undo.push(Undo::Address);
    let ip = store.allocate(net.range, &e.container_id, &e.ifname)?;
    undo.push(Undo::Veth);
    // The same address-derived MAC as podbox's own pods: known before the veth exists, so the
    // anti-spoofing elements can name it.
    let mac_addr = crate::network::pod_mac(ip);
    let new = nl.run(|h| async move {
        let new = netlink::create_veth_peer(&h, veth, &e.ifname, bridge_idx, mtu, pod_ns, Some(mac_addr)).await?;
        netlink::setup_port(&h, veth, new.index, net.hairpin).await?;
        Ok(new)
    })?;
    let host_idx = new.index;
    // IPv6 link-local kept, as the reference bridge plugin keeps it.
    let mac = nl.in_netns(pod_ns, |h| async move {
        match new.peer_index {
            Some(idx) => netlink::configure_index(&h, &e.ifname, idx, ip, prefix, &net.routes, true).await.map(|_| netlink::fmt_mac(&mac_addr)),
            None => netlink::configure_iface(&h, &e.ifname, ip, prefix, &net.routes, true).await,
        }
    })?;
    undo.push(Undo::Nat);
    if net.ip_masq || !net.ports.is_empty() {
        let root = net.state_root();
        std::fs::create_dir_all(root.join("network")).map_err(|x| err(code::IO, format!("creating {}", root.display()), x.to_string()))?;
        let port = nft::PodPort { ifindex: host_idx, mac: mac_addr, ip };
        nft::apply_pod(&root, &net.nat_config(), &e.container_id, &port, &net.ports)?;
    }
    // The bridge's MAC is read now, not with the bridge above: a bridge takes the lowest MAC of
    // its ports unless one was set, so a new port can change it.
    let (host, bridge) = nl.run(|h| async move {
        let m = |l: Option<rtnetlink::packet_route::link::LinkMessage>| l.map(|l| netlink::mac(&l)).unwrap_or_default();
        let (up, b) = tokio::try_join!(netlink::wait_oper_up(&h, veth, Duration::from_secs(2)), netlink::link_by_name(&h, bridge))?;
        Ok((m(Some(up)), m(b)))
    })?;
    let mut ipc = json!({ "address": format!("{ip}/{prefix}"), "gateway": net.range.gateway.to_string(), "interface": 2 });
    if !crate::network::cni::exec::version_at_least(&net.version, "1.0.0") {
        ipc["version"] = json!("4");
    }
    Ok(json!({
        "cniVersion": net.version,
        "interfaces": [
            { "name": net.bridge, "mac": bridge },
            { "name": veth, "mac": host },
            { "name": e.ifname, "mac": mac, "sandbox": e.netns },
        ],
        "ips": [ipc],
        "routes": net.routes.iter().map(|(d, g)| json!({ "dst": d.to_string(), "gw": g.to_string() })).collect::<Vec<_>>(),
        "dns": {},
    }))
}

/// Undo ADD from the container ID and interface alone; whatever is gone counts as done. The veth
/// pair is made unobservable first and deleted by a detached child at the very end (`retire`):
/// the kernel's deletion of a veth is most of a DEL's time, and nothing depends on it.
pub(super) fn del(net: &Net, e: &Env) -> Result<(), PluginError> {
    let veth = host_veth(&e.container_id, &e.ifname);
    let retired = retire::retire_pair(&veth, &e.netns, &e.ifname);
    let ports = if net.port_capable { nft::remove_pod(&e.container_id) } else { Ok(()) };
    if net.ip_masq || net.port_capable {
        // Its anti-spoofing elements match nothing once the veth is gone; pruned in batches.
        nft::mark_stale(&net.state_root(), &e.container_id);
    }
    // The store (and its flock) is closed before the child is forked.
    let addr = Store::open(&net.data_dir, &net.name)?.release(&e.container_id, &e.ifname).map(|_| ()).map_err(NetError::from);
    let link = match retired {
        Ok(Some(dying)) => retire::delete_detached(dying),
        Ok(None) => Ok(()),
        Err(x) => Err(x),
    };
    link.and(ports).and(addr)?;
    Ok(())
}

/// Is the attachment still as ADD (its `prevResult`) left it? Address held, veth on the bridge
/// and up, the address on the container's interface.
pub(super) fn check(net: &Net, e: &Env, prev: Option<&Value>) -> Result<(), PluginError> {
    let prev = prev.ok_or_else(|| err(code::INVALID_CONFIG, "CHECK needs prevResult", ""))?;
    let want = crate::network::cni::attachment(prev, &e.ifname).map_err(|x| err(code::INVALID_CONFIG, "prevResult has no address for the interface", x.to_string()))?;
    let fail = |m: String| err(code::CHECK_FAILED, m, "");
    let store = Store::open(&net.data_dir, &net.name)?;
    match store.find(&e.container_id, &e.ifname)? {
        Some(ip) if ip == want.ip => {}
        Some(ip) => return Err(fail(format!("the store holds {ip}, the result says {}", want.ip))),
        None => return Err(fail(format!("no address held for {} {}", e.container_id, e.ifname))),
    }
    let (veth, bridge) = (host_veth(&e.container_id, &e.ifname), net.bridge.clone());
    let v = veth.clone();
    let on_bridge = netlink::run(|h| async move {
        let (Some(l), Some(b)) = (netlink::link_by_name(&h, &v).await?, netlink::link_by_name(&h, &bridge).await?) else { return Ok(false) };
        Ok(netlink::controller(&l) == Some(b.header.index) && netlink::oper_up(&l))
    })?;
    if !on_bridge {
        return Err(fail(format!("veth {veth} is missing, down or not a port of {}", net.bridge)));
    }
    let ifn = e.ifname.clone();
    let addrs = netlink::in_netns(Path::new(&e.netns), move |h| async move {
        match netlink::link_by_name(&h, &ifn).await? {
            Some(l) => netlink::addresses(&h, l.header.index).await,
            None => Ok(vec![]),
        }
    })?;
    if !addrs.contains(&(want.ip, want.prefix_len)) {
        return Err(fail(format!("{} in the container does not hold {}/{}", e.ifname, want.ip, want.prefix_len)));
    }
    Ok(())
}

/// Ready when the address store is writable and nftables can be run.
pub(super) fn status(net: &Net) -> Result<(), PluginError> {
    Store::open(&net.data_dir, &net.name).map_err(|x| err(code::NOT_AVAILABLE, "the address store is not usable", x.to_string()))?;
    nft::host_ports().map_err(|x| err(code::NOT_AVAILABLE, "nftables is not usable", x.to_string()))?;
    Ok(())
}

/// Free every attachment of this network not in `valid`: address, veth, host ports; and delete
/// the pairs DEL retired whose deleting child did not finish.
pub(super) fn gc(net: &Net, valid: &[ValidAttachment]) -> Result<(), PluginError> {
    let store = Store::open(&net.data_dir, &net.name)?;
    let is_valid = |id: &str, ifn: &str| valid.iter().any(|v| v.container_id == id && (v.ifname == ifn || ifn.is_empty()));
    let mut first: Option<PluginError> = None;
    for h in store.all()?.into_iter().filter(|h| !is_valid(&h.container_id, &h.ifname)) {
        let veth = host_veth(&h.container_id, &h.ifname);
        let res = netlink::run(|x| async move { netlink::delete_link(&x, &veth).await })
            .and_then(|_| store.release(&h.container_id, &h.ifname).map(|_| ()).map_err(NetError::from));
        if let Err(x) = res {
            first.get_or_insert(x.into());
        }
    }
    if let Err(x) = retire::sweep() {
        first.get_or_insert(x.into());
    }
    let live: Vec<String> = valid.iter().map(|v| v.container_id.clone()).collect();
    if let Err(x) = nft::gc(&net.state_root(), &live) {
        first.get_or_insert(x.into());
    }
    first.map_or(Ok(()), Err)
}
