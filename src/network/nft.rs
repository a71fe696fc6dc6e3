//! NAT for pods — masquerade and host ports — in an nftables table of our own (`table ip podbox`).
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

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::config::NetConfig;
use super::{NetError, PortMapping, Protocol};

const TABLE: &str = "ip podbox";

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
    s
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

/// Install/refresh the base table and add `ports` for `pod_id` → `ip`, in one transaction.
///
/// Performance: rewriting the base table flushes its chains, and that transaction waits for RCU
/// (~10-20 ms per pod). A pod without host ports needs nothing of its own from nftables, so when
/// the stamp says this very base table was installed in this network namespace, nft is not run
/// at all. (A config change changes the script, so the stamp no longer matches; `podbox gc`
/// drops the stamp, so a table removed from outside is put back by the next pod after a `gc`.)
pub fn apply_pod(root: &Path, cfg: &NetConfig, pod_id: &str, ip: Ipv4Addr, ports: &[PortMapping]) -> Result<(), NetError> {
    let stamp = base_stamp(cfg);
    if ports.is_empty() && stamp.is_some() && std::fs::read_to_string(base_stamp_path(root)).ok() == stamp {
        return Ok(());
    }
    let mut s = base_script(cfg);
    for p in ports {
        s += &format!(
            "create element {TABLE} hostports {{ {} . {} comment \"{pod_id}\" : {ip} . {} }}\n",
            proto(p.protocol),
            p.host_port,
            p.container_port
        );
    }
    apply(&s)?;
    if let Some(stamp) = stamp {
        // Best effort: without the stamp the next pod just rewrites the table again.
        let path = base_stamp_path(root);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, stamp).and_then(|_| std::fs::rename(&tmp, &path)).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
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

/// Remove host ports of pods not in `live`.
pub fn gc(live: &[String]) -> Result<(), NetError> {
    remove_where(|owner| !live.iter().any(|l| l == owner))
}

#[cfg(test)]
mod tests {
    use super::*;

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
