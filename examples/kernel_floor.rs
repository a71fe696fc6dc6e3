//! The kernel floor of a pod sandbox, for scripts/bench.sh: the same kernel work as
//! `podbox pod create --network bridge` with no bookkeeping — new net/ipc/uts namespaces pinned
//! by bind mounts, a veth pair with one end in the new network namespace attached to an existing
//! bridge, the pod end's address and default route. No record, no IPAM, no cgroup, no pause, no
//! nft, no checks: what is left is what the kernel costs.
//!
//! Usage: kernel_floor PIN_DIR HOST_VETH BRIDGE ADDR/PREFIX GATEWAY
//! (PIN_DIR must exist; the bench removes the pins and the veth between runs.)

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Run `f` with a netlink handle bound to the calling thread's current network namespace.
fn netlink<T>(f: impl AsyncFnOnce(Handle) -> Res<T>) -> Res<T> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        f(handle).await
    })
}

async fn index(h: &Handle, name: &str) -> Res<u32> {
    use futures_util::TryStreamExt;
    let mut links = h.link().get().match_name(name.to_string()).execute();
    Ok(links.try_next().await?.ok_or(format!("no link {name}"))?.header.index)
}

fn main() -> Res<()> {
    let a: Vec<String> = std::env::args().collect();
    let [_, dir, veth, bridge, addr, gw] = &a[..] else { return Err("usage: kernel_floor PIN_DIR HOST_VETH BRIDGE ADDR/PREFIX GATEWAY".into()) };
    let (ip, prefix) = addr.split_once('/').ok_or("ADDR/PREFIX")?;
    let (ip, prefix, gw): (Ipv4Addr, u8, Ipv4Addr) = (ip.parse()?, prefix.parse()?, gw.parse()?);
    let node = File::open("/proc/self/ns/net")?;
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)?;
    for ns in ["net", "ipc", "uts"] {
        let pin = format!("{dir}/{ns}");
        File::create(&pin)?;
        mount(Some(format!("/proc/self/ns/{ns}").as_str()), pin.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    }
    let pod = File::open("/proc/self/ns/net")?;
    setns(&node, CloneFlags::CLONE_NEWNET)?;
    netlink(async |h| {
        let br = index(&h, bridge).await?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new().name("eth0").setns_by_fd(pod.as_raw_fd()).build();
        h.link().add(LinkVeth::new(veth, "eth0").set_info_data(InfoData::Veth(InfoVeth::Peer(peer))).controller(br).up().build()).execute().await?;
        Ok(())
    })?;
    setns(&pod, CloneFlags::CLONE_NEWNET)?;
    netlink(async |h| {
        let (lo, eth0) = (index(&h, "lo").await?, index(&h, "eth0").await?);
        h.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await?;
        h.address().add(eth0, IpAddr::V4(ip), prefix).execute().await?;
        h.link().set(LinkUnspec::new_with_index(eth0).up().build()).execute().await?;
        h.route().add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).output_interface(eth0).build()).execute().await?;
        Ok(())
    })
}
