//! User namespaces (`linux.uidMappings`/`gidMappings` with a `user` namespace): checking the
//! mappings, turning a plan's user namespace into the step `spawn` takes, writing the maps
//! (for the spawner: a process cannot map ids for itself), and becoming root inside.
//!
//! ```text
//! child: unshare(CLONE_NEWUSER) ──MapsDue──▶ spawner writes /proc/CHILD/uid_map, gid_map
//! child ◀──MapsWritten── spawner; child makes its other namespaces (the PID one included)
//! ```
//! The user namespace is made (or joined) before every other namespace, so that it owns those
//! made after it: mounting /proc, sysfs and mqueue inside needs that. See `spawn`.

use std::path::PathBuf;

use nix::unistd::{Gid, Pid, Uid};
use oci_spec::runtime::{LinuxIdMapping, Spec};

use super::namespaces::Plan;
use super::{ContainerError, Result, spawn, sys};

/// The kernel accepts at most this many lines in one uid_map or gid_map (since Linux 4.15).
const MAX_MAP_LINES: usize = 340;

/// One line of a map: `size` ids from `inside` in the namespace are `outside` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub size: u32,
}

impl IdRange {
    /// The host id that `id` of the namespace is, if it is mapped by this range.
    fn host_of(&self, id: u32) -> Option<u32> {
        (id >= self.inside && (id - self.inside) < self.size).then(|| self.outside + (id - self.inside))
    }
}

/// The user namespace of a container: a new one with these maps, or one to join by path.
#[derive(Debug, Clone)]
pub enum UserNs {
    New { uid: Vec<IdRange>, gid: Vec<IdRange> },
    Join(PathBuf),
}

impl UserNs {
    /// The host uid and gid of the namespace's `uid`/`gid` (None for a joined namespace or an
    /// unmapped id).
    pub fn host_ids(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        let UserNs::New { uid: u, gid: g } = self else { return None };
        Some((u.iter().find_map(|r| r.host_of(uid))?, g.iter().find_map(|r| r.host_of(gid))?))
    }
}

fn refuse(field: &str, msg: impl Into<String>) -> ContainerError {
    ContainerError::Spec { field: field.into(), msg: msg.into() }
}

/// Check one map as the kernel would (and a bit earlier, with the field named): every range
/// non-empty and within 32 bits, at most 340 lines, no two ranges overlapping inside or outside.
pub fn check_ranges(field: &str, maps: &[LinuxIdMapping]) -> Result<Vec<IdRange>> {
    if maps.is_empty() {
        return Err(refuse(field, "a new user namespace needs at least one mapping (e.g. {\"containerID\": 0, \"hostID\": 100000, \"size\": 65536})"));
    }
    if maps.len() > MAX_MAP_LINES {
        return Err(refuse(field, format!("{} mappings; the kernel takes at most {MAX_MAP_LINES}", maps.len())));
    }
    let ranges: Vec<IdRange> = maps.iter().map(|m| IdRange { inside: m.container_id(), outside: m.host_id(), size: m.size() }).collect();
    for (i, r) in ranges.iter().enumerate() {
        if r.size == 0 {
            return Err(refuse(field, format!("mapping #{i} has size 0")));
        }
        if r.inside.checked_add(r.size).is_none() || r.outside.checked_add(r.size).is_none() {
            return Err(refuse(field, format!("mapping #{i} ({} → {}, size {}) runs past the largest id 4294967295", r.inside, r.outside, r.size)));
        }
    }
    let overlap = |a: u32, b: u32, size_a: u32, size_b: u32| a < b + size_b && b < a + size_a;
    for (i, a) in ranges.iter().enumerate() {
        for (j, b) in ranges.iter().enumerate().skip(i + 1) {
            if overlap(a.inside, b.inside, a.size, b.size) {
                return Err(refuse(field, format!("mappings #{i} and #{j} overlap inside the namespace (containerID {} size {} and {} size {})", a.inside, a.size, b.inside, b.size)));
            }
            if overlap(a.outside, b.outside, a.size, b.size) {
                return Err(refuse(field, format!("mappings #{i} and #{j} overlap on the host (hostID {} size {} and {} size {})", a.outside, a.size, b.outside, b.size)));
            }
        }
    }
    Ok(ranges)
}

/// The spec's user namespace, if any. `ns_path` is the `user` entry of `linux.namespaces`:
/// None when there is none, Some(None) for a new one. Mappings without a user namespace, a new
/// namespace without mappings, and mappings for a namespace joined by path are refused.
pub fn from_spec(spec: &Spec, ns_path: Option<Option<PathBuf>>) -> Result<Option<UserNs>> {
    let linux = spec.linux().as_ref();
    let uid = linux.and_then(|l| l.uid_mappings().clone()).unwrap_or_default();
    let gid = linux.and_then(|l| l.gid_mappings().clone()).unwrap_or_default();
    let has_maps = !uid.is_empty() || !gid.is_empty();
    match ns_path {
        None if has_maps => Err(refuse("linux.uidMappings", "mappings need a user namespace: add {\"type\": \"user\"} to linux.namespaces")),
        None => Ok(None),
        Some(Some(path)) if has_maps => Err(refuse("linux.uidMappings", format!("the user namespace {} is joined by path and has its maps already; leave the mappings out", path.display()))),
        Some(Some(path)) => Ok(Some(UserNs::Join(path))),
        Some(None) => Ok(Some(UserNs::New { uid: check_ranges("linux.uidMappings", &uid)?, gid: check_ranges("linux.gidMappings", &gid)? })),
    }
}

/// The user namespace step of `spawn` for a plan: none, a new one with the plan's maps, or the
/// one at the plan's path, opened here (in the caller's mount namespace). A path naming the
/// caller's own user namespace is no step at all: joining it would fail with EINVAL.
pub fn spawn_step(plan: &Plan) -> Result<spawn::UserNs> {
    Ok(match &plan.user {
        None => spawn::UserNs::Inherit,
        Some(UserNs::New { uid, gid }) => spawn::UserNs::New { uid: uid.clone(), gid: gid.clone() },
        Some(UserNs::Join(path)) if same_file(&path.to_string_lossy(), "/proc/self/ns/user") => spawn::UserNs::Inherit,
        Some(UserNs::Join(path)) => spawn::UserNs::Join(std::fs::File::open(path).map_err(super::io(format!("opening user namespace {}", path.display())))?),
    })
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.size)).collect()
}

/// Write the uid and gid maps of `pid` (each in one write, as the kernel requires). setgroups
/// stays "allow" when podbox runs as root, the case where the kernel does not need "deny", so
/// the container's process may set its supplementary groups; an unprivileged spawner (spawn's
/// unit tests) may map only its own gid, and only after denying setgroups.
pub fn write_maps(pid: Pid, uid: &[IdRange], gid: &[IdRange]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, "deny").map_err(super::io(format!("writing {path}")))?;
    }
    for (name, ranges) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, map_text(ranges)).map_err(super::io(format!("writing {path} ({})", map_text(ranges).trim().replace('\n', ", "))))?;
    }
    Ok(())
}

/// Become root of the user namespace (uid and gid 0 must be mapped, as runc requires), so that
/// what the init creates from here on belongs to the container.
pub fn become_root() -> Result<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(sys("becoming gid 0 in the user namespace (is gid 0 mapped?)"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(sys("becoming uid 0 in the user namespace (is uid 0 mapped?)"))
}

/// Whether two paths (namespace files) name the same inode.
pub fn same_file(a: &str, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.ino() == y.ino() && x.dev() == y.dev(),
        _ => false,
    }
}

/// The user namespace of process `pid` to join (for `exec`), if it is not the caller's own
/// (joining one's own user namespace is an error).
pub fn of_process(pid: i32) -> Result<Option<std::fs::File>> {
    let p = format!("/proc/{pid}/ns/user");
    if same_file(&p, "/proc/self/ns/user") {
        return Ok(None);
    }
    std::fs::File::open(&p).map(Some).map_err(super::io(format!("opening {p}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &str, maps: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":[{ns}]{maps}}}}}"#)).unwrap()
    }

    fn plan_err(s: &Spec) -> String {
        super::super::namespaces::plan(s).unwrap_err().to_string()
    }

    #[test]
    fn mappings_are_checked_and_named() {
        let maps = r#","uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}]"#;
        let p = super::super::namespaces::plan(&spec(r#"{"type":"user"},{"type":"mount"}"#, maps)).unwrap();
        assert_eq!(p.user.as_ref().unwrap().host_ids(0, 0), Some((100000, 100000)));
        assert!(plan_err(&spec(r#"{"type":"mount"}"#, maps)).contains("need a user namespace"));
        assert!(plan_err(&spec(r#"{"type":"user"},{"type":"mount"}"#, "")).contains("linux.uidMappings"));
        let overlap = r#","uidMappings":[{"containerID":0,"hostID":100000,"size":10},{"containerID":5,"hostID":200000,"size":10}],"gidMappings":[{"containerID":0,"hostID":100000,"size":1}]"#;
        assert!(plan_err(&spec(r#"{"type":"user"}"#, overlap)).contains("overlap inside"));
        let host_overlap = r#","uidMappings":[{"containerID":0,"hostID":100000,"size":1}],"gidMappings":[{"containerID":0,"hostID":100000,"size":10},{"containerID":10,"hostID":100009,"size":1}]"#;
        assert!(plan_err(&spec(r#"{"type":"user"}"#, host_overlap)).contains("linux.gidMappings"));
        let zero = r#","uidMappings":[{"containerID":0,"hostID":100000,"size":0}],"gidMappings":[{"containerID":0,"hostID":100000,"size":1}]"#;
        assert!(plan_err(&spec(r#"{"type":"user"}"#, zero)).contains("size 0"));
        let wrap = r#","uidMappings":[{"containerID":0,"hostID":4294967000,"size":65536}],"gidMappings":[{"containerID":0,"hostID":100000,"size":1}]"#;
        assert!(plan_err(&spec(r#"{"type":"user"}"#, wrap)).contains("largest id"));
        assert!(plan_err(&spec(r#"{"type":"user","path":"/proc/1/ns/user"}"#, maps)).contains("joined by path"));
    }
}
