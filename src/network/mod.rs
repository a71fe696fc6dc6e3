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

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

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
         (two would hand out the same addresses on it). Use `--root {owner}`, or another bridge (`podbox network config --bridge`); \
         once that root has no pods, `ip link set {bridge} alias ''` releases the bridge"
    )]
    OwnedByOtherRoot { bridge: String, owner: String },
}

/// What the bridge's alias says when a podbox state root owns it.
const OWNER_PREFIX: &str = "podbox root ";

/// The state root this process acts for, as recorded on (and compared with) the bridge's alias.
#[derive(Debug, Clone)]
pub struct Owner {
    alias: String,
}

impl Owner {
    /// The owner identity of `root`: its canonical path (so `./r` and `/abs/r` are one root).
    pub fn of(root: &Path) -> Result<Owner, NetError> {
        let path = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let alias = format!("{OWNER_PREFIX}{}", path.display());
        // The kernel keeps at most 255 bytes of alias (IFALIASZ).
        if alias.len() > 255 {
            return Err(NetError::Config(format!("state root path {} is too long to record as the bridge owner (max 243 bytes)", path.display())));
        }
        Ok(Owner { alias })
    }

    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// Whether a bridge whose alias is `found` may be used by this root: unowned, ours, or owned by
    /// a root that no longer exists (its pods are gone with it; we take over).
    pub fn check(&self, bridge: &str, found: Option<&str>) -> Result<(), NetError> {
        let Some(found) = found else { return Ok(()) };
        if found == self.alias {
            return Ok(());
        }
        match found.strip_prefix(OWNER_PREFIX) {
            Some(other) if !Path::new(other).exists() => Ok(()),
            Some(other) => Err(NetError::OwnedByOtherRoot { bridge: bridge.into(), owner: other.into() }),
            None => Err(NetError::Conflict(format!(
                "bridge {bridge} has the alias {found:?}, so someone else manages it; choose another bridge name with `podbox network config --bridge`"
            ))),
        }
    }
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

fn check_pod_id(pod_id: &str) -> Result<(), NetError> {
    if pod_id.len() == 32 && pod_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(NetError::Config(format!("invalid pod id {pod_id:?}: expected 32 lowercase hex characters")))
    }
}

/// Test hook: `PODBOX_NET_FAIL_AFTER=<step>` makes setup fail right after that step, to prove the
/// rollback. Honoured only in debug builds, so a release binary cannot be told to fail.
fn injected_failure(step: &'static str) -> Result<(), NetError> {
    if cfg!(debug_assertions) && std::env::var("PODBOX_NET_FAIL_AFTER").is_ok_and(|s| s == step) {
        return Err(NetError::Setup { pod: String::new(), msg: format!("injected failure after {step}") });
    }
    Ok(())
}

/// What to undo if a later step fails, in reverse order.
enum Undo {
    Address,
    Veth(String),
    /// Host ports, and the anti-spoofing elements (left for the next prune: see nft::mark_stale).
    Nft,
}

fn undo(root: &Path, pod_id: &str, steps: Vec<Undo>) {
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

fn setup_with(root: &Path, pod_id: &str, netns: &Path, ports: &[PortMapping], fresh_id: bool) -> Result<Attachment, NetError> {
    check_pod_id(pod_id)?;
    let mut done = Vec::new();
    let res = setup_steps(root, pod_id, netns, ports, fresh_id, &mut done);
    if res.is_err() {
        undo(root, pod_id, done);
    }
    res
}

fn setup_steps(root: &Path, pod_id: &str, netns: &Path, ports: &[PortMapping], fresh_id: bool, done: &mut Vec<Undo>) -> Result<Attachment, NetError> {
    let step = |step: &'static str| move |e: NetError| NetError::Step { pod: pod_id.to_string(), step, cause: Box::new(e) };
    let cfg = NetConfig::load(root).map_err(step("loading the network config"))?;
    let owner = Owner::of(root).map_err(step("naming the bridge owner"))?;
    let veth = host_veth_name(pod_id);

    // Checks first, so that a refused pod changes nothing.
    if let Some(a) = if fresh_id { None } else { ipam::lookup(root, pod_id).map_err(step("checking IPAM"))? } {
        return Err(NetError::Conflict(format!("pod {pod_id} is already attached with address {}", a.ip)));
    }
    nft::check_ports_free(pod_id, ports).map_err(step("checking host ports"))?;
    // The name comes from the first 11 hex chars of the id; never adopt (or, on rollback, delete)
    // a veth this call did not create.
    let v = veth.clone();
    if netlink::run(|h| async move { netlink::link_by_name(&h, &v).await }).map_err(step("checking the veth name"))?.is_some() {
        return Err(NetError::Conflict(format!(
            "link {veth} already exists: a leftover of pod {pod_id} (remove it with `podbox network del --id {pod_id}`) \
             or a pod whose id starts with the same 11 characters"
        )));
    }
    let pod_ns = netlink::open_netns(netns).map_err(step("opening the pod network namespace"))?;
    crate::trace::step("net: config, checks, netns open");

    let (bridge, gw, prefix, mtu) = (cfg.bridge.clone(), cfg.gateway, cfg.subnet.prefix_len(), cfg.mtu);
    let bridge_idx = netlink::run(|h| async move { netlink::ensure_bridge(&h, &bridge, mtu, gw, prefix, Some(&owner)).await })
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

    let mac = netlink::in_netns(netns, move |h| async move {
        // Before eth0 goes up: from then on it could take in a router advertisement.
        pod_sysctls()?;
        netlink::configure_pod(&h, ip, prefix, gw).await
    })
    .map_err(step("configuring the pod interface"))?;
    crate::trace::step("net: pod sysctls, address, route");

    done.push(Undo::Nft);
    let port = nft::PodPort { ifindex: host_idx, mac: pod_mac, ip };
    nft::apply_pod(root, &cfg, pod_id, &port, ports)
        .map_err(|e| {
            // A pod racing us may have taken a port since the check: say so, not "File exists".
            match nft::check_ports_free(pod_id, ports) {
                Err(taken @ NetError::PortTaken { .. }) => taken,
                _ => e,
            }
        })
        .map_err(step("installing NAT rules"))?;
    injected_failure("nat").map_err(step("installing NAT rules"))?;
    crate::trace::step("net: nft elements");

    let v = veth.clone();
    netlink::run(|h| async move { netlink::wait_oper_up(&h, &v, Duration::from_secs(2)).await })
        .map_err(step("waiting for the veth"))?;
    crate::trace::step("net: veth up");

    Ok(Attachment { ip, prefix_len: prefix, gateway: gw, mac, host_veth: veth, bridge: cfg.bridge })
}

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
fn node_sysctls_once(root: &Path, cfg: &NetConfig, bridge_idx: u32) -> Result<(), NetError> {
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
/// from anyone. Pods get IPv4 from podbox and IPv6 link-local addresses only — nothing that
/// another pod could hand out. The namespace is new, so the values are written without being
/// read first: each /proc/sys lookup costs O(network namespaces) (see `node_sysctls`).
fn pod_sysctls() -> Result<(), NetError> {
    for (i, iface) in ["all", "default", "eth0"].iter().enumerate() {
        let path = format!("/proc/sys/net/ipv6/conf/{iface}/accept_ra");
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(mut f) => std::io::Write::write_all(&mut f, b"0").map_err(|e| config::io_err(Path::new(&path), e))?,
            // A kernel without IPv6 (or booted with ipv6.disable=1) has no RA to refuse.
            Err(e) if i == 0 && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(config::io_err(Path::new(&path), e)),
        }
    }
    Ok(())
}

fn write_sysctls(settings: &[(String, &str)]) -> Result<(), NetError> {
    for (path, val) in settings {
        if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == *val) {
            continue;
        }
        std::fs::write(path, val).map_err(|e| config::io_err(Path::new(path), e))?;
    }
    Ok(())
}

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

/// Refuse when another (existing) state root owns `bridge`: for commands that would change the
/// node network, before they change anything.
pub fn check_owner(root: &Path, bridge: &str) -> Result<(), NetError> {
    match owned_by_other(root, bridge)? {
        Some(owner) => Err(NetError::OwnedByOtherRoot { bridge: bridge.into(), owner }),
        None => Ok(()),
    }
}

/// The state root that owns `bridge`, if that is not the root at `root` (and it still exists).
fn owned_by_other(root: &Path, bridge: &str) -> Result<Option<String>, NetError> {
    let me = Owner::of(root)?;
    let name = bridge.to_string();
    let found = netlink::run(|h| async move { Ok(netlink::link_by_name(&h, &name).await?.and_then(|l| netlink::alias(&l))) })?;
    match me.check(bridge, found.as_deref()) {
        Err(NetError::OwnedByOtherRoot { owner, .. }) => Ok(Some(owner)),
        _ => Ok(None),
    }
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

/// The route other nodes (or the router) need to reach this node's pods: "subnet via address".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerRoute {
    pub subnet: ipnet::Ipv4Net,
    pub via: Ipv4Addr,
    /// The node interface that address is on.
    pub dev: String,
}

impl std::fmt::Display for PeerRoute {
    /// In `ip route add` syntax, so the line can be pasted on the router.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.subnet, self.via)
    }
}

/// This node's pod subnet and the node address peers should send it to: the first IPv4 address
/// of `via_dev`, or of the interface of the default route — the node's address on the network
/// the other nodes share (F7's "pod slice X via node Y's eth0"). Read from the kernel.
pub fn peer_route(root: &Path, via_dev: Option<&str>) -> Result<PeerRoute, NetError> {
    let cfg = NetConfig::load(root)?;
    let via_dev = via_dev.map(str::to_string);
    let (dev, via) = netlink::run(|h| async move {
        let all = netlink::links(&h).await?;
        let link = match &via_dev {
            Some(d) => all.iter().find(|l| &netlink::name(l) == d).ok_or_else(|| NetError::Config(format!("no interface {d} on this node")))?,
            None => {
                let routes = netlink::routes(&h).await?;
                let oif = routes.iter().find(|r| r.dst.prefix_len() == 0).and_then(|r| r.oif).ok_or_else(|| {
                    NetError::Config("this node has no default route; name the interface peers reach it on with --via-dev".into())
                })?;
                all.iter().find(|l| l.header.index == oif).ok_or_else(|| NetError::Config(format!("default route via unknown link {oif}")))?
            }
        };
        let name = netlink::name(link);
        let addrs = netlink::addresses(&h, link.header.index).await?;
        let (ip, _) = addrs.first().ok_or_else(|| NetError::Config(format!("interface {name} has no IPv4 address")))?;
        Ok((name, *ip))
    })?;
    Ok(PeerRoute { subnet: cfg.subnet, via, dev })
}

/// One pod's port on the bridge, as seen by `status`.
#[derive(Debug, Clone, Serialize)]
pub struct PortStatus {
    pub host_veth: String,
    pub oper_up: bool,
    pub pod_id: Option<String>,
    pub ip: Option<Ipv4Addr>,
}

/// The live state of the node network, read from the kernel and IPAM.
#[derive(Debug, Clone, Serialize)]
pub struct NetStatus {
    pub config: NetConfig,
    pub bridge_present: bool,
    pub bridge_addresses: Vec<String>,
    pub ports: Vec<PortStatus>,
    pub allocations: Vec<(Ipv4Addr, String)>,
    pub host_ports: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni: Option<cni::CniStatus>,
}

pub fn status(root: &Path) -> Result<NetStatus, NetError> {
    let cfg = NetConfig::load(root)?;
    if let Some(c) = &cfg.cni {
        let st = cni::status(root, c)?;
        let allocations = st.attachments.iter().filter_map(|(id, ip, _)| Some((ip.parse().ok()?, id.clone()))).collect();
        return Ok(NetStatus { config: cfg.clone(), bridge_present: false, bridge_addresses: vec![], ports: vec![], allocations, host_ports: vec![], cni: Some(st) });
    }
    let allocs = ipam::allocations(root)?;
    let bridge = cfg.bridge.clone();
    let (bridge_present, bridge_addresses, veths) = netlink::run(|h| async move {
        let all = netlink::links(&h).await?;
        let Some(br) = all.iter().find(|l| netlink::name(l) == bridge) else { return Ok((false, vec![], vec![])) };
        let idx = br.header.index;
        let addrs = netlink::addresses(&h, idx).await?.iter().map(|(ip, p)| format!("{ip}/{p}")).collect();
        let ports = all.iter().filter(|l| netlink::controller(l) == Some(idx)).map(|l| (netlink::name(l), netlink::oper_up(l))).collect::<Vec<_>>();
        Ok((true, addrs, ports))
    })?;
    let ports = veths
        .into_iter()
        .map(|(name, up)| {
            let a = allocs.iter().find(|a| a.pod_id.len() == 32 && host_veth_name(&a.pod_id) == name);
            PortStatus { host_veth: name, oper_up: up, pod_id: a.map(|a| a.pod_id.clone()), ip: a.map(|a| a.ip) }
        })
        .collect();
    let host_ports = nft::host_ports()?
        .iter()
        .map(|h| h.to_string())
        .collect();
    Ok(NetStatus {
        config: cfg,
        bridge_present,
        bridge_addresses,
        ports,
        allocations: allocs.into_iter().map(|a| (a.ip, a.pod_id)).collect(),
        host_ports,
        cni: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
