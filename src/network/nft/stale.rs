//! Set elements of pods that are gone: marked stale on teardown and pruned now and then
//! (every `PRUNE_EVERY` marks). Setup keeps each pod's keys (`network/nft-ports/ID`) and the mark
//! carries them, so a prune deletes exactly those elements; a mark without keys (an older
//! podbox's) falls back to listing the sets for interface indexes that no longer exist.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use crate::network::NetError;

use super::*;

/// Where teardowns are counted (one line per pod) until the next prune.
pub(super) fn stale_path(root: &Path) -> PathBuf {
    root.join("network/nft-stale")
}

/// Where a pod's anti-spoofing keys (`ifindex mac ip`) are kept while it lives, so that the
/// prune can delete exactly its elements instead of listing the sets (whose size grows with the
/// pods on the node). None for an id that is not a plain file name.
pub(super) fn port_keys_path(root: &Path, pod_id: &str) -> Option<PathBuf> {
    let plain = !pod_id.is_empty() && pod_id != "." && pod_id != ".." && !pod_id.contains(['/', ' ', '\n']);
    plain.then(|| root.join("network/nft-ports").join(pod_id))
}

/// Keep `port`'s keys for the prune. Best effort: without them the prune lists the sets.
pub(super) fn note_port_keys(root: &Path, pod_id: &str, port: &PodPort) {
    let Some(path) = port_keys_path(root, pod_id) else { return };
    let keys = format!("{} {} {}", port.ifindex, mac_text(&port.mac), port.ip);
    if std::fs::write(&path, &keys).is_err() {
        let _ = path.parent().map(std::fs::create_dir_all);
        let _ = std::fs::write(&path, &keys);
    }
}

pub(super) fn forget_port_keys(root: &Path, pod_id: &str) {
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
pub(super) fn prune_if_due(root: &Path) {
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
pub(super) struct StalePort {
    pod: String,
    ifindex: u32,
    mac: String,
    ip: Ipv4Addr,
}

/// The keys of the noted ports, one entry per pod.
#[derive(Debug, PartialEq)]
pub(super) struct StaleKeys(pub(super) Vec<StalePort>);

impl StaleKeys {
    /// None if a line has no keys (noted by an older podbox, or kept keys lost): then only a
    /// listing finds that pod's elements.
    pub(super) fn parse(noted: &str) -> Option<StaleKeys> {
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
    pub(super) fn delete_script(&self) -> String {
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
pub(super) fn index_live(index: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `name`.
    !unsafe { libc::if_indextoname(index, name.as_mut_ptr()) }.is_null()
}

/// Delete the noted ports' elements by key: the cost follows the ports noted, not the pods on
/// the node. A port whose interface still exists (its teardown failed to remove it) keeps its
/// elements and stays noted. If the delete fails (an element already gone: the transaction is
/// all or nothing), fall back to the listing prune.
pub(super) fn prune_noted(root: &Path, stale: &StaleKeys) -> Result<(), NetError> {
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
pub(super) fn key_text(v: &serde_json::Value) -> Option<String> {
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
pub(super) fn vanished_index(key: &serde_json::Value) -> Option<u32> {
    let first = key.get("concat").and_then(|c| c.get(0)).unwrap_or(key);
    match first {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        serde_json::Value::String(t) => t.parse().ok(),
        _ => None,
    }
}

/// Delete the anti-spoofing elements whose port no longer exists, in one transaction.
pub(super) fn prune() -> Result<(), NetError> {
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
pub(super) fn live_indexes() -> Result<Vec<u32>, NetError> {
    crate::network::netlink::run(|h| async move { Ok(crate::network::netlink::links(&h).await?.iter().map(|l| l.header.index).collect()) })
}

