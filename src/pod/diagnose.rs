//! Why did a container of a pod exit? Run by the container's monitor when the container ends
//! non-zero. If the container declared ports (a manifest's containerPort) or its log says an
//! address was in use, read the pod network namespace's socket table and name the container of
//! the pod that holds the port — more than "exited 1", which is all other runtimes say.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::container::ExitRecord;
use crate::network::Protocol;

use super::model::{ContainerRecord, LOG_FILE, PodRecord, proto_name};
use super::sandbox;

/// A bound socket in the pod's network namespace: TCP in LISTEN, or any bound UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub proto: Protocol,
    pub port: u16,
    pub inode: u64,
}

/// Parse a /proc/net/{tcp,tcp6,udp,udp6} table.
pub fn parse_socket_table(text: &str, proto: Protocol) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let Some(port) = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) else { continue };
        let listening = match proto {
            Protocol::Tcp => f[3] == "0A",
            Protocol::Udp => f[3] == "07" && port != 0,
        };
        if listening
            && let Ok(inode) = f[9].parse() {
                out.push(Listener { proto, port, inode });
            }
    }
    out
}

/// Bound sockets of the network namespace that process `pid` is in.
pub fn listeners(pid: i32) -> Vec<Listener> {
    let mut v = Vec::new();
    for (file, proto) in [("tcp", Protocol::Tcp), ("tcp6", Protocol::Tcp), ("udp", Protocol::Udp), ("udp6", Protocol::Udp)] {
        if let Ok(t) = fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
            v.extend(parse_socket_table(&t, proto));
        }
    }
    v.sort_by_key(|l| (l.port, l.proto));
    v.dedup_by_key(|l| (l.port, l.proto));
    v
}

fn ns_of(pid: i32, ns: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok().map(|l| l.to_string_lossy().into_owned())
}

/// Who holds each socket inode: (container name, pid). A process belongs to the container whose
/// init shares its mount namespace (each container of a pod has its own).
fn holders(pod_dir: &Path, net_ns_of: i32) -> HashMap<u64, (String, i32)> {
    let mut by_mnt: HashMap<String, String> = HashMap::new();
    for name in crate::state::list_dir(&pod_dir.join("containers")).unwrap_or_default() {
        let rec: Option<ContainerRecord> = crate::state::read_json_opt(&pod_dir.join("containers").join(&name).join("container.json")).ok().flatten();
        if let Some(p) = rec.and_then(|r| r.pid).filter(|p| p.alive())
            && let Some(m) = ns_of(p.pid, "mnt") {
                by_mnt.insert(m, name);
            }
    }
    let mut out = HashMap::new();
    let Some(net) = fs::metadata(format!("/proc/{net_ns_of}/ns/net")).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m)) else { return out };
    for pid in sandbox::processes_in_netns(net) {
        let Some(container) = ns_of(pid, "mnt").and_then(|m| by_mnt.get(&m).cloned()) else { continue };
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let target = fs::read_link(fd.path()).map(|t| t.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(ino) = target.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')).and_then(|s| s.parse().ok()) {
                out.entry(ino).or_insert((container.clone(), pid));
            }
        }
    }
    out
}

fn log_says_in_use(state_dir: &Path) -> bool {
    let Ok(data) = fs::read(state_dir.join(LOG_FILE)) else { return false };
    let tail = String::from_utf8_lossy(&data[data.len().saturating_sub(4096)..]).to_lowercase();
    tail.contains("in use") || tail.contains("eaddrinuse")
}

/// The monitor's exit hook (see `container::monitor::ExitHook`).
pub fn on_exit(state_dir: &Path, rec: &mut ExitRecord) {
    if rec.code == 0 {
        return;
    }
    let (Some(me), Some(pod_dir)) = (state_dir.file_name().map(|n| n.to_string_lossy().into_owned()), state_dir.parent().and_then(|p| p.parent())) else { return };
    let Ok(Some(pod)) = crate::state::read_json_opt::<PodRecord>(&pod_dir.join("pod.json")) else { return };
    let declared = pod.declared_ports.get(&me).cloned().unwrap_or_default();
    let in_use = log_says_in_use(state_dir);
    if declared.is_empty() && !in_use {
        return;
    }
    let Some(pause) = pod.pause.filter(|p| p.alive()) else { return };
    let socks = listeners(pause.pid);
    let owners = holders(pod_dir, pause.pid);
    let wanted = |l: &Listener| declared.is_empty() || declared.contains(&(l.port, l.proto));
    let held: Vec<String> = socks
        .iter()
        .filter(|l| wanted(l))
        .filter_map(|l| owners.get(&l.inode).filter(|(c, _)| *c != me).map(|(c, pid)| format!("port {}/{} is held by container {c} (pid {pid}) of this pod", l.port, proto_name(l.proto))))
        .collect();
    if !held.is_empty() {
        rec.diagnosis = Some(held.join("; "));
    } else if in_use {
        rec.diagnosis = Some("an address was in use, but no other container of this pod holds a port it declared (a process outside the containers?)".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_tables_are_parsed() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(parse_socket_table(tcp, Protocol::Tcp), vec![Listener { proto: Protocol::Tcp, port: 80, inode: 12345 }]);
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  5: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0\n";
        assert_eq!(parse_socket_table(udp, Protocol::Udp), vec![Listener { proto: Protocol::Udp, port: 53, inode: 777 }]);
    }
}
