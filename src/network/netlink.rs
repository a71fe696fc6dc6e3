//! The kernel side of the data path over rtnetlink: the bridge, veth pairs, addresses and routes,
//! plus `in_netns`, which runs netlink work inside a pod's network namespace on a dedicated thread
//! (the calling thread never changes namespace).

use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, State};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::NetError;

mod bridge;
mod route;
mod session;
mod veth;
pub use bridge::*;
pub use route::*;
pub use session::Session;
pub use veth::*;

/// A netlink failure, with what we were doing.
fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |e| NetError::Netlink { what, msg: e.to_string() }
}

fn errno(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => -m.raw_code(),
        _ => 0,
    }
}

/// Run `f` with a fresh netlink connection (no strict checking) on a current-thread runtime, in
/// the calling thread's network namespace: a `Session` for one step.
pub fn run<T, Fut>(f: impl FnOnce(Handle) -> Fut) -> Result<T, NetError>
where
    Fut: Future<Output = Result<T, NetError>>,
{
    Session::checking(false)?.run(f)
}

/// Like `run`, but inside the network namespace at `netns`: a new thread enters it (setns is
/// per-thread) and opens its own netlink socket there, so the socket belongs to that namespace.
pub fn in_netns<T: Send + 'static, Fut>(netns: &Path, f: impl FnOnce(Handle) -> Fut + Send + 'static) -> Result<T, NetError>
where
    Fut: Future<Output = Result<T, NetError>>,
{
    let ns = open_netns(netns)?;
    let shown = netns.display().to_string();
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetError::Netlink { what: format!("entering network namespace {shown}"), msg: e.to_string() })?;
        run(f)
    })
    .join()
    .unwrap_or_else(|_| Err(NetError::Netlink { what: "netns worker thread".into(), msg: "panicked".into() }))
}

pub fn open_netns(netns: &Path) -> Result<File, NetError> {
    File::open(netns).map_err(|e| super::config::io_err(netns, e))
}

pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    match h.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(l) => Ok(l),
        Err(e) if errno(&e) == libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

pub fn kind(l: &LinkMessage) -> Option<&InfoKind> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

pub fn mac(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(fmt_mac(b)),
            _ => None,
        })
        .unwrap_or_default()
}

/// A MAC address as `ip link` shows it (lower-case hex, colons).
pub fn fmt_mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

pub fn oper_up(l: &LinkMessage) -> bool {
    l.attributes.iter().any(|a| matches!(a, LinkAttribute::OperState(State::Up)))
}

pub fn name(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A dump request for the IPv4 addresses of link `index`. The family goes in the request: the
/// kernel then dumps IPv4 addresses only, instead of every address of the node — among them the
/// IPv6 link-local address of every pod's veth, which made each `pod create` O(pods). The index
/// goes in the request too: on a socket with strict checking (see `addresses`) the kernel then
/// looks at that one link instead of walking every device of the node (`inet_dump_addr`); on
/// other sockets it is filtered here.
fn ipv4_addresses_of(h: &Handle, index: u32) -> impl futures_util::Stream<Item = Result<rtnetlink::packet_route::address::AddressMessage, rtnetlink::Error>> {
    let mut req = h.address().get().set_link_index_filter(index);
    req.message_mut().header.family = rtnetlink::packet_route::AddressFamily::Inet;
    req.message_mut().header.index = index;
    req.execute()
}

/// IPv4 addresses (address, prefix) on link `index`.
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    // Performance: a socket of its own with strict checking, so that the kernel filters by
    // index (each `pod create` checks the bridge's address: O(1) instead of O(pods)). Where one
    // cannot be had, the caller's socket does, with the index filtered here.
    let strict = rtnetlink::new_connection_with_strict_check().ok().map(|(conn, h, _)| {
        tokio::spawn(conn);
        h
    });
    addresses_strict(strict.as_ref().unwrap_or(h), index).await
}

/// `addresses` on a socket that has strict checking already (a `Session`'s), or not (then the
/// index is filtered here).
pub async fn addresses_strict(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    let mut out = Vec::new();
    let mut s = ipv4_addresses_of(h, index);
    while let Some(m) = s.try_next().await.map_err(nl("listing addresses"))? {
        if m.header.index != index {
            continue;
        }
        for a in &m.attributes {
            if let AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) = a {
                out.push((*ip, m.header.prefix_len));
                break;
            }
        }
    }
    Ok(out)
}

/// Remove `ip/prefix` from link `name` if it is there.
pub async fn remove_address(h: &Handle, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    let Some(l) = link_by_name(h, name).await? else { return Ok(()) };
    let idx = l.header.index;
    let mut s = ipv4_addresses_of(h, idx);
    while let Some(m) = s.try_next().await.map_err(nl("listing addresses"))? {
        let is_it = m.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(a)) if *a == ip));
        if m.header.index == idx && m.header.prefix_len == prefix && is_it {
            return h.address().del(m).execute().await.map_err(nl(format!("removing {ip}/{prefix} from {name}")));
        }
    }
    Ok(())
}

/// The interface alias (`ip link set DEV alias TEXT`), if set.
pub fn alias(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

/// Set the alias of link `idx`.
pub async fn set_alias(h: &Handle, idx: u32, text: &str) -> Result<(), NetError> {
    h.link().set(LinkUnspec::new_with_index(idx).alias(text).build()).execute().await.map_err(nl(format!("setting the alias of link {idx}")))
}

/// Inside the pod: `lo` and `eth0` up, `ip/prefix` on eth0, default route via `gw`. Returns
/// eth0's MAC address.
///
/// podbox's pod network is IPv4, and a pod's `eth0` gets no IPv6 address, not even link-local
/// (as Docker's IPv4-only networks leave containers): a link-local address is not only unused,
/// it is traffic between pods that no IPv4 rule sees, and its duplicate-address probe and MLD
/// reports go to a multicast group the bridge floods to every port — each new pod made every
/// other pod's namespace receive and process them, work that grew with the pods on the node
/// (issue 19; `perf` at 1,000 pods: more softirq time than podbox's own processes).
pub async fn configure_pod(h: &Handle, ip: Ipv4Addr, prefix: u8, gw: Ipv4Addr) -> Result<String, NetError> {
    configure_iface(h, "eth0", ip, prefix, &[(ipnet::Ipv4Net::default(), gw)], false).await
}

/// Inside the pod: `lo` and `ifname` up, `ip/prefix` on it, `routes` (destination, gateway) via
/// it; without `ipv6_link_local`, no IPv6 address is generated on it. Returns its MAC address.
pub async fn configure_iface(h: &Handle, ifname: &str, ip: Ipv4Addr, prefix: u8, routes: &[(ipnet::Ipv4Net, Ipv4Addr)], ipv6_link_local: bool) -> Result<String, NetError> {
    let eth0 = link_by_name(h, ifname).await?.ok_or_else(|| NetError::Netlink { what: format!("pod {ifname}"), msg: "missing".into() })?;
    configure_index(h, ifname, eth0.header.index, ip, prefix, routes, ipv6_link_local).await?;
    Ok(mac(&eth0))
}

/// `configure_iface` for an interface whose index in the pod is known (`NewVeth::peer_index`).
pub async fn configure_index(h: &Handle, ifname: &str, idx: u32, ip: Ipv4Addr, prefix: u8, routes: &[(ipnet::Ipv4Net, Ipv4Addr)], ipv6_link_local: bool) -> Result<(), NetError> {
    // By name: the kernel finds it (every namespace has one), no lookup of ours first.
    h.link().set(LinkUnspec::new_with_name("lo").up().build()).execute().await.map_err(nl("setting lo up in the pod"))?;
    if !ipv6_link_local {
        // Before the link goes up, when the kernel would make the address.
        veth::no_ipv6_addresses(h, idx, ifname).await?;
    }
    h.address().add(idx, IpAddr::V4(ip), prefix).execute().await.map_err(nl(format!("adding {ip}/{prefix} to {ifname} in the pod")))?;
    h.link().set(LinkUnspec::new_with_index(idx).up().build()).execute().await.map_err(nl(format!("setting {ifname} up in the pod")))?;
    for (dst, gw) in routes {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(dst.addr(), dst.prefix_len()).gateway(*gw).output_interface(idx).build();
        h.route().add(route).execute().await.map_err(nl(format!("adding route {dst} via {gw} in the pod")))?;
    }
    Ok(())
}

/// Wait (bounded) until link `name` is operationally up, a veth once both ends are up; returns
/// the link as it is then. The state is set by the kernel's link watch, a worker that runs
/// shortly after the carrier comes: usually done by the first look (29 ADDs in 30), otherwise
/// within a fraction of a millisecond. So the pauses start at 0.1 ms and double up to 10 ms;
/// below 1 ms they are blocking sleeps, which give the worker the CPU (tokio's timer counts
/// whole milliseconds), and nothing else is waiting on this runtime's thread meanwhile.
pub async fn wait_oper_up(h: &Handle, name: &str, timeout: Duration) -> Result<LinkMessage, NetError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        if let Some(l) = link_by_name(h, name).await?.filter(oper_up) {
            return Ok(l);
        }
        if Instant::now() >= deadline {
            return Err(NetError::Netlink { what: format!("waiting for {name} to come up"), msg: format!("still down after {timeout:?}") });
        }
        if pause < Duration::from_millis(1) {
            std::thread::sleep(pause);
        } else {
            tokio::time::sleep(pause).await;
        }
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Delete link `name`; a missing link counts as deleted.
pub async fn delete_link(h: &Handle, name: &str) -> Result<(), NetError> {
    let Some(l) = link_by_name(h, name).await? else { return Ok(()) };
    match h.link().del(l.header.index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == libc::ENODEV => Ok(()),
        Err(e) => Err(nl(format!("deleting {name}"))(e)),
    }
}

/// Every link on the node.
pub async fn links(h: &Handle) -> Result<Vec<LinkMessage>, NetError> {
    h.link().get().execute().try_collect().await.map_err(nl("listing links"))
}

/// The bridge a link is enslaved to, if any.
pub fn controller(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// The peer's index of a veth (IFLA_LINK), in the namespace the peer lives in.
pub fn peer_index(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}
