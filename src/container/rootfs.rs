//! The container's file system view: make mount events stop at the container, mount the root
//! (overlay or bind), the spec's mounts, the device nodes, then pivot_root into it and apply
//! masked paths, read-only paths and a read-only root. Runs in the init, in its new mount namespace.

use std::fs;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknodat};
use nix::unistd::{UnlinkatFlags, chdir, pivot_root, symlinkat, unlinkat};
use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::plan::RootfsPlan;
use super::safe_path::{self, RootDir};
use super::{ContainerError, Result, Rootfs, io, sys};

/// The standard device set every container gets: (path, major, minor).
const DEFAULT_DEVICES: &[(&str, u64, u64)] =
    &[("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0)];

/// Set the propagation of the init's mounts and mount the root file system; returns the
/// directory to pivot into. The spec's mounts and devices go in next (`init::prepare_rootfs`).
pub fn mount_root(rootfs: &Rootfs, propagation: MsFlags) -> Result<PathBuf> {
    // Mounts we make must not propagate back to the node, while the node's unmounts still reach
    // us (the default of runc: rslave). Shared and unbindable are set on the new root after
    // pivot_root (`set_root_propagation`): pivot_root refuses shared mounts, and an unbindable
    // tree cannot be bind-mounted from.
    // A shared root (a bidirectional volume) keeps the node's shared mounts peers of the node's:
    // only the mounts the root is made on become private, so that what is mounted there stays
    // in the container (runc's way, which containerd relies on).
    match propagation {
        MsFlags::MS_SHARED => privatize_mounts_holding(&root_anchors(rootfs))?,
        MsFlags::MS_PRIVATE => mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(sys("setting root mount propagation"))?,
        _ => mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>).map_err(sys("setting root mount propagation"))?,
    }

    let root = match rootfs {
        Rootfs::Plain(path) => {
            mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(sys(format!("bind-mounting root {}", path.display())))?;
            path.clone()
        }
        Rootfs::Overlay { lowers, upper, work, merged, tmpfs } => {
            if let Some((dir, size)) = tmpfs {
                fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
                let data = format!("size={size},mode=0755");
                mount(Some("tmpfs"), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data.as_str()))
                    .map_err(sys(format!("mounting the writable layer's tmpfs ({size} bytes) on {}", dir.display())))?;
            }
            for d in [upper, work] {
                if d.to_string_lossy().contains([',', ':', '\\']) {
                    return Err(ContainerError::Spec { field: "root.path".into(), msg: format!("{}: an overlay layer's path cannot contain ',', ':' or '\\' (they separate overlay options and layers)", d.display()) });
                }
            }
            for d in [upper, work, merged] {
                fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
            }
            let data = overlay_options(lowers, upper, work)?;
            mount(Some("overlay"), merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
                .map_err(sys(format!("mounting overlay of {} layer(s) over {}", lowers.len(), lowers.first().map(|l| l.display().to_string()).unwrap_or_default())))?;
            merged.clone()
        }
    };
    Ok(root)
}

/// The overlay mount options. The kernel takes at most one page of options, which absolute
/// paths of many layers overflow (an image store's layer paths are ~100 bytes each): then, when
/// all layers share one directory, the init changes into it and names them relatively (overlayfs
/// resolves lowerdirs against the mounting process's working directory; the init pivots and
/// changes directory afterwards anyway). That allows ~60 layers of 64-hex names.
fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    const MAX: usize = 4095;
    if lowers.is_empty() {
        return Err(ContainerError::Spec { field: "root".into(), msg: "an overlay needs at least one lower layer".into() });
    }
    for l in lowers {
        if l.as_os_str().as_encoded_bytes().iter().any(|b| matches!(b, b',' | b':')) {
            return Err(ContainerError::Spec { field: "root".into(), msg: format!("layer path {} contains ',' or ':', which overlayfs cannot take", l.display()) });
        }
    }
    let tail = format!(",upperdir={},workdir={}", upper.display(), work.display());
    let join = |v: Vec<String>| format!("lowerdir={}{tail}", v.join(":"));
    let data = join(lowers.iter().map(|l| l.display().to_string()).collect());
    if data.len() <= MAX {
        return Ok(data);
    }
    let parent = lowers[0].parent().map(Path::to_path_buf);
    if let Some(parent) = parent.filter(|p| lowers.iter().all(|l| l.parent() == Some(p.as_path()))) {
        let data = join(lowers.iter().map(|l| l.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect());
        if data.len() <= MAX {
            chdir(&parent).map_err(sys(format!("chdir {}", parent.display())))?;
            return Ok(data);
        }
    }
    Err(ContainerError::Spec { field: "root".into(), msg: format!("{} layers are too many for one overlay mount ({} bytes of options, the kernel takes {MAX})", lowers.len(), data.len()) })
}

/// A device node to create in the container's /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The device nodes of a container: the standard set, replaced or extended by `linux.devices`.
pub fn device_nodes(spec: &Spec) -> Result<Vec<DeviceNode>> {
    let mut nodes: Vec<DeviceNode> = DEFAULT_DEVICES
        .iter()
        .map(|(p, major, minor)| DeviceNode { path: PathBuf::from(p), kind: SFlag::S_IFCHR, major: *major, minor: *minor, mode: 0o666, uid: None, gid: None })
        .collect();
    if let Some(devs) = spec.linux().as_ref().and_then(|l| l.devices().as_ref()) {
        for d in devs {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => return Err(ContainerError::Spec { field: "linux.devices[].type".into(), msg: "type 'a' is only valid in cgroup rules".into() }),
            };
            nodes.retain(|n| n.path != *d.path());
            nodes.push(DeviceNode { path: d.path().clone(), kind, major: d.major() as u64, minor: d.minor() as u64, mode: d.file_mode().unwrap_or(0o666), uid: d.uid(), gid: d.gid() });
        }
    }
    Ok(nodes)
}

/// Make `nodes` in the root's /dev (if it has one), with the /dev/fd and std* links.
pub fn create_devices(root: &RootDir, nodes: &[DeviceNode]) -> Result<()> {
    let dev = match root.open_path(Path::new("/dev")) {
        Ok(fd) if nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR) => fd,
        _ => return Ok(()),
    };
    for &DeviceNode { ref path, kind, major, minor, mode, uid, gid } in nodes {
        // The parent (e.g. /dev/net for /dev/net/tun) resolved and created inside the root; the
        // node is made, checked and changed relative to it, never through a path.
        let (parent, name) = root.parent_of(path)?;
        let _ = unlinkat(&parent, name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        match mknodat(&parent, name.as_os_str(), kind, Mode::from_bits_truncate(mode), makedev(major, minor)) {
            // A device cgroup that denies mknod (podman's rules do): bind the node's own device
            // instead, as runc does; opening it is still subject to the cgroup's rules.
            Err(nix::Error::EPERM) if path.exists() => {
                let target = root.create_file(path)?;
                mount(Some(path), safe_path::proc_fd_path(&target).as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys(format!("bind-mounting device {}", path.display())))?;
                continue;
            }
            other => other.map_err(sys(format!("creating device {}", path.display())))?,
        }
        // mknod is subject to the umask; set the exact mode asked for, on the node just made
        // (O_NOFOLLOW: a symlink swapped in meanwhile is refused, not followed).
        let node = nix::fcntl::openat(&parent, name.as_os_str(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys(format!("opening device {}", path.display())))?;
        let node_path = safe_path::proc_fd_path(&node);
        nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, node_path.as_str(), Mode::from_bits_truncate(mode), nix::sys::stat::FchmodatFlags::FollowSymlink)
            .map_err(sys(format!("chmod {}", path.display())))?;
        if uid.is_some() || gid.is_some() {
            nix::unistd::fchownat(&node, "", uid.map(Into::into), gid.map(Into::into), AtFlags::AT_EMPTY_PATH).map_err(sys(format!("chown {}", path.display())))?;
        }
    }
    for (link, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        let _ = symlinkat(target, &dev, link);
    }
    if root.open_path(Path::new("/dev/pts/ptmx")).is_ok() {
        let _ = unlinkat(&dev, "ptmx", UnlinkatFlags::NoRemoveDir);
        let _ = symlinkat("pts/ptmx", &dev, "ptmx");
    }
    Ok(())
}

/// The paths `prepare` mounts on for the root: the bind's, or the writable tmpfs' and the overlay's.
fn root_anchors(rootfs: &Rootfs) -> Vec<PathBuf> {
    match rootfs {
        Rootfs::Plain(path) => vec![path.clone()],
        Rootfs::Overlay { merged, tmpfs, .. } => tmpfs.iter().map(|(d, _)| d.clone()).chain([merged.clone()]).collect(),
    }
}

/// Make private (in this mount namespace only) the mount holding each path, so that mounts made
/// below it do not propagate to the node's peers of that mount.
fn privatize_mounts_holding(paths: &[PathBuf]) -> Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(io("reading /proc/self/mountinfo"))?;
    let points: Vec<PathBuf> = info.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(p.replace("\\040", " "))).collect();
    for p in paths {
        // The path itself may not exist yet: its nearest existing ancestor is on the same mount.
        let existing = p.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
        let real = fs::canonicalize(existing).map_err(io(format!("resolving {}", existing.display())))?;
        let holder = points.iter().filter(|m| real.starts_with(m)).max_by_key(|m| m.components().count()).cloned().unwrap_or_else(|| PathBuf::from("/"));
        mount(None::<&str>, &holder, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>).map_err(sys(format!("making the mount {} that holds the root private", holder.display())))?;
    }
    Ok(())
}

/// `linux.rootfsPropagation` as mount flags (the default: slave).
pub fn root_propagation(spec: &Spec) -> Result<MsFlags> {
    Ok(match spec.linux().as_ref().and_then(|l| l.rootfs_propagation().clone()).as_deref() {
        None | Some("rslave") | Some("slave") => MsFlags::MS_SLAVE,
        Some("rprivate") | Some("private") => MsFlags::MS_PRIVATE,
        Some("rshared") | Some("shared") => MsFlags::MS_SHARED,
        Some("runbindable") | Some("unbindable") => MsFlags::MS_UNBINDABLE,
        Some(other) => return Err(ContainerError::Spec { field: "linux.rootfsPropagation".into(), msg: format!("unknown value {other} (shared, slave, private or unbindable, with or without r)") }),
    })
}

/// After pivot_root: a shared or unbindable `linux.rootfsPropagation` on the container's whole
/// tree. The root and the mounts made on it are private by then (`prepare`), so sharing them
/// makes peer groups of their own that reach nothing on the node; only a bind of a node mount
/// that is still a peer of the node's (an `rshared` volume) propagates both ways.
pub fn set_root_propagation(prop: MsFlags) -> Result<()> {
    if prop == MsFlags::MS_SHARED || prop == MsFlags::MS_UNBINDABLE {
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | prop, None::<&str>).map_err(sys("setting linux.rootfsPropagation on the container's root"))?;
    }
    Ok(())
}

/// Make `root` the process's `/` and detach the old root entirely.
pub fn pivot(root: &Path) -> Result<()> {
    // The old root, to step into after the pivot: "." still names the new root's directory then.
    let old_root = fs::File::open("/").map_err(io("opening the old root"))?;
    chdir(root).map_err(sys(format!("chdir {}", root.display())))?;
    // pivot_root(".", ".") stacks the old root on the new one; unmounting it then drops it
    // without needing a directory for it inside the container.
    pivot_root(".", ".").map_err(sys("pivot_root"))?;
    nix::unistd::fchdir(&old_root).map_err(sys("entering the old root"))?;
    // With a shared root (a bidirectional volume) the old root's mounts are still peers of the
    // node's: made slaves first, detaching them cannot unmount anything on the node.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>).map_err(sys("making the old root a slave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detaching the old root"))?;
    chdir("/").map_err(sys("chdir /"))
}

/// `--no-pivot`: move the root mount over `/` and chroot into it, as runc does where
/// pivot_root is impossible (a root on ramfs/initramfs).
pub fn move_root(root: &Path) -> Result<()> {
    chdir(root).map_err(sys(format!("chdir {}", root.display())))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sys("moving the root mount over /"))?;
    nix::unistd::chroot(".").map_err(sys("chroot"))?;
    chdir("/").map_err(sys("chdir /"))
}

/// The container's /dev/null, opened without following a symlink and checked to be the null
/// device (char 1:3), for masking files by binding it over them through the descriptor. An
/// image or a mount of the spec could have put anything there — say a symlink to
/// /proc/sys/kernel/core_pattern, which the mask would then expose writable (CVE-2025-31133).
fn verified_dev_null() -> Result<fs::File> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC).open("/dev/null").map_err(io("opening the container's /dev/null to mask paths with"))?;
    let m = f.metadata().map_err(io("stat of the container's /dev/null"))?;
    if !m.file_type().is_char_device() || m.rdev() != libc::makedev(1, 3) {
        return Err(ContainerError::Spec { field: "linux.maskedPaths".into(), msg: "the container's /dev/null is not the null device (char 1:3): refusing to mask paths with it".into() });
    }
    Ok(f)
}

/// After pivot: masked paths, read-only paths, read-only root. Each path is resolved inside the
/// container's `/` (no magic links) and mounted onto its descriptor: a symlink in the image or a
/// volume cannot turn a mask or a read-only bind toward another file.
pub fn finish(plan: &RootfsPlan) -> Result<()> {
    let root = RootDir::open(Path::new("/"))?;
    let mut null = None;
    for p in &plan.masked_paths {
        let target = match root.open_path(Path::new(p)) {
            Err(nix::Error::ENOENT) => continue, // nothing to hide
            other => other.map_err(sys(format!("resolving masked path {p} in the container")))?,
        };
        let is_dir = nix::sys::stat::fstat(&target).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        let at = safe_path::proc_fd_path(&target);
        if is_dir {
            mount(Some("tmpfs"), at.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
        } else {
            if null.is_none() {
                null = Some(verified_dev_null()?);
            }
            let src = format!("/proc/self/fd/{}", null.as_ref().map(std::os::fd::AsRawFd::as_raw_fd).unwrap_or(-1));
            mount(Some(src.as_str()), at.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        }
        .map_err(sys(format!("masking {p} (through {at}: the container needs /proc mounted)")))?;
    }
    for p in &plan.readonly_paths {
        let target = match root.open_path(Path::new(p)) {
            Err(nix::Error::ENOENT) => continue,
            other => other.map_err(sys(format!("resolving read-only path {p} in the container")))?,
        };
        let at = safe_path::proc_fd_path(&target);
        mount(Some(at.as_str()), at.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(sys(format!("binding {p} (through {at}: the container needs /proc mounted)")))?;
        // The bind is on top now; the descriptor still holds what is underneath.
        let top = root.open_path(Path::new(p)).map_err(sys(format!("reopening {p}")))?;
        mount(None::<&str>, safe_path::proc_fd_path(&top).as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None::<&str>)
            .map_err(sys(format!("making {p} read-only")))?;
    }
    if plan.readonly_root {
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>).map_err(sys("making / read-only"))?;
    }
    Ok(())
}

/// Create the host-side directory for the log before anything else is mounted (used by callers).
pub fn ensure_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) => fs::create_dir_all(p).map_err(io(format!("creating {}", p.display()))),
        None => Ok(()),
    }
}
