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

/// A host-port element as found in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: Protocol,
    pub host_port: u16,
    pub ip: Ipv4Addr,
    pub container_port: u16,
    pub pod_id: String,
}

/// The host ports currently mapped; none if our table does not exist yet.
pub fn host_ports() -> Result<Vec<HostPort>, NetError> {
    let out = Command::new("nft")
        .args(["-j", "list", "map"])
        .args(TABLE.split(' '))
        .arg("hostports")
        .output()
        .map_err(|e| NetError::Nft(format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(Vec::new());
        }
        return Err(NetError::Nft(err.trim().to_string()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| NetError::Nft(format!("parsing `nft -j list map`: {e}")))?;
    let mut found = Vec::new();
    let maps = v["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get("map"));
    for elem in maps.flat_map(|m| m["elem"].as_array().cloned().unwrap_or_default()) {
        // [{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "ID"}}, {"concat": ["10.244.0.5", 80]}]
        let parsed = (|| {
            let key = &elem[0]["elem"];
            let protocol = match key["val"]["concat"][0].as_str()? {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => return None,
            };
            Some(HostPort {
                protocol,
                host_port: key["val"]["concat"][1].as_u64()? as u16,
                ip: elem[1]["concat"][0].as_str()?.parse().ok()?,
                container_port: elem[1]["concat"][1].as_u64()? as u16,
                pod_id: key["comment"].as_str().unwrap_or_default().to_string(),
            })
        })();
        found.extend(parsed);
    }
    Ok(found)
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} -> {}:{} (pod {})", self.host_port, proto(self.protocol), self.ip, self.container_port, self.pod_id)
    }
}

/// Refuse host ports another pod already holds, before anything is changed. (The atomic
/// `create element` at the end of setup still catches a racing pod.)
pub fn check_ports_free(pod_id: &str, ports: &[PortMapping]) -> Result<(), NetError> {
    for (i, p) in ports.iter().enumerate() {
        if ports[..i].iter().any(|q| q.host_port == p.host_port && q.protocol == p.protocol) {
            return Err(NetError::PortTaken { port: p.host_port, proto: proto(p.protocol), owner: pod_id.into() });
        }
    }
    if ports.is_empty() {
        return Ok(());
    }
    let taken = host_ports()?;
    for p in ports {
        if let Some(h) = taken.iter().find(|h| h.host_port == p.host_port && h.protocol == p.protocol) {
            return Err(NetError::PortTaken { port: p.host_port, proto: proto(p.protocol), owner: h.pod_id.clone() });
        }
    }
    Ok(())
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

/// Where teardowns are counted (one line per pod) until the next prune.
fn stale_path(root: &Path) -> PathBuf {
    root.join("network/nft-stale")
}

/// Where a pod's anti-spoofing keys (`ifindex mac ip`) are kept while it lives, so that the
/// prune can delete exactly its elements instead of listing the sets (whose size grows with the
/// pods on the node). None for an id that is not a plain file name.
fn port_keys_path(root: &Path, pod_id: &str) -> Option<PathBuf> {
    let plain = !pod_id.is_empty() && pod_id != "." && pod_id != ".." && !pod_id.contains(['/', ' ', '\n']);
    plain.then(|| root.join("network/nft-ports").join(pod_id))
}

/// Keep `port`'s keys for the prune. Best effort: without them the prune lists the sets.
fn note_port_keys(root: &Path, pod_id: &str, port: &PodPort) {
    let Some(path) = port_keys_path(root, pod_id) else { return };
    let keys = format!("{} {} {}", port.ifindex, mac_text(&port.mac), port.ip);
    if std::fs::write(&path, &keys).is_err() {
        let _ = path.parent().map(std::fs::create_dir_all);
        let _ = std::fs::write(&path, &keys);
    }
}

fn forget_port_keys(root: &Path, pod_id: &str) {
    if let Some(path) = port_keys_path(root, pod_id) {
        let _ = std::fs::remove_file(path);
    }
}

/// Note that `pod_id`'s port is gone (or going): its anti-spoofing elements are due for a prune.
/// The line carries the port's keys when they were kept (`note_port_keys`). Best effort: a line
/// lost only delays the prune.
pub fn mark_stale(root: &Path, pod_id: &str) {
    let keys = port_keys_path(root, pod_id).and_then(|p| std::fs::read_to_string(p).ok()).filter(|k| !k.contains('\n'));
    let line = match keys {
        Some(k) => format!("{pod_id} {k}\n"),
        None => format!("{pod_id}\n"),
    };
    let noted = std::fs::OpenOptions::new().create(true).append(true).open(stale_path(root)).and_then(|mut f| f.write_all(line.as_bytes()));
    if noted.is_ok() {
        forget_port_keys(root, pod_id);
    }
}

/// Prune when `PRUNE_EVERY` teardowns were noted since the last prune. Best effort: a failed
/// prune leaves elements that match nothing, for the next one.
fn prune_if_due(root: &Path) {
    let path = stale_path(root);
    // Every line is at least a 32-character pod id and a newline: a stat rules most creates out.
    if !std::fs::metadata(&path).is_ok_and(|m| m.len() >= PRUNE_EVERY * 33) {
        return;
    }
    let Ok(noted) = std::fs::read_to_string(&path) else { return };
    if (noted.lines().count() as u64) < PRUNE_EVERY {
        return;
    }
    let _ = std::fs::remove_file(&path);
    match StaleKeys::parse(&noted) {
        Some(stale) => {
            let _ = prune_noted(root, &stale);
        }
        None => {
            let _ = prune();
        }
    }
}

/// A noted port: its pod and its anti-spoofing keys.
#[derive(Debug, Clone, PartialEq)]
struct StalePort {
    pod: String,
    ifindex: u32,
    mac: String,
    ip: Ipv4Addr,
}

/// The keys of the noted ports, one entry per pod.
#[derive(Debug, PartialEq)]
struct StaleKeys(Vec<StalePort>);

impl StaleKeys {
    /// None if a line has no keys (noted by an older podbox, or kept keys lost): then only a
    /// listing finds that pod's elements.
    fn parse(noted: &str) -> Option<StaleKeys> {
        let mut keys: Vec<StalePort> = Vec::new();
        for line in noted.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(' ').collect();
            let [pod, idx, mac, ip] = f[..] else { return None };
            let mac_ok = mac.len() == 17 && mac.split(':').all(|x| x.len() == 2 && u8::from_str_radix(x, 16).is_ok());
            let entry = StalePort { pod: pod.to_string(), ifindex: idx.parse().ok()?, mac: mac_ok.then(|| mac.to_string())?, ip: ip.parse().ok()? };
            // A pod noted twice (a rollback, then a teardown) is deleted once.
            if !keys.contains(&entry) {
                keys.push(entry);
            }
        }
        Some(StaleKeys(keys))
    }

    /// One transaction deleting the elements of these ports.
    fn delete_script(&self) -> String {
        let b = BRIDGE_TABLE;
        let list = |f: &dyn Fn(&StalePort) -> String| self.0.iter().map(f).collect::<Vec<_>>().join(", ");
        format!(
            "delete element {b} pod_ports {{ {} }}\n\
             delete element {b} pod_mac {{ {} }}\n\
             delete element {b} pod_ip {{ {} }}\n",
            list(&|p| p.ifindex.to_string()),
            list(&|p| format!("{} . {}", p.ifindex, p.mac)),
            list(&|p| format!("{} . {}", p.ifindex, p.ip))
        )
    }
}

/// Whether an interface with this index exists in this network namespace (one ioctl, no dump).
fn index_live(index: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `name`.
    !unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null()
}

/// Delete the noted ports' elements by key: the cost follows the ports noted, not the pods on
/// the node. A port whose interface still exists (its teardown failed to remove it) keeps its
/// elements and stays noted. If the delete fails (an element already gone: the transaction is
/// all or nothing), fall back to the listing prune.
fn prune_noted(root: &Path, stale: &StaleKeys) -> Result<(), NetError> {
    let (live, gone): (Vec<_>, Vec<_>) = stale.0.iter().cloned().partition(|p| index_live(p.ifindex));
    for p in &live {
        let line = format!("{} {} {} {}\n", p.pod, p.ifindex, p.mac, p.ip);
        let _ = std::fs::OpenOptions::new().create(true).append(true).open(stale_path(root)).and_then(|mut f| f.write_all(line.as_bytes()));
    }
    if gone.is_empty() {
        return Ok(());
    }
    apply(&StaleKeys(gone).delete_script()).or_else(|_| prune())
}

/// A set element's key as nft prints it in JSON → as nft reads it in a script.
fn key_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(o) => {
            let parts: Option<Vec<String>> = o.get("concat")?.as_array()?.iter().map(key_text).collect();
            Some(parts?.join(" . "))
        }
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(t) => {
            let plain = t.parse::<u32>().is_ok() || t.parse::<Ipv4Addr>().is_ok() || (t.len() == 17 && t.split(':').all(|x| x.len() == 2 && u8::from_str_radix(x, 16).is_ok()));
            // An interface name (nft shows an existing interface's index by name).
            Some(if plain { t.clone() } else { format!("\"{}\"", t.replace('"', "")) })
        }
        _ => None,
    }
}

/// The interface index of an element key (its first part) if nft printed it as a number, which it
/// does when no interface has that index any more.
fn vanished_index(key: &serde_json::Value) -> Option<u32> {
    let first = key.get("concat").and_then(|c| c.get(0)).unwrap_or(key);
    match first {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::String(t) => t.parse().ok(),
        _ => None,
    }
}

/// Delete the anti-spoofing elements whose port no longer exists, in one transaction.
fn prune() -> Result<(), NetError> {
    let out = Command::new("nft")
        .args(["-j", "list", "table"])
        .args(BRIDGE_TABLE.split(' '))
        .output()
        .map_err(|e| NetError::Nft(format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return if err.contains("No such file or directory") { Ok(()) } else { Err(NetError::Nft(err.trim().to_string())) };
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| NetError::Nft(format!("parsing `nft -j list table`: {e}")))?;
    // nft shows the index of an existing interface by its name, so only numbers can be stale;
    // they are checked against the kernel's links all the same. (The kernel hands out indexes
    // cyclically, so an old index is never a new port's.)
    let live = live_indexes()?;
    let mut script = String::new();
    for set in v["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get("set")) {
        let Some(name) = set["name"].as_str().filter(|n| PORT_SETS.contains(n)) else { continue };
        let doomed: Vec<String> = set["elem"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e.get("elem").map(|x| &x["val"]).unwrap_or(e))
            .filter(|key| vanished_index(key).is_some_and(|i| !live.contains(&i)))
            .filter_map(key_text)
            .collect();
        if !doomed.is_empty() {
            script += &format!("delete element {BRIDGE_TABLE} {name} {{ {} }}\n", doomed.join(", "));
        }
    }
    if script.is_empty() { Ok(()) } else { apply(&script) }
}

/// The interface indexes of this network namespace.
fn live_indexes() -> Result<Vec<u32>, NetError> {
    super::netlink::run(|h| async move { Ok(super::netlink::links(&h).await?.iter().map(|l| l.header.index).collect()) })
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
