//! Host-local IP address management: one file per allocated address, named by the address and
//! holding the pod id, under `<root>/network/ipam/<subnet>/`. Files are created with O_EXCL under
//! an flock, so concurrent podbox processes never hand one address to two pods, and the state
//! survives crashes (teardown and gc need nothing but the files).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use super::NetError;
use super::config::{io_err, net_dir};

const LOCK: &str = "lock";
/// Where the round-robin search resumes, so a re-created pod does not get the address just freed.
const LAST: &str = "last_reserved_ip";
/// Temporary files of `allocate` (`.tmp-<pid>`), never names of addresses.
const TMP_PREFIX: &str = ".tmp-";

fn ipam_dir(root: &Path) -> PathBuf {
    net_dir(root).join("ipam")
}

/// `10.244.0.0/24` → `<root>/network/ipam/10.244.0.0_24`.
fn subnet_dir(root: &Path, subnet: Ipv4Net) -> PathBuf {
    ipam_dir(root).join(format!("{}_{}", subnet.network(), subnet.prefix_len()))
}

fn parse_subnet_dir(name: &str) -> Option<Ipv4Net> {
    let (ip, len) = name.split_once('_')?;
    Ipv4Net::new(ip.parse().ok()?, len.parse().ok()?).ok()
}

/// An exclusive flock on a subnet's lock file, released when dropped (the file closes).
struct Locked {
    _file: File,
}

fn lock(dir: &Path) -> Result<Locked, NetError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let path = dir.join(LOCK);
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| io_err(&path, e))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err(&path, std::io::Error::last_os_error()));
    }
    Ok(Locked { _file: f })
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub subnet: Ipv4Net,
    pub ip: Ipv4Addr,
    pub pod_id: String,
}

/// Reserve a free host address of `subnet` (never network, broadcast or `gateway`) for `pod_id`.
/// Where a scan of the addresses `first..=last` (as numbers) begins: after the one recorded in
/// `last_path` (host-local's round robin, which also keeps a freed address out of use for as long
/// as it can), wrapping around; `first` without a usable record.
pub(crate) fn scan_start(last_path: &Path, first: u32, last: u32) -> u32 {
    std::fs::read_to_string(last_path)
        .ok()
        .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .filter(|a| (first..=last).contains(a))
        .map(|a| if a == last { first } else { a + 1 })
        .unwrap_or(first)
}

pub fn allocate(root: &Path, subnet: Ipv4Net, gateway: Ipv4Addr, pod_id: &str) -> Result<Ipv4Addr, NetError> {
    let dir = subnet_dir(root, subnet);
    let _guard = lock(&dir)?;
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    let last_path = dir.join(LAST);
    let start = scan_start(&last_path, first, last);
    let count = last - first + 1;
    for i in 0..count {
        let ip = Ipv4Addr::from(first + (start - first + i) % count);
        if ip == gateway {
            continue;
        }
        let path = dir.join(ip.to_string());
        if path.exists() {
            continue;
        }
        // The owner is written into a temporary file that is then linked to the address's
        // name: link(2) fails if the name exists, so the reservation is as exclusive as O_EXCL,
        // and a crash at any point leaves either no allocation or a complete one (never an
        // empty file that nobody owns). A leftover temporary file is removed by `gc`.
        let tmp = dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        let written = std::fs::write(&tmp, pod_id.as_bytes()).map_err(|e| io_err(&tmp, e));
        let linked = written.and_then(|()| match std::fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(&path, e)),
        });
        let _ = std::fs::remove_file(&tmp);
        if linked? {
            // Losing the round-robin hint is harmless; the address itself is reserved.
            let _ = crate::state::write_atomic(&last_path, ip.to_string().as_bytes());
            return Ok(ip);
        }
    }
    Err(NetError::Exhausted { subnet })
}

/// Every allocation on disk, in every subnet directory (the config may have changed since).
pub fn allocations(root: &Path) -> Result<Vec<Allocation>, NetError> {
    let mut out = Vec::new();
    let base = ipam_dir(root);
    let subnets = match std::fs::read_dir(&base) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err(&base, e)),
    };
    for sd in subnets.flatten() {
        let Some(subnet) = sd.file_name().to_str().and_then(parse_subnet_dir) else { continue };
        let rd = std::fs::read_dir(sd.path()).map_err(|e| io_err(&sd.path(), e))?;
        for f in rd.flatten() {
            let Some(ip) = f.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else { continue };
            // Written whole before it gets its name; an empty file (left by an older podbox
            // killed between creating and writing it) belongs to nobody.
            let pod_id = std::fs::read_to_string(f.path()).unwrap_or_default().trim().to_string();
            out.push(Allocation { subnet, ip, pod_id });
        }
    }
    out.sort_by_key(|a| (u32::from(a.subnet.network()), u32::from(a.ip)));
    Ok(out)
}

/// The address held by `pod_id`, if any.
pub fn lookup(root: &Path, pod_id: &str) -> Result<Option<Allocation>, NetError> {
    Ok(allocations(root)?.into_iter().find(|a| a.pod_id == pod_id))
}

/// Free every address whose owner matches `release_if`; returns what was freed.
fn release_where(root: &Path, release_if: impl Fn(&str) -> bool) -> Result<Vec<Allocation>, NetError> {
    let mut freed = Vec::new();
    let mut by_subnet: Vec<Ipv4Net> = allocations(root)?.iter().map(|a| a.subnet).collect();
    by_subnet.dedup();
    for subnet in by_subnet {
        let dir = subnet_dir(root, subnet);
        let _guard = lock(&dir)?;
        // Re-read under the lock: the unlocked listing only told us which subnets to visit.
        // Under the lock no allocation is being written, so an empty owner is a dead one.
        for a in allocations(root)?.into_iter().filter(|a| a.subnet == subnet) {
            if release_if(&a.pod_id) {
                let path = dir.join(a.ip.to_string());
                match std::fs::remove_file(&path) {
                    Ok(()) => freed.push(a),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, e)),
                }
            }
        }
    }
    Ok(freed)
}

/// Free `ip` if it is allocated to `pod_id` (in whichever subnet directory holds it); returns
/// whether it was. One file read per subnet directory, whatever the number of pods.
pub fn release_address(root: &Path, ip: Ipv4Addr, pod_id: &str) -> Result<bool, NetError> {
    let base = ipam_dir(root);
    let subnets = match std::fs::read_dir(&base) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(&base, e)),
    };
    for sd in subnets.flatten() {
        if !sd.file_name().to_str().and_then(parse_subnet_dir).is_some_and(|s| s.contains(&ip)) {
            continue;
        }
        let dir = sd.path();
        let _guard = lock(&dir)?;
        let path = dir.join(ip.to_string());
        if std::fs::read_to_string(&path).is_ok_and(|owner| !pod_id.is_empty() && owner.trim() == pod_id) {
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Free the address of `pod_id`; freeing nothing is success.
pub fn release(root: &Path, pod_id: &str) -> Result<(), NetError> {
    release_where(root, |owner| !owner.is_empty() && owner == pod_id).map(|_| ())
}

/// Free the addresses of pods not in `live` (and allocations without an owner), and remove
/// temporary files of allocations whose process is gone.
pub fn gc(root: &Path, live: &[String]) -> Result<Vec<Allocation>, NetError> {
    if let Ok(subnets) = std::fs::read_dir(ipam_dir(root)) {
        for sd in subnets.flatten() {
            let _guard = lock(&sd.path())?;
            for f in std::fs::read_dir(sd.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix(TMP_PREFIX).and_then(|p| p.parse::<i32>().ok())
                    && crate::container::ProcRef::of(pid).is_none() {
                        let _ = std::fs::remove_file(f.path());
                    }
            }
        }
    }
    release_where(root, |owner| owner.is_empty() || !live.iter().any(|l| l == owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch root removed on drop, also when the test fails.
    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    impl std::ops::Deref for Tmp {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn tmp(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("podbox-ipam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Tmp(p)
    }

    fn id(n: u32) -> String {
        format!("{n:032x}")
    }

    #[test]
    fn fills_a_small_subnet_then_reports_it_full() {
        let root = tmp("full");
        let net: Ipv4Net = "10.1.2.0/29".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 2, 1);
        let ips: Vec<_> = (0..5).map(|n| allocate(&root, net, gw, &id(n)).unwrap()).collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|h| Ipv4Addr::new(10, 1, 2, h)).collect();
        assert_eq!(ips, want);
        let err = allocate(&root, net, gw, &id(9)).unwrap_err().to_string();
        assert_eq!(err, "no free address in 10.1.2.0/29");
    }

    #[test]
    fn round_robin_does_not_reuse_the_address_just_freed() {
        let root = tmp("rr");
        let net: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 2, 1);
        let a = allocate(&root, net, gw, &id(1)).unwrap();
        release(&root, &id(1)).unwrap();
        release(&root, &id(1)).unwrap(); // idempotent
        let b = allocate(&root, net, gw, &id(1)).unwrap();
        assert_ne!(a, b);
        assert_eq!(lookup(&root, &id(1)).unwrap().unwrap().ip, b);
    }

    #[test]
    fn release_address_frees_only_the_named_address_of_its_owner() {
        let root = tmp("byaddr");
        let net: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 2, 1);
        let a = allocate(&root, net, gw, &id(1)).unwrap();
        let b = allocate(&root, net, gw, &id(2)).unwrap();
        // Another pod's address, and an address outside every subnet, are left alone.
        assert!(!release_address(&root, b, &id(1)).unwrap());
        assert!(!release_address(&root, Ipv4Addr::new(192, 168, 0, 2), &id(1)).unwrap());
        assert_eq!(lookup(&root, &id(2)).unwrap().unwrap().ip, b);
        assert!(release_address(&root, a, &id(1)).unwrap());
        assert_eq!(lookup(&root, &id(1)).unwrap(), None);
        assert!(!release_address(&root, a, &id(1)).unwrap()); // already free
        assert_eq!(allocations(&root).unwrap().len(), 1);
    }

    #[test]
    fn wraps_around_and_skips_gateway() {
        let root = tmp("wrap");
        let net: Ipv4Net = "10.1.2.0/29".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 2, 4); // a gateway in the middle
        for n in 0..5 {
            allocate(&root, net, gw, &id(n)).unwrap();
        }
        assert!(allocations(&root).unwrap().iter().all(|a| a.ip != gw));
        release(&root, &id(0)).unwrap(); // frees .1 (the gateway is .4); the hint is at the end: wrap
        assert_eq!(allocate(&root, net, gw, &id(7)).unwrap(), Ipv4Addr::new(10, 1, 2, 1));
    }

    #[test]
    fn gc_frees_only_dead_pods() {
        let root = tmp("gc");
        let net: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 2, 1);
        for n in 0..4 {
            allocate(&root, net, gw, &id(n)).unwrap();
        }
        let freed = gc(&root, &[id(1), id(3)]).unwrap();
        assert_eq!(freed.len(), 2);
        let left: Vec<_> = allocations(&root).unwrap().into_iter().map(|a| a.pod_id).collect();
        assert_eq!(left, vec![id(1), id(3)]);
    }

    #[test]
    fn gc_frees_allocations_without_an_owner_and_stale_temporary_files() {
        // What a kill between creating an allocation file and writing its owner left (older
        // podbox), and a temporary file of a killed allocate.
        let root = tmp("empty");
        let net: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 2, 1);
        let a = allocate(&root, net, gw, &id(1)).unwrap();
        let dir = subnet_dir(&root, net);
        std::fs::write(dir.join("10.1.2.77"), b"").unwrap();
        std::fs::write(dir.join(format!("{TMP_PREFIX}{}", i32::MAX)), id(2)).unwrap();
        release(&root, &id(3)).unwrap();
        assert_eq!(allocations(&root).unwrap().len(), 2, "release of another pod frees nothing");
        gc(&root, &[id(1)]).unwrap();
        let left: Vec<_> = allocations(&root).unwrap().into_iter().map(|x| x.ip).collect();
        assert_eq!(left, vec![a]);
        assert!(!dir.join(format!("{TMP_PREFIX}{}", i32::MAX)).exists());
    }

    #[test]
    fn concurrent_threads_get_distinct_addresses() {
        let root = tmp("conc");
        let net: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        let gw = Ipv4Addr::new(10, 1, 2, 1);
        let hs: Vec<_> = (0..16)
            .map(|n| {
                let root = root.to_path_buf();
                std::thread::spawn(move || allocate(&root, net, gw, &id(n)).unwrap())
            })
            .collect();
        let mut ips: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 16);
    }
}
