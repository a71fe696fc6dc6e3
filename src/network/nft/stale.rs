//! Set elements of pods that are gone: marked stale on teardown and pruned now and then
//! (every `PRUNE_EVERY` marks), by the interface indexes that no longer exist.

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

/// Note that `pod_id`'s port is gone (or going): its anti-spoofing elements are due for a prune.
/// Best effort: a line lost only delays the prune.
pub fn mark_stale(root: &Path, pod_id: &str) {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stale_path(root))
        .and_then(|mut f| f.write_all(format!("{pod_id}\n").as_bytes()));
}

/// Prune when `PRUNE_EVERY` teardowns were noted since the last prune. Best effort: a failed
/// prune leaves elements that match nothing, for the next one.
pub(super) fn prune_if_due(root: &Path) {
    let path = stale_path(root);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() >= PRUNE_EVERY * 33) {
        let _ = std::fs::remove_file(&path);
        let _ = prune();
    }
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
