//! The pod sandbox in the kernel: new net/ipc/uts/pid namespaces pinned by bind mounts under the
//! pod's directory (so they outlive any process), the pause process that joins them, the pod's
//! /dev/shm, and the undoing of all of it — also from what a crashed CLI left half-done.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;

use super::PodError;
use super::model::UserRange;
use crate::container::ProcRef;
use crate::container::spawn::{self, Failure, Msg, PidNs, Spawn};
use crate::container::userns;

/// The namespaces of a pod that are pinned before anything runs in them. The PID namespace is
/// not among them: the kernel hands out a PID namespace only once its init exists, so it is
/// created with the pause (its PID 1) and pinned afterwards by `pin_pid_namespace`.
pub const PINNED: &[(&str, CloneFlags)] = &[("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)];

fn sys_err(what: &str) -> impl FnOnce(nix::Error) -> PodError + '_ {
    move |e| PodError::Kernel(format!("{what}: {e}"))
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> PodError {
    move |e| PodError::Kernel(format!("{what}: {e}"))
}

/// Create the pod's namespaces and pin them under `ns_dir`; set the hostname and bring `lo` up.
/// Pins are created as empty files first so that a crash leaves only things `unpin` removes.
/// Those in `node` are the node's own: neither created nor pinned (nor their hostname or `lo`
/// touched). With `users`, a user namespace mapping 0.. to that host range comes first and owns
/// the others (pinned as "user" too).
pub fn pin_namespaces(ns_dir: &Path, hostname: &str, node: &BTreeSet<String>, users: Option<UserRange>) -> Result<BTreeMap<String, PathBuf>, PodError> {
    fs::create_dir_all(ns_dir).map_err(io_err(format!("creating {}", ns_dir.display())))?;
    let own: Vec<(&str, CloneFlags)> = PINNED.iter().copied().filter(|(n, _)| !node.contains(*n)).collect();
    let mut pins = BTreeMap::new();
    if own.is_empty() && users.is_none() {
        return Ok(pins);
    }
    let names: Vec<&str> = own.iter().map(|(n, _)| *n).chain(users.map(|_| "user")).collect();
    for name in &names {
        let p = ns_dir.join(name);
        fs::File::create(&p).map_err(io_err(format!("creating {}", p.display())))?;
        pins.insert(name.to_string(), p);
    }
    let unshare = own.iter().fold(CloneFlags::empty(), |a, (_, f)| a | *f);
    let user = match users {
        Some(u) => {
            let map = vec![userns::IdRange { inside: 0, outside: u.host_start, size: u.size }];
            spawn::UserNs::New { uid: map.clone(), gid: map }
        }
        None => spawn::UserNs::Inherit,
    };
    let pinner = spawn::spawn(Spawn { user, unshare, ..Spawn::default() }, |chan| {
        let fail = |msg: String| Failure { code: 1, msg };
        if unshare.contains(CloneFlags::CLONE_NEWUTS) {
            nix::unistd::sethostname(hostname).map_err(|e| fail(format!("setting hostname: {e}")))?;
        }
        if unshare.contains(CloneFlags::CLONE_NEWNET) {
            crate::network::loopback::up().map_err(|e| fail(format!("bringing lo up: {e}")))?;
        }
        // The spawner pins the namespaces (a process in a user namespace of its own may not
        // mount in the node's mount namespace): stay alive until it has.
        chan.send(&Msg::Ready).map_err(|e| fail(e.to_string()))?;
        let _ = chan.recv();
        Ok(())
    })
    .map_err(|e| PodError::Kernel(e.to_string()))?;
    let mut pinned = Err(PodError::Kernel("the namespace pinner exited before its namespaces were made".into()));
    let res = pinner.serve(|msg| match msg {
        Msg::Ready => {
            pinned = names.iter().try_for_each(|name| {
                let src = format!("/proc/{}/ns/{name}", pinner.pid);
                mount(Some(src.as_str()), &ns_dir.join(name), None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| PodError::Kernel(format!("pinning {name} namespace: {e}")))
            });
            // Go either way: the pinner must not wait for ever on a failed pin.
            Ok(Some(Msg::Go))
        }
        other => Err(Failure { code: 1, msg: format!("unexpected message {other:?} from the namespace pinner") }),
    });
    pinner.wait();
    res.map_err(|f| PodError::Kernel(f.msg))?;
    pinned?;
    Ok(pins)
}

/// Pin the PID namespace of the running `pause` at `pin`.
pub fn pin_pid_namespace(pause: &ProcRef, pin: &Path) -> Result<(), PodError> {
    fs::File::create(pin).map_err(io_err(format!("creating {}", pin.display())))?;
    let src = format!("/proc/{}/ns/pid", pause.pid);
    mount(Some(src.as_str()), pin, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys_err("pinning the pod's PID namespace"))?;
    // The PID was checked before the mount; make sure it still is the pause we started.
    if !pause.alive() {
        return Err(PodError::Kernel("the pause process died while its PID namespace was pinned".into()));
    }
    Ok(())
}

/// Start the pause process inside the pinned namespaces, as PID 1 of a new PID namespace, in the
/// cgroups whose `cgroup.procs` files are `cgroup_procs`.
pub fn start_pause(pins: &BTreeMap<String, PathBuf>, cgroup_procs: &[PathBuf]) -> Result<ProcRef, PodError> {
    // A pod's user namespace is joined first: it owns the others.
    let user = match pins.get("user") {
        Some(p) => spawn::UserNs::Join(fs::File::open(p).map_err(io_err(format!("opening {}", p.display())))?),
        None => spawn::UserNs::Inherit,
    };
    let in_userns = pins.contains_key("user");
    let mut join = Vec::new();
    for (name, flag) in PINNED {
        // A namespace the pod shares with the node has no pin: the pause stays in it.
        let Some(p) = pins.get(*name) else { continue };
        join.push((*flag, fs::File::open(p).map_err(io_err(format!("opening {}", p.display())))?));
    }
    let desc = Spawn { cgroups: cgroup_procs, new_session: true, user, join, pid_ns: PidNs::New, ..Spawn::default() };
    let pause = spawn::spawn(desc, |_| {
        // The pause, too, runs as the pod's root: an unprivileged host id.
        if in_userns {
            nix::unistd::setresgid(0.into(), 0.into(), 0.into())
                .and_then(|_| nix::unistd::setresuid(0.into(), 0.into(), 0.into()))
                .map_err(|e| Failure { code: 1, msg: format!("becoming root of the pod's user namespace: {e}") })?;
        }
        crate::container::process::stdio_to_null();
        let _ = nix::sys::signal::SigSet::all().thread_unblock();
        crate::container::process::cloexec_above_stdio().map_err(|e| Failure { code: 1, msg: format!("marking descriptors close-on-exec for the pause: {e}") })?;
        let e = super::pause::exec();
        Err(Failure { code: 1, msg: format!("starting the pause process: {e}") })
    })
    .map_err(|e| PodError::Kernel(e.to_string()))?;
    // End-of-file at its exec; it stays our child until we exit, then init's or a subreaper's.
    pause.outcome().map_err(|f| PodError::Kernel(f.msg))?;
    ProcRef::of(pause.pid).filter(|p| p.alive()).ok_or_else(|| PodError::Kernel("the pause process exited right after it started".into()))
}

/// A tmpfs for the pod's /dev/shm, shared by its containers as their IPC namespace is.
pub fn mount_shm(dir: &Path) -> Result<(), PodError> {
    fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    mount(Some("shm"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("mode=1777,size=65536k"))
        .map_err(sys_err("mounting the pod's /dev/shm"))
}

/// Every mount point podbox creates under a pod's directory: the namespace pins and /dev/shm.
pub const POD_MOUNTS: &[&str] = &["ns/net", "ns/ipc", "ns/uts", "ns/pid", "ns/user", "shm"];

/// Unmount whatever is mounted at `path` (all stacked mounts); a non-mount is fine.
pub fn unmount(path: &Path) {
    for _ in 0..8 {
        if umount2(path, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

/// Mount points under `dir` according to this mount namespace's mountinfo, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().to_string();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// The nsfs inode of the network namespace pinned at `pin`, if it is still pinned.
pub fn pinned_netns_inode(pin: &Path) -> Option<u64> {
    let m = fs::metadata(pin).ok()?;
    // An unmounted pin is an ordinary empty file on the root's file system.
    (m.dev() != fs::metadata(pin.parent()?).ok()?.dev()).then_some(m.ino())
}

/// Every process in the network namespace with inode `ino` (by the caller's PID numbering).
pub fn processes_in_netns(ino: u64) -> Vec<i32> {
    let want = format!("net:[{ino}]");
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            if fs::read_link(format!("/proc/{pid}/ns/net")).map(|l| l.to_string_lossy() == want).unwrap_or(false) {
                out.push(pid);
            }
        }
    }
    out
}

/// Which processes are in which network namespace (nsfs inode → PIDs), from one pass over
/// /proc: `pod rm --all` asks this once instead of scanning /proc for each pod (O(pods²)).
pub fn netns_users() -> std::collections::HashMap<u64, Vec<i32>> {
    let mut out: std::collections::HashMap<u64, Vec<i32>> = std::collections::HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(link) = fs::read_link(format!("/proc/{pid}/ns/net")) else { continue };
            if let Some(ino) = link.to_str().and_then(|l| l.strip_prefix("net:[")).and_then(|l| l.strip_suffix(']')).and_then(|l| l.parse().ok()) {
                out.entry(ino).or_default().push(pid);
            }
        }
    }
    out
}

/// SIGKILL every process of the pod: those in its pinned network namespace (which catches a
/// pause whose PID was never recorded) and the recorded ones; wait until they are gone.
pub fn kill_all(net_pin: Option<&Path>, known: &[ProcRef]) {
    let mut victims: Vec<ProcRef> = known.iter().copied().filter(|p| p.alive()).collect();
    if let Some(ino) = net_pin.and_then(pinned_netns_inode) {
        victims.extend(processes_in_netns(ino).into_iter().filter_map(ProcRef::of));
    }
    for v in &victims {
        v.signal(libc::SIGKILL);
    }
    for v in &victims {
        v.wait_gone(std::time::Duration::from_secs(5));
    }
}
