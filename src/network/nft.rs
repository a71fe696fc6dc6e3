//! What nftables does for pods: NAT — masquerade and host ports — and the loopback guard in a
//! table of our own (`table ip podbox`), and per-port anti-spoofing on the bridge (`table bridge
//! podbox`).
//!
//! Why the `nft` binary fed with `nft -f -`: a script is applied as one kernel transaction, so the
//! table is never seen half-written and two podbox processes cannot interleave their changes; no
//! maintained Rust crate speaks the nf_tables netlink protocol at the level we need (sets, maps,
//! element comments), and the generated text is easy to read and debug with `nft list`.
//!
//! Layout: the base chains and the no-masquerade set follow the node config and are rewritten (in
//! one transaction) on every setup; host ports are elements of the map `hostports`
//! (`proto . port : pod_ip . pod_port`) whose comment is the pod id. `create element` fails if the
//! port is taken, so two pods can never get one host port even when racing, and teardown/gc find a
//! pod's ports by that comment without any other record.
//!
//! Anti-spoofing: a frame entering the bridge from a pod's port must carry that pod's MAC address
//! (Ethernet and ARP sender) and IPv4 address (IP source and ARP sender); other ether types than
//! IPv4, ARP and IPv6 and IPv6 router advertisements are dropped. The pod ports and their
//! addresses are elements of three sets keyed by the host veth's interface index, so adding a pod
//! adds three elements and rewrites nothing. An index is not handed out again by the kernel, so
//! elements of a removed veth match nothing; deleting them costs an nft transaction with an RCU
//! wait (~12 ms), which `pod rm` does not pay: teardown notes the pod (`mark_stale`) and every
//! `PRUNE_EVERY` teardowns the next setup deletes the elements of vanished ports in one go (`gc`
//! does too). Setup keeps each pod's keys (`network/nft-ports/ID`) and the note carries them, so
//! that prune deletes those elements by key, without listing sets that grow with the pods.

mod hostports;
mod stale;

use stale::*;
pub use hostports::{HostPort, host_ports, check_ports_free};
pub use stale::mark_stale;

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::config::NetConfig;
use super::{NetError, PortMapping, Protocol};

const TABLE: &str = "ip podbox";
const BRIDGE_TABLE: &str = "bridge podbox";
/// The anti-spoofing sets; every pod has one element in each.
const PORT_SETS: [&str; 3] = ["pod_ports", "pod_mac", "pod_ip"];
/// Teardowns between two prunes of the anti-spoofing sets.
const PRUNE_EVERY: u64 = 32;

/// A pod's port on the bridge and the only addresses it may send from.
#[derive(Debug, Clone, Copy)]
pub struct PodPort {
    /// Interface index of the host-side veth.
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// Run an nft script as one transaction.
fn apply(script: &str) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Nft(format!("cannot run nft: {e}")))?;
    child.stdin.take().unwrap().write_all(script.as_bytes()).map_err(|e| NetError::Nft(format!("writing to nft: {e}")))?;
    let out = child.wait_with_output().map_err(|e| NetError::Nft(format!("waiting for nft: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// The table skeleton plus the config-driven chains, replaced atomically. Host-port elements are
/// kept: `add map` leaves an existing map alone.
fn base_script(cfg: &NetConfig) -> String {
    let subnet = cfg.subnet;
    let br = &cfg.bridge;
    let mut s = format!(
        "add table {TABLE}\n\
         add map {TABLE} hostports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         add set {TABLE} nomasq {{ type ipv4_addr; flags interval; }}\n\
         add chain {TABLE} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
         add chain {TABLE} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush set {TABLE} nomasq\n\
         flush chain {TABLE} prerouting\n\
         flush chain {TABLE} output\n\
         flush chain {TABLE} postrouting\n"
    );
    if !cfg.no_masquerade_dst.is_empty() {
        let list: Vec<String> = cfg.no_masquerade_dst.iter().map(|n| n.to_string()).collect();
        s += &format!("add element {TABLE} nomasq {{ {} }}\n", list.join(", "));
    }
    // Host ports: only traffic addressed to the node itself (any of its addresses).
    let dnat = "fib daddr type local meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @hostports";
    s += &format!("add rule {TABLE} prerouting {dnat}\n");
    s += &format!("add rule {TABLE} output {dnat}\n");
    // A host port used from the node's loopback: 127.0.0.1 cannot leave through the bridge, so it
    // is rewritten to the bridge address (route_localnet on the bridge lets the kernel route it).
    s += &format!("add rule {TABLE} postrouting oifname \"{br}\" ip saddr 127.0.0.0/8 ct status dnat masquerade\n");
    // A pod reaching a host port that leads back into the pod network (its own, hairpin, or a
    // neighbour's): without SNAT the reply would go straight back, bypassing the DNAT.
    s += &format!("add rule {TABLE} postrouting oifname \"{br}\" ip saddr {subnet} ct status dnat masquerade\n");
    // Pod to pod stays untranslated. br_netfilter sends bridged frames through these hooks too.
    s += &format!("add rule {TABLE} postrouting ip saddr {subnet} ip daddr {subnet} return\n");
    if cfg.masquerade {
        s += &format!("add rule {TABLE} postrouting ip saddr {subnet} ip daddr != @nomasq masquerade\n");
    }
    // The loopback guard (CVE-2020-8558 class): route_localnet on the bridge, needed for host
    // ports used from 127.0.0.1, would also route a pod's frame addressed to 127.0.0.1 to the
    // node's loopback services. Anything for 127.0.0.0/8 arriving elsewhere than on `lo` is
    // dropped here, before conntrack and NAT (priority raw): the host-port replies are unaffected,
    // as they still carry the bridge address here and become 127.0.0.1 only in the NAT hook.
    s += &format!(
        "add chain {TABLE} loopback_guard {{ type filter hook prerouting priority raw; policy accept; }}\n\
         flush chain {TABLE} loopback_guard\n\
         add rule {TABLE} loopback_guard iifname != \"lo\" ip daddr 127.0.0.0/8 drop\n"
    );
    s + &bridge_script()
}

/// The anti-spoofing table; its set elements are kept (`add set` leaves an existing set alone).
fn bridge_script() -> String {
    let b = BRIDGE_TABLE;
    let mut s = format!(
        "add table {b}\n\
         add set {b} pod_ports {{ type iface_index; }}\n\
         add set {b} pod_mac {{ type iface_index . ether_addr; }}\n\
         add set {b} pod_ip {{ type iface_index . ipv4_addr; }}\n\
         add chain {b} antispoof {{ type filter hook prerouting priority filter; policy accept; }}\n\
         flush chain {b} antispoof\n"
    );
    for rule in [
        // Other bridge ports (an uplink someone added) are not podbox's to police.
        "iif != @pod_ports accept",
        // No VLAN tags or other protocols that would carry addresses past the checks below.
        "ether type != { ip, arp, ip6 } drop",
        "iif . ether saddr != @pod_mac drop",
        "ether type arp iif . arp saddr ether != @pod_mac drop",
        "ether type arp iif . arp saddr ip != @pod_ip drop",
        "ether type ip iif . ip saddr != @pod_ip drop",
        // A pod is never a router: its advertisements reach neither the node nor other pods.
        "icmpv6 type nd-router-advert drop",
    ] {
        s += &format!("add rule {b} antispoof {rule}\n");
    }
    s
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// `port`'s anti-spoofing elements for the netlink fast path (nfset.rs): the keys as the kernel
/// stores them — the interface index in host byte order, then the address, each field padded
/// to 4 bytes.
fn port_element_keys(pod_id: &str, port: &PodPort) -> Vec<super::nfset::Element> {
    let idx = port.ifindex.to_ne_bytes();
    let mut mac_key = idx.to_vec();
    mac_key.extend_from_slice(&port.mac);
    mac_key.extend_from_slice(&[0, 0]);
    let mut ip_key = idx.to_vec();
    ip_key.extend_from_slice(&port.ip.octets());
    [("pod_ports", idx.to_vec()), ("pod_mac", mac_key), ("pod_ip", ip_key)]
        .into_iter()
        .map(|(set, key)| super::nfset::Element { set, key, comment: pod_id.to_string() })
        .collect()
}

/// The script adding `port`'s anti-spoofing elements, tagged with the pod id.
fn port_elements(pod_id: &str, port: &PodPort) -> String {
    let (b, i) = (BRIDGE_TABLE, port.ifindex);
    format!(
        "add element {b} pod_ports {{ {i} comment \"{pod_id}\" }}\n\
         add element {b} pod_mac {{ {i} . {} comment \"{pod_id}\" }}\n\
         add element {b} pod_ip {{ {i} . {} comment \"{pod_id}\" }}\n",
        mac_text(&port.mac),
        port.ip
    )
}

/// Where `apply_pod` notes which base table it installed in which network namespace.
fn base_stamp_path(root: &Path) -> PathBuf {
    root.join("network/nft-base.applied")
}

/// The stamp's content: the node's network namespace (its nsfs inode) and the base script.
fn base_stamp(cfg: &NetConfig) -> Option<String> {
    let ino = std::fs::metadata("/proc/self/ns/net").ok()?.ino();
    Some(format!("{ino}\n{}", base_script(cfg)))
}

/// Forget that the base table is installed: the next `apply_pod` rewrites it.
pub fn forget_base(root: &Path) {
    let _ = std::fs::remove_file(base_stamp_path(root));
}

/// Install/refresh the base tables, add the anti-spoofing elements of `port` and the host ports
/// `ports` for `pod_id`, in one transaction.
///
/// Performance: rewriting the base table flushes its chains, and that transaction waits for RCU
/// (~10-20 ms per pod). So when the stamp says this very base table was installed in this network
/// namespace, only the pod's elements are added: over netlink without running nft when the
/// pod has no host ports (nfset.rs), else as an element-only nft script (~2 ms, no RCU wait). (A config change changes
/// the script, so the stamp no longer matches; `podbox gc` drops the stamp; and should the tables
/// have been removed from outside, the failed element-only transaction is retried with them.)
pub fn apply_pod(root: &Path, cfg: &NetConfig, pod_id: &str, port: &PodPort, ports: &[PortMapping]) -> Result<(), NetError> {
    let stamp = base_stamp(cfg);
    let mut elements = port_elements(pod_id, port);
    for p in ports {
        elements += &format!(
            "create element {TABLE} hostports {{ {} . {} comment \"{pod_id}\" : {} . {} }}\n",
            proto(p.protocol),
            p.host_port,
            port.ip,
            p.container_port
        );
    }
    prune_if_due(root);
    note_port_keys(root, pod_id, port);
    let added = add_pod_elements(root, cfg, stamp, &elements, pod_id, port, ports);
    if added.is_err() {
        forget_port_keys(root, pod_id);
    }
    added
}

fn add_pod_elements(root: &Path, cfg: &NetConfig, stamp: Option<String>, elements: &str, pod_id: &str, port: &PodPort, ports: &[PortMapping]) -> Result<(), NetError> {
    let base_current = stamp.is_some() && std::fs::read_to_string(base_stamp_path(root)).ok() == stamp;
    // The common case, a pod without host ports on a node whose tables are in place: three
    // elements over netlink, no nft process.
    if base_current && ports.is_empty() && super::nfset::add_elements(super::nfset::FAMILY_BRIDGE, "podbox", &port_element_keys(pod_id, port)).is_ok() {
        return Ok(());
    }
    if base_current && apply(elements).is_ok() {
        return Ok(());
    }
    apply(&(base_script(cfg) + elements))?;
    if let Some(stamp) = stamp {
        // Best effort: without the stamp the next pod just rewrites the table again.
        let _ = crate::state::write_atomic(&base_stamp_path(root), stamp.as_bytes());
    }
    Ok(())
}

/// Rewrite the config-driven rules after a config change, if our table exists (otherwise the next
/// setup creates it). Host ports are kept.
pub fn refresh(cfg: &NetConfig) -> Result<(), NetError> {
    let exists = Command::new("nft")
        .args(["list", "table"])
        .args(TABLE.split(' '))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| NetError::Nft(format!("cannot run nft: {e}")))?
        .success();
    if exists { apply(&base_script(cfg)) } else { Ok(()) }
}

/// Delete the host ports whose owner matches `remove_if`.
fn remove_where(remove_if: impl Fn(&str) -> bool) -> Result<(), NetError> {
    let doomed: Vec<String> = host_ports()?
        .into_iter()
        .filter(|h| remove_if(&h.pod_id))
        .map(|h| format!("{} . {}", proto(h.protocol), h.host_port))
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    apply(&format!("delete element {TABLE} hostports {{ {} }}\n", doomed.join(", ")))
}

/// Remove `pod_id`'s host ports; none is success.
pub fn remove_pod(pod_id: &str) -> Result<(), NetError> {
    remove_where(|owner| owner == pod_id)
}

/// Remove host ports of pods not in `live`, and the anti-spoofing elements of vanished ports.
pub fn gc(root: &Path, live: &[String]) -> Result<(), NetError> {
    let ports = remove_where(|owner| !live.iter().any(|l| l == owner));
    let _ = std::fs::remove_file(stale_path(root));
    // Kept keys of pods that are gone: the listing prune below deletes their elements.
    if let Ok(dir) = std::fs::read_dir(root.join("network/nft-ports")) {
        for e in dir.flatten() {
            if !live.iter().any(|l| e.file_name() == l.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    ports.and(prune())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_parse_and_delete_script() {
        let noted = "aa 7 02:00:0a:f4:00:05 10.244.0.5\nbb 9 02:00:0a:f4:00:06 10.244.0.6\naa 7 02:00:0a:f4:00:05 10.244.0.5\n";
        let k = StaleKeys::parse(noted).unwrap();
        assert_eq!(k.0.len(), 2);
        let s = k.delete_script();
        assert!(s.contains("delete element bridge podbox pod_ports { 7, 9 }"), "{s}");
        assert!(s.contains("delete element bridge podbox pod_mac { 7 . 02:00:0a:f4:00:05, 9 . 02:00:0a:f4:00:06 }"), "{s}");
        assert!(s.contains("delete element bridge podbox pod_ip { 7 . 10.244.0.5, 9 . 10.244.0.6 }"), "{s}");
        // A line without keys (an older podbox's note) needs the listing prune.
        assert_eq!(StaleKeys::parse("aa 7 02:00:0a:f4:00:05 10.244.0.5\nbb\n"), None);
        assert_eq!(StaleKeys::parse("aa 7 zz 10.244.0.5\n"), None);
    }

    #[test]
    fn base_script_keeps_pod_to_pod_untranslated() {
        let cfg = NetConfig::default();
        let s = base_script(&cfg);
        let ret = s.find("ip daddr 10.244.0.0/24 return").unwrap();
        let masq = s.find("ip daddr != @nomasq masquerade").unwrap();
        assert!(ret < masq);
        assert!(s.contains("add element ip podbox nomasq { 10.0.0.0/8 }"));
        let off = NetConfig { masquerade: false, ..cfg };
        assert!(!base_script(&off).contains("@nomasq masquerade"));
    }
}
