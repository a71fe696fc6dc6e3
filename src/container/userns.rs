//! User namespaces (`linux.uidMappings`/`gidMappings` with a `user` namespace): checking the
//! mappings, and the handshake between the process that forks a container's first process and
//! that child. A process cannot map ids for itself, so:
//!
//! ```text
//! parent ──clone(CLONE_NEWUSER [| CLONE_NEWPID])──▶ child (no ids mapped yet: waits)
//! parent writes /proc/CHILD/uid_map, gid_map ──"ok"──▶ child becomes root of its namespace
//! ```
//! The child is cloned straight into the new user namespace (and, when the spec asks for a new
//! PID namespace, into that too), so that every namespace it creates afterwards, the PID one
//! included, is owned by the user namespace: mounting /proc, sysfs and mqueue needs that.
//! The handshake has its own socket pair, apart from the sync pipe, so it can be folded into
//! another protocol without touching either side's logic.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use oci_spec::runtime::{LinuxIdMapping, Spec};

use super::namespaces::Plan;
use super::{ContainerError, Result, sys};

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

/// The parent's end and the child's end of the handshake, made before the fork.
pub struct Handshake {
    parent: UnixStream,
    child: UnixStream,
}

impl Handshake {
    pub fn new() -> Result<Handshake> {
        // CLOEXEC (std's default): the container's program never sees either end.
        let (parent, child) = UnixStream::pair().map_err(super::io("creating the user namespace handshake socket pair"))?;
        Ok(Handshake { parent, child })
    }

    /// The parent's end (the child's is closed).
    pub fn into_parent(self) -> UnixStream {
        self.parent
    }

    /// The child's end (the parent's is closed).
    pub fn into_child(self) -> UnixStream {
        self.child
    }
}

/// For a plan with a new user namespace: the handshake to pass through `fork`; None otherwise.
pub fn handshake(plan: &Plan) -> Result<Option<Handshake>> {
    if !matches!(plan.user, Some(UserNs::New { .. })) {
        return Ok(None);
    }
    Handshake::new().map(Some)
}

/// fork(), or with a handshake a clone(2) that puts the child into a new user namespace, and
/// into a new PID namespace too when the plan asks for one (`Plan::pid_in_userns`). For a
/// user namespace joined by path with a new PID namespace, a helper joins it, creates the PID
/// namespace there (so that it owns it) and clones the child as a sibling (CLONE_PARENT), as
/// runc's nsexec does: the caller is the child's parent either way.
pub fn fork(plan: &Plan, hs: &Option<Handshake>) -> nix::Result<ForkResult> {
    if let (Some(UserNs::Join(path)), true) = (&plan.user, plan.pid_in_userns) {
        return fork_via_helper(path);
    }
    if hs.is_none() {
        // SAFETY: the callers are single-threaded; the child runs ordinary Rust code until it
        // execs or exits.
        return unsafe { nix::unistd::fork() };
    }
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if plan.pid_in_userns {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    clone_fork(flags.bits())
}

/// clone(2) as fork with extra `flags` (namespaces, CLONE_PARENT).
pub fn clone_fork(flags: libc::c_int) -> nix::Result<ForkResult> {
    // SAFETY: clone with a NULL stack behaves as fork (the child continues on a copy of the
    // parent's stack), here with flags glibc's fork cannot pass. The callers are single-threaded,
    // so no lock of the C library or of Rust's runtime is held by another thread at this point;
    // the atfork handlers glibc would run are not needed by podbox.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong | libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    match ret {
        -1 => Err(nix::Error::last()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent { child: Pid::from_raw(pid as i32) }),
    }
}

fn fork_via_helper(userns: &std::path::Path) -> nix::Result<ForkResult> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let ns = std::fs::File::open(userns).map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    // SAFETY: single-threaded caller; the helper only makes syscalls and exits.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            drop(r);
            let made = setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).and_then(|_| nix::sched::unshare(CloneFlags::CLONE_NEWPID)).and_then(|_| clone_fork(libc::CLONE_PARENT));
            match made {
                Ok(ForkResult::Child) => Ok(ForkResult::Child),
                Ok(ForkResult::Parent { child }) => {
                    let _ = std::fs::File::from(w).write_all(&child.as_raw().to_ne_bytes());
                    // SAFETY: _exit ends the helper without running its parent's atexit state.
                    unsafe { libc::_exit(0) }
                }
                Err(e) => {
                    let _ = std::fs::File::from(w).write_all(&(-(e as i32)).to_ne_bytes());
                    // SAFETY: as above.
                    unsafe { libc::_exit(1) }
                }
            }
        }
        ForkResult::Parent { child: helper } => {
            drop(w);
            let mut b = [0u8; 4];
            let got = std::fs::File::from(r).read_exact(&mut b);
            let _ = nix::sys::wait::waitpid(helper, None);
            match (got, i32::from_ne_bytes(b)) {
                (Ok(()), pid) if pid > 0 => Ok(ForkResult::Parent { child: Pid::from_raw(pid) }),
                (Ok(()), errno) => Err(nix::Error::from_raw(-errno)),
                (Err(_), _) => Err(nix::Error::ECHILD),
            }
        }
    }
}

/// In the parent, right after `fork`: write `child`'s maps and tell it to go on. A failure is
/// sent to the child, which reports it on the sync pipe like any error of its own (so there is
/// one place the caller learns why a start failed).
pub fn answer(plan: &Plan, hs: Option<Handshake>, child: Pid) {
    if let (Some(hs), Some(UserNs::New { uid, gid })) = (hs, &plan.user) {
        let mut parent = hs.into_parent();
        answer_maps(&mut parent, child, uid, gid);
    }
}

/// Write `child`'s maps and answer "ok" (or the error) on the parent's end of a handshake.
pub fn answer_maps(parent: &mut UnixStream, child: Pid, uid: &[IdRange], gid: &[IdRange]) {
    let reply = match write_maps(child, uid, gid) {
        Ok(()) => "ok\n".to_string(),
        Err(e) => format!("err {}\n", e.to_string().replace('\n', " ")),
    };
    // The child may be gone already (it then reported its own error).
    let _ = parent.write_all(reply.as_bytes());
}

fn map_text(ranges: &[IdRange]) -> String {
    ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.size)).collect()
}

/// Write the uid and gid maps of `pid` (each in one write, as the kernel requires). setgroups
/// stays "allow": podbox runs as root, the case where the kernel does not need "deny", and the
/// container's process may set its supplementary groups.
pub fn write_maps(pid: Pid, uid: &[IdRange], gid: &[IdRange]) -> Result<()> {
    for (name, ranges) in [("uid_map", uid), ("gid_map", gid)] {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, map_text(ranges)).map_err(super::io(format!("writing {path} ({})", map_text(ranges).trim().replace('\n', ", "))))?;
    }
    Ok(())
}

/// In the child, right after `fork`, before anything else: join the user namespace of the
/// plan (unless the fork put the child there already), or wait for the parent to map this new
/// one. The child stays the host's uid 0 (unmapped inside, with every capability of the
/// namespace) until `become_root`, so that it can still join cgroups and open host files.
pub fn enter(plan: &Plan, hs: Option<Handshake>) -> Result<()> {
    match (&plan.user, hs) {
        (None, _) => Ok(()),
        (Some(UserNs::Join(path)), _) => {
            if same_file(&path.to_string_lossy(), "/proc/self/ns/user") {
                return Ok(());
            }
            let f = std::fs::File::open(path).map_err(super::io(format!("opening user namespace {}", path.display())))?;
            setns(f.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(sys(format!("joining user namespace {}", path.display())))
        }
        (Some(UserNs::New { .. }), Some(hs)) => await_maps(&mut hs.into_child()),
        (Some(UserNs::New { .. }), None) => Err(ContainerError::StartFailed { code: super::init::CODE_RUNTIME, msg: "internal: a new user namespace without its handshake".into() }),
    }
}

/// Wait on the child's end of a handshake until the parent has written the maps.
pub fn await_maps(child: &mut UnixStream) -> Result<()> {
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while child.read(&mut b).map_err(super::io("waiting for the user namespace maps"))? == 1 && b[0] != b'\n' {
        reply.push(b[0]);
    }
    let reply = String::from_utf8_lossy(&reply);
    match reply.strip_prefix("err ") {
        Some(msg) => Err(ContainerError::StartFailed { code: super::init::CODE_RUNTIME, msg: format!("mapping the container's user namespace: {}", msg.trim()) }),
        None if reply.trim() != "ok" => Err(ContainerError::StartFailed { code: super::init::CODE_RUNTIME, msg: "the runtime died before mapping the container's user namespace".into() }),
        None => Ok(()),
    }
}

/// Become root of the user namespace (uid and gid 0 must be mapped, as runc requires), so that
/// what the init creates from here on belongs to the container. A no-op without one.
pub fn become_root(plan: &Plan) -> Result<()> {
    if plan.user.is_none() {
        return Ok(());
    }
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
