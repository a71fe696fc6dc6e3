//! IPAM for `podbox-cni`, on host-local's on-disk layout so that either can take over a node's
//! store: `<dataDir>/<network>/<ip>` holds "<containerID>\r\n<ifname>", `last_reserved_ip.0`
//! the round-robin position, `lock` the flock that serialises allocators.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::CniError;

const LAST: &str = "last_reserved_ip.0";

/// An address range of a subnet, host-local's `ranges` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    /// Never handed out.
    pub gateway: Ipv4Addr,
}

/// One network's store, locked while this value lives.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

/// An address held by (container, interface).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub ip: Ipv4Addr,
    pub container_id: String,
    pub ifname: String,
}

impl Store {
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, CniError> {
        if network.is_empty() || network.contains('/') || network.starts_with('.') {
            return Err(CniError::Config(format!("network name {network:?} cannot name a directory")));
        }
        let dir = data_dir.join(network);
        std::fs::create_dir_all(&dir).map_err(|e| CniError::io(&dir, e))?;
        let path = dir.join("lock");
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| CniError::io(&path, e))?;
        // SAFETY: flock on a descriptor we own; it is released when the file closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(CniError::io(&path, std::io::Error::last_os_error()));
        }
        Ok(Store { dir, _lock: f })
    }

    /// Every address held, in address order. host-local's older single-line files (the ID
    /// only) count as held by that ID on any interface name.
    pub fn all(&self) -> Result<Vec<Held>, CniError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| CniError::io(&self.dir, e))?;
        let mut out = Vec::new();
        for f in rd.flatten() {
            let Some(ip) = f.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else { continue };
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            let mut lines = text.split("\r\n").map(str::trim);
            let container_id = lines.next().unwrap_or_default().to_string();
            let ifname = lines.next().unwrap_or_default().to_string();
            out.push(Held { ip, container_id, ifname });
        }
        out.sort_by_key(|h| u32::from(h.ip));
        Ok(out)
    }

    /// The address of (container, ifname), if it holds one.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Option<Ipv4Addr>, CniError> {
        Ok(self.all()?.into_iter().find(|h| h.container_id == container_id && (h.ifname == ifname || h.ifname.is_empty())).map(|h| h.ip))
    }

    /// Reserve the next free address of `range` after the last one reserved (round robin).
    /// The file appears complete or not at all: written under a temp name, then hard-linked
    /// into place, which fails if the address is taken.
    pub fn allocate(&self, range: Range, container_id: &str, ifname: &str) -> Result<Ipv4Addr, CniError> {
        let (first, last) = (u32::from(range.start), u32::from(range.end));
        if first > last {
            return Err(CniError::Config(format!("range {}-{} is empty", range.start, range.end)));
        }
        let last_path = self.dir.join(LAST);
        let start = crate::network::ipam::scan_start(&last_path, first, last);
        let tmp = self.dir.join(format!(".reserve-{}", std::process::id()));
        let mut f = File::create(&tmp).map_err(|e| CniError::io(&tmp, e))?;
        let written = f.write_all(format!("{container_id}\r\n{ifname}").as_bytes()).and_then(|_| f.sync_all());
        drop(f);
        let res = written.map_err(|e| CniError::io(&tmp, e)).and_then(|_| {
            let count = u64::from(last - first) + 1;
            for i in 0..count {
                let ip = Ipv4Addr::from(first + ((u64::from(start - first) + i) % count) as u32);
                if ip == range.gateway {
                    continue;
                }
                let path = self.dir.join(ip.to_string());
                match std::fs::hard_link(&tmp, &path) {
                    Ok(()) => {
                        // Losing the round-robin hint is harmless; the address is reserved.
                        let _ = std::fs::write(&last_path, ip.to_string());
                        return Ok(ip);
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(CniError::io(&path, e)),
                }
            }
            Err(CniError::Config(format!("no free address in {}-{}", range.start, range.end)))
        });
        let _ = std::fs::remove_file(&tmp);
        res
    }

    /// Free what (container, ifname) holds; nothing held is success. Returns what was freed.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, CniError> {
        let mut freed = Vec::new();
        for h in self.all()?.into_iter().filter(|h| h.container_id == container_id && (h.ifname == ifname || h.ifname.is_empty())) {
            let path = self.dir.join(h.ip.to_string());
            match std::fs::remove_file(&path) {
                Ok(()) => freed.push(h.ip),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(CniError::io(&path, e)),
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_local_layout_round_robin_and_release() {
        let d = std::env::temp_dir().join(format!("podbox-hostlocal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let s = Store::open(&d, "net").unwrap();
        let r = Range { start: Ipv4Addr::new(10, 5, 0, 1), end: Ipv4Addr::new(10, 5, 0, 4), gateway: Ipv4Addr::new(10, 5, 0, 1) };
        assert_eq!(s.allocate(r, "c1", "eth0").unwrap(), Ipv4Addr::new(10, 5, 0, 2));
        assert_eq!(std::fs::read_to_string(d.join("net/10.5.0.2")).unwrap(), "c1\r\neth0");
        assert_eq!(std::fs::read_to_string(d.join("net/last_reserved_ip.0")).unwrap(), "10.5.0.2");
        assert_eq!(s.allocate(r, "c2", "eth0").unwrap(), Ipv4Addr::new(10, 5, 0, 3));
        assert_eq!(s.find("c2", "eth0").unwrap(), Some(Ipv4Addr::new(10, 5, 0, 3)));
        assert_eq!(s.release("c1", "eth0").unwrap(), [Ipv4Addr::new(10, 5, 0, 2)]);
        assert!(s.release("c1", "eth0").unwrap().is_empty());
        // Round robin goes on past the address just freed, wraps, skips the gateway.
        assert_eq!(s.allocate(r, "c3", "eth0").unwrap(), Ipv4Addr::new(10, 5, 0, 4));
        assert_eq!(s.allocate(r, "c4", "eth0").unwrap(), Ipv4Addr::new(10, 5, 0, 2));
        assert!(s.allocate(r, "c5", "eth0").unwrap_err().to_string().contains("no free address"));
        // A file in host-local's older format (the ID only).
        std::fs::write(d.join("net/10.5.0.9"), "old").unwrap();
        assert_eq!(s.find("old", "eth0").unwrap(), Some(Ipv4Addr::new(10, 5, 0, 9)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
