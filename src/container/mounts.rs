//! One OCI mount entry: option strings → mount(2) flags and data, mount points resolved and
//! created inside the root file system by descriptor (safe_path) and mounted onto that
//! descriptor, so no symlink, planted or swapped in, can point a mount outside the root.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::safe_path::{RootDir, proc_fd_path};
use super::{ContainerError, Result, io, sys};

/// Parsed `options` of a mount: flags to set, flags to clear, propagation, fs-specific data, and
/// the recursive (`r…`) attributes that `mount_setattr(2)` applies to the mount and every mount
/// below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    /// `MOUNT_ATTR_*` bits to set and to clear, recursively.
    pub rec_set: u64,
    pub rec_clear: u64,
}

// mount_setattr(2) ABI (linux/mount.h), stable since Linux 5.12.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The atime mode is a 3-bit field, not a flag: setting one mode means clearing the whole field.
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2): set the mount attributes `set` and clear `clear` on the mount at `path`
/// relative to `dirfd` (`flags`: AT_RECURSIVE, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW…). Linux 5.12.
pub(crate) fn mount_setattr(dirfd: libc::c_int, path: &std::ffi::CStr, flags: libc::c_int, set: u64, clear: u64) -> std::result::Result<(), nix::Error> {
    setattr(dirfd, path, flags, &MountAttr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 })
}

/// mount_setattr(2) making the (detached) mount at `path` an idmapped one through the maps of
/// the user namespace `userns`, with the attributes `set` besides.
pub(crate) fn mount_setattr_idmap(dirfd: libc::c_int, path: &std::ffi::CStr, flags: libc::c_int, set: u64, userns: std::os::fd::RawFd) -> std::result::Result<(), nix::Error> {
    setattr(dirfd, path, flags, &MountAttr { attr_set: MOUNT_ATTR_IDMAP | set, attr_clr: 0, propagation: 0, userns_fd: userns as u64 })
}

fn setattr(dirfd: libc::c_int, path: &std::ffi::CStr, flags: libc::c_int, attr: &MountAttr) -> std::result::Result<(), nix::Error> {
    // SAFETY: mount_setattr(2) reads `attr` (valid, of the size passed) and the NUL-terminated
    // path, both alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_mount_setattr, dirfd, path.as_ptr(), flags as libc::c_uint, attr as *const MountAttr, std::mem::size_of::<MountAttr>()) };
    if rc != 0 { Err(nix::Error::last()) } else { Ok(()) }
}

/// A recursive option: (bits to set, bits to clear). `ratime`, `rnorelatime` and
/// `rnostrictatime` give the kernel's default mode, relatime, as their non-recursive forms do
/// through mount(2).
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    let atime = |mode| (mode, MOUNT_ATTR_ATIME_MASK);
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        "rnoatime" => atime(MOUNT_ATTR_NOATIME),
        "rstrictatime" => atime(MOUNT_ATTR_STRICTATIME),
        "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => atime(MOUNT_ATTR_RELATIME),
        _ => return None,
    })
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options { flags: MsFlags::empty(), clear: MsFlags::empty(), propagation: MsFlags::empty(), data: vec![], rec_set: 0, rec_clear: 0 };
    for opt in opts {
        if let Some((set, clear)) = recursive_attr(opt) {
            // Later options win, as with the flags: a new atime mode replaces the earlier one.
            o.rec_set = (o.rec_set & !clear) | set;
            o.rec_clear = (o.rec_clear & !set) | clear;
            continue;
        }
        let (set, clear, prop) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty(), MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty(), MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty(), MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty(), MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty(), MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty(), MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty(), MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty(), MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty(), MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty(), MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty(), MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nosymfollow" => (MS_NOSYMFOLLOW, MsFlags::empty(), MsFlags::empty()),
            "symfollow" => (MsFlags::empty(), MS_NOSYMFOLLOW, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty(), MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty(), MsFlags::empty()),
            "private" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE),
            "rprivate" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED),
            "rshared" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE),
            "rslave" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "unbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE),
            "runbindable" => (MsFlags::empty(), MsFlags::empty(), MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            _ => {
                o.data.push(opt.clone());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
        o.clear |= clear;
        o.propagation |= prop;
    }
    o
}

/// How a spec mount is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// `cgroup`/`cgroup2`: podbox's own view of the container's cgroups (`mount_cgroups`).
    Cgroup,
    Bind,
    /// A file system of type `typ`, with the options' data.
    Fs,
}

/// One spec mount, parsed and checked by the caller before fork (`plan`): the init only makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MountOp {
    /// Absolute, inside the container.
    pub destination: PathBuf,
    pub source: PathBuf,
    pub typ: String,
    pub kind: MountKind,
    pub options: Options,
}

/// Parse and check one spec mount: an absolute destination, no file system data where podbox
/// makes the mount itself (cgroups) or there is no file system to hand it to (a bind).
pub fn plan(m: &Mount) -> Result<MountOp> {
    let dest_rel = m.destination();
    if !dest_rel.is_absolute() {
        return Err(ContainerError::Spec { field: "mounts[].destination".into(), msg: format!("{} is not absolute", dest_rel.display()) });
    }
    let o = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().as_deref().unwrap_or(if o.flags.contains(MsFlags::MS_BIND) { "bind" } else { "" }).to_string();
    let kind = match typ.as_str() {
        "cgroup" | "cgroup2" => MountKind::Cgroup,
        _ if o.flags.contains(MsFlags::MS_BIND) || typ == "bind" => MountKind::Bind,
        _ => MountKind::Fs,
    };
    // The kernel would drop data on a bind silently; podbox has no place for it on a cgroup mount.
    let what = match kind {
        MountKind::Cgroup => Some("cgroup"),
        MountKind::Bind => Some("bind"),
        MountKind::Fs => None,
    };
    if let (Some(what), Some(d)) = (what, o.data.first()) {
        return Err(ContainerError::Spec { field: "mounts[].options".into(), msg: format!("unknown option {d:?} for the {what} mount on {}", dest_rel.display()) });
    }
    Ok(MountOp { destination: dest_rel.clone(), source: m.source().clone().unwrap_or_else(|| PathBuf::from(&typ)), typ, kind, options: o })
}

/// MS_NOSYMFOLLOW (Linux 5.10), which nix does not name.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW);

/// Apply the recursive attributes of `o` to the mount `top` (a descriptor of its root) and
/// every mount below it.
fn set_recursive(top: &OwnedFd, dest_rel: &Path, o: &Options) -> Result<()> {
    if o.rec_set == 0 && o.rec_clear == 0 {
        return Ok(());
    }
    if let Err(e) = mount_setattr(top.as_raw_fd(), c"", libc::AT_RECURSIVE | libc::AT_EMPTY_PATH, o.rec_set, o.rec_clear) {
        let what = match e {
            nix::Error::ENOSYS => format!("recursive options (r…) of the mount on {}: this kernel has no mount_setattr(2) (Linux 5.12 or later needed)", dest_rel.display()),
            _ => format!("applying recursive options (r…) to the mount on {} and its submounts", dest_rel.display()),
        };
        return Err(ContainerError::Sys { what, source: e });
    }
    Ok(())
}

/// procfs and sysfs only on a real directory of the image: were a component of the destination a
/// symlink, the mount would land wherever the image points it (inside the root, but e.g. over a
/// directory the masked and read-only paths do not cover), and the link's target would be created.
pub fn check_proc_sys_destination(rootfs: &Path, m: &MountOp) -> Result<()> {
    let typ = m.typ.as_str();
    if typ != "proc" && typ != "sysfs" {
        return Ok(());
    }
    let dest = &m.destination;
    let refuse = |what: String| ContainerError::Spec { field: "mounts[].destination".into(), msg: format!("{typ} must be mounted on ordinary directory: {what}") };
    let mut at = rootfs.to_path_buf();
    let mut shown = PathBuf::from("/");
    for c in dest.components() {
        let Component::Normal(part) = c else {
            if c == Component::ParentDir {
                return Err(refuse(format!("{} contains '..'", dest.display())));
            }
            continue;
        };
        at.push(part);
        shown.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(refuse(format!("{} is a symbolic link in the root file system", shown.display()))),
            Ok(meta) if !meta.is_dir() => return Err(refuse(format!("{} is not a directory in the root file system", shown.display()))),
            Ok(_) => {}
            Err(_) => break, // created as a directory by the mount
        }
    }
    Ok(())
}

/// The mount now on top of `dest_rel`, reopened in the root: the descriptor the mount was made
/// on still holds the directory underneath, which remount and propagation changes do not reach.
fn reopen(root: &RootDir, dest_rel: &Path) -> Result<OwnedFd> {
    root.open_path(dest_rel).map_err(sys(format!("reopening the mount on {}", dest_rel.display())))
}

/// Perform one spec mount inside `root` (before pivot_root), onto a descriptor of its
/// destination resolved inside the root. `cgroupns`: the container has its own cgroup namespace
/// (decides how cgroup mounts are made).
pub fn mount_one(root: &RootDir, m: &MountOp, cgroupns: bool) -> Result<()> {
    let (dest_rel, o, typ) = (m.destination.as_path(), &m.options, m.typ.as_str());
    let source = m.source.clone();
    if m.kind == MountKind::Cgroup {
        mount_cgroups(root, dest_rel, o, cgroupns)?;
    } else if m.kind == MountKind::Bind {
        let meta = fs::metadata(&source).map_err(io(format!("bind source {}", source.display())))?;
        let target = if meta.is_dir() { root.mkdir_all(dest_rel)? } else { root.create_file(dest_rel)? };
        let flags = MsFlags::MS_BIND | (o.flags & MsFlags::MS_REC);
        mount(Some(&source), proc_fd_path(&target).as_str(), None::<&str>, flags, None::<&str>).map_err(sys(format!("bind-mounting {} on {}", source.display(), dest_rel.display())))?;
        // Bind mounts ignore other flags on the first call; apply them by remounting.
        let extra = o.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            let top = reopen(root, dest_rel)?;
            mount(None::<&str>, proc_fd_path(&top).as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra, None::<&str>)
                .map_err(sys(format!("remounting {} with {:?}", dest_rel.display(), extra)))?;
        }
    } else {
        let target = root.mkdir_all(dest_rel)?;
        let data = o.data.join(",");
        let data = if data.is_empty() { None } else { Some(data.as_str()) };
        match mount(Some(&source), proc_fd_path(&target).as_str(), Some(typ), o.flags, data) {
            // In a user namespace without a network namespace of its own (see userns).
            Err(nix::Error::EPERM) if typ == "sysfs" => {
                super::userns_mounts::bind_host_sysfs(Path::new(proc_fd_path(&target).as_str()), || reopen(root, dest_rel), o.flags)?
            }
            other => other.map_err(sys(format!("mounting {typ} on {}", dest_rel.display())))?,
        }
    }
    if o.rec_set == 0 && o.rec_clear == 0 && o.propagation.is_empty() {
        return Ok(());
    }
    let top = reopen(root, dest_rel)?;
    set_recursive(&top, dest_rel, o)?;
    if !o.propagation.is_empty() {
        mount(None::<&str>, proc_fd_path(&top).as_str(), None::<&str>, o.propagation, None::<&str>).map_err(sys(format!("setting propagation of {}", dest_rel.display())))?;
    }
    Ok(())
}

/// A `cgroup`/`cgroup2` mount, as runc makes it: the container sees only its own cgroups — on
/// v1 a tmpfs with one mount per hierarchy, on pure v2 a single one — read-only when the options
/// say `ro`. In a cgroup namespace each is a fresh mount of the hierarchy (which the kernel roots
/// at the namespace); without one, a bind mount of the container's cgroup directory.
fn mount_cgroups(root: &RootDir, dest_rel: &Path, o: &Options, cgroupns: bool) -> Result<()> {
    let views = super::cgroups::own_views()?;
    let ro = o.flags & MsFlags::MS_RDONLY;
    let hardening = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let dest = root.mkdir_all(dest_rel)?;
    let bind = |(_, src, key): &super::cgroups::View, at_rel: &Path| -> Result<()> {
        // Bound, not a temporary: the descriptor must stay open until the mount is made.
        let target = root.mkdir_all(at_rel)?;
        let at = proc_fd_path(&target);
        if cgroupns {
            let (fstype, data) = if key.is_empty() { ("cgroup2", None) } else { ("cgroup", Some(key.as_str())) };
            return mount(Some(fstype), at.as_str(), Some(fstype), hardening | ro, data).map_err(sys(format!("mounting {fstype} {} on {}", key, at_rel.display())));
        }
        mount(Some(src), at.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys(format!("bind-mounting cgroup {} on {}", src.display(), at_rel.display())))?;
        let top = reopen(root, at_rel)?;
        mount(None::<&str>, proc_fd_path(&top).as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | hardening | ro, None::<&str>)
            .map_err(sys(format!("remounting cgroup at {}", at_rel.display())))
    };
    match views.as_slice() {
        [] => Err(ContainerError::Spec { field: "mounts[].type".into(), msg: format!("cgroup mount at {}: no cgroup hierarchy is mounted on this machine", dest_rel.display()) }),
        [v] if v.0.is_empty() => bind(v, dest_rel),
        _ => {
            mount(Some("tmpfs"), proc_fd_path(&dest).as_str(), Some("tmpfs"), hardening, Some("mode=755")).map_err(sys(format!("mounting tmpfs for cgroups on {}", dest_rel.display())))?;
            for v in &views {
                bind(v, &dest_rel.join(&v.0))?;
            }
            if !ro.is_empty() {
                let top = reopen(root, dest_rel)?;
                mount(None::<&str>, proc_fd_path(&top).as_str(), None::<&str>, MsFlags::MS_REMOUNT | hardening | ro, Some("mode=755")).map_err(sys(format!("making {} read-only", dest_rel.display())))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(&s(&["nosuid", "noexec", "ro", "mode=755", "size=65536k", "rprivate"]));
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY);
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(o.data, s(&["mode=755", "size=65536k"]));
        let o = parse_options(&s(&["ro", "rw", "rbind"]));
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!((o.rec_set, o.rec_clear), (0, 0));
    }

    #[test]
    fn recursive_options_become_mount_attributes() {
        let o = parse_options(&s(&["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime"]));
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_clear, MOUNT_ATTR_ATIME_MASK);
        assert!(o.data.is_empty());
        // The later option wins; a later atime mode replaces the earlier one.
        let o = parse_options(&s(&["rro", "rrw", "rnoatime", "rstrictatime", "rsuid"]));
        assert_eq!(o.rec_set, MOUNT_ATTR_STRICTATIME);
        assert_eq!(o.rec_clear, MOUNT_ATTR_RDONLY | MOUNT_ATTR_ATIME_MASK | MOUNT_ATTR_NOSUID);
    }
}
