//! A pod's veth pair on the node's side: created with its peer already in the pod's network
//! namespace, and made a bridge port (hairpin, no IPv6 of its own, up).

use std::fs::File;
use std::os::fd::AsRawFd;

use rtnetlink::packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::{NetError, link_by_name, nl};

/// Create the veth pair: `host` on the node, enslaved to the bridge, and its peer created directly
/// as `eth0` with MAC address `pod_mac` inside the namespace `pod_ns` (no move or rename
/// afterwards). Returns the host index.
pub async fn create_veth(h: &Handle, host: &str, bridge_idx: u32, mtu: u32, pod_ns: &File, pod_mac: [u8; 6]) -> Result<u32, NetError> {
    Ok(create_veth_peer(h, host, "eth0", bridge_idx, mtu, pod_ns, Some(pod_mac)).await?.index)
}

/// A veth pair just created: the host end's index, and the pod end's index in the pod's
/// namespace when the kernel said it (IFLA_LINK of the host end), which spares a lookup there.
pub struct NewVeth {
    pub index: u32,
    pub peer_index: Option<u32>,
}

/// `create_veth` with the pod end named `peer_name`, and a MAC address of the kernel's choosing
/// unless `mac` names one.
///
/// Both ends get one transmit and one receive queue. Performance: unasked, the kernel makes a
/// veth with a queue of each kind per possible CPU, creates their sysfs entries, and then
/// (`veth_init_queues`) cuts the queues in use down to one, which removes those entries again
/// and waits for an expedited RCU grace period (`synchronize_net`), all under the rtnl lock,
/// for each end. One queue is what a veth uses unless someone raises its channel count
/// (`ethtool -L`), which a pod's veth never needs; the work grows with the node's CPUs.
pub async fn create_veth_peer(h: &Handle, host: &str, peer_name: &str, bridge_idx: u32, mtu: u32, pod_ns: &File, mac: Option<[u8; 6]>) -> Result<NewVeth, NetError> {
    let queues = [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)];
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new().name(peer_name).mtu(mtu);
    if let Some(mac) = mac {
        peer = peer.address(mac.to_vec());
    }
    let mut peer = peer.setns_by_fd(pod_ns.as_raw_fd()).build();
    peer.attributes.extend(queues.clone());
    let mut msg = LinkVeth::new(host, peer_name)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(mtu)
        .controller(bridge_idx)
        .build();
    msg.attributes.extend(queues);
    let what = || format!("creating veth {host} with peer {peer_name} in the pod");
    let link = match add_echoing(h, msg, host).await.map_err(nl(what()))? {
        Some(l) => l,
        // A kernel older than 6.2 does not echo a new link: ask for it.
        None => link_by_name(h, host).await?.ok_or_else(|| NetError::Netlink { what: what(), msg: "it vanished right after creation".into() })?,
    };
    // The notification is sent once the pair is tied together; 0 would be "no peer".
    Ok(NewVeth { index: link.header.index, peer_index: super::peer_index(&link).filter(|&i| i != 0) })
}

/// RTM_NEWLINK (create, exclusive) with NLM_F_ECHO: the kernel (6.2 and later) sends the new
/// link's own notification back to us, which carries its index. Performance: this saves a
/// GETLINK per pod, and every message about a veth whose peer is in another namespace costs the
/// kernel a walk of the node's namespace ids (`__peernet2id`), O(pods). None when no echo came.
async fn add_echoing(h: &Handle, msg: LinkMessage, name: &str) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::RouteNetlinkMessage;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
    let mut responses = h.clone().request(req)?;
    let mut link = None;
    while let Some(m) = futures_util::StreamExt::next(&mut responses).await {
        match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) if super::name(&l) == name => link = Some(l),
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(rtnetlink::Error::NetlinkError(e)),
            _ => {}
        }
    }
    Ok(link)
}

/// Hairpin on the bridge port lets a pod reach itself through a host port (the frame goes back
/// out of the port it came in; a new port has it off, so only "on" is asked for), then bring the
/// port up.
///
/// The node's end of a pod's veth gets no IPv6 at all (`disable_ipv6`, written before the port
/// goes up): it is a bridge port, whose own IPv6 nobody uses. With IPv6 merely without addresses
/// (address generation mode "none") the kernel still gave each port a multicast route (ff00::/8,
/// `addrconf_add_mroute`) in the node's IPv6 table, and each change of a port's IPv6 state walks
/// that whole table (`rt6_sync_down_dev`, `fib6_clean_all`): O(pods) per create and per removal
/// (issue 19). Per device, so no other interface of the node changes. The pod's `eth0` is
/// `configure_iface`'s business.
pub async fn setup_port(h: &Handle, host: &str, idx: u32, hairpin: bool) -> Result<(), NetError> {
    disable_ipv6(host)?;
    if hairpin {
        h.link().set_port(LinkBridgePort::new(idx).hairpin(true).build()).execute().await.map_err(nl(format!("setting hairpin on bridge port {host}")))?;
    }
    h.link().set(LinkUnspec::new_with_index(idx).up().build()).execute().await.map_err(nl(format!("setting {host} up")))
}

/// `net.ipv6.conf.<link>.disable_ipv6 = 1` for a link of the calling thread's network namespace;
/// nothing on a kernel without IPv6. Written without reading it first: a path lookup under
/// /proc/sys costs O(network namespaces that looked it up, see sysctls.rs), so one, not two.
fn disable_ipv6(link: &str) -> Result<(), NetError> {
    if !ipv6_enabled() {
        return Ok(());
    }
    let path = format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6");
    std::fs::write(&path, "1").map_err(|e| crate::network::config::io_err(std::path::Path::new(&path), e))
}

/// Link `idx` (down) will get no IPv6 address when it goes up: address generation mode "none".
pub async fn no_ipv6_addresses(h: &Handle, idx: u32, name: &str) -> Result<(), NetError> {
    let Some(attr) = no_ipv6_attribute() else { return Ok(()) };
    let mut msg = LinkUnspec::new_with_index(idx).build();
    msg.attributes.push(attr);
    h.link().set(msg).execute().await.map_err(nl(format!("turning off IPv6 addresses on {name}")))
}

/// The link attribute "IPv6 address generation mode: none"; None on a kernel without IPv6,
/// which refuses the attribute (EAFNOSUPPORT) and has no addresses to skip. The kernel refuses
/// it too in the message that creates a link (no IPv6 state exists yet), so it is set after.
fn no_ipv6_attribute() -> Option<LinkAttribute> {
    ipv6_enabled().then(|| LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)])]))
}

/// Whether this kernel has IPv6 (not built without it, nor booted with ipv6.disable=1): then it
/// has the address family. Asked of socket(2), not of /proc/sys/net/ipv6, whose lookup costs
/// O(network namespaces) (sysctls.rs); once per process.
pub fn ipv6_enabled() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd >= 0 {
            unsafe { libc::close(fd) };
        }
        fd >= 0
    })
}
