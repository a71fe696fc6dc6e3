//! One OCI mount entry: option strings → mount(2) flags and data, mount points created inside the
//! root filesystem with symlinks resolved *within* it (a rootfs cannot point a mount outside).

use std::fs;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::{ContainerError, Result, io, sys};

/// Parsed `options` of a mount: flags to set, flags to clear, propagation, and fs-specific data.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub flags: MsFlags,
    pub clear: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options { flags: MsFlags::empty(), clear: MsFlags::empty(), propagation: MsFlags::empty(), data: vec![] };
    for opt in opts {
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

/// `root` joined with the absolute `path`, following symlinks as if `root` were `/`.
pub fn secure_join(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::new(); // relative to root
    let mut pending: Vec<PathBuf> = path.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match Path::new(&part).components().next() {
            Some(Component::RootDir) | Some(Component::CurDir) | None => continue,
            Some(Component::ParentDir) => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(ContainerError::Spec { field: "mounts".into(), msg: format!("too many symlinks under {}", path.display()) });
                }
                let target = fs::read_link(root.join(&candidate)).map_err(io(format!("reading link {}", candidate.display())))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in target.components().rev() {
                    pending.push(PathBuf::from(c.as_os_str()));
                }
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// Perform one spec mount inside `rootfs` (before pivot_root). `cgroupns`: the container has
/// its own cgroup namespace (decides how cgroup mounts are made).
pub fn mount_one(rootfs: &Path, m: &Mount, cgroupns: bool) -> Result<()> {
    let dest_rel = m.destination();
    if !dest_rel.is_absolute() {
        return Err(ContainerError::Spec { field: "mounts[].destination".into(), msg: format!("{} is not absolute", dest_rel.display()) });
    }
    let dest = secure_join(rootfs, dest_rel)?;
    let empty = vec![];
    let o = parse_options(m.options().as_ref().unwrap_or(&empty));
    let typ = m.typ().as_deref().unwrap_or(if o.flags.contains(MsFlags::MS_BIND) { "bind" } else { "" });
    let is_bind = o.flags.contains(MsFlags::MS_BIND) || typ == "bind";
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroups(&dest, dest_rel, &o, cgroupns);
    }
    if is_bind {
        let meta = fs::metadata(&source).map_err(io(format!("bind source {}", source.display())))?;
        if meta.is_dir() {
            fs::create_dir_all(&dest).map_err(io(format!("creating {}", dest.display())))?;
        } else {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
            }
            if !dest.exists() {
                fs::File::create(&dest).map_err(io(format!("creating {}", dest.display())))?;
            }
        }
        let flags = MsFlags::MS_BIND | (o.flags & MsFlags::MS_REC);
        mount(Some(&source), &dest, None::<&str>, flags, None::<&str>).map_err(sys(format!("bind-mounting {} on {}", source.display(), dest_rel.display())))?;
        // Bind mounts ignore other flags on the first call; apply them by remounting.
        let extra = o.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            mount(None::<&str>, &dest, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra, None::<&str>)
                .map_err(sys(format!("remounting {} with {:?}", dest_rel.display(), extra)))?;
        }
    } else {
        fs::create_dir_all(&dest).map_err(io(format!("creating {}", dest.display())))?;
        let data = o.data.join(",");
        let data = if data.is_empty() { None } else { Some(data.as_str()) };
        mount(Some(&source), &dest, Some(typ), o.flags, data).map_err(sys(format!("mounting {typ} on {}", dest_rel.display())))?;
    }
    if !o.propagation.is_empty() {
        mount(None::<&str>, &dest, None::<&str>, o.propagation, None::<&str>).map_err(sys(format!("setting propagation of {}", dest_rel.display())))?;
    }
    Ok(())
}

/// A `cgroup`/`cgroup2` mount, as runc makes it: the container sees only its own cgroups — on
/// v1 a tmpfs with one mount per hierarchy, on pure v2 a single one — read-only when the options
/// say `ro`. In a cgroup namespace each is a fresh mount of the hierarchy (which the kernel roots
/// at the namespace); without one, a bind mount of the container's cgroup directory.
fn mount_cgroups(dest: &Path, dest_rel: &Path, o: &Options, cgroupns: bool) -> Result<()> {
    let views = super::cgroups::own_views()?;
    let ro = o.flags & MsFlags::MS_RDONLY;
    let hardening = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
    let bind = |(_, src, key): &super::cgroups::View, at: &Path| -> Result<()> {
        fs::create_dir_all(at).map_err(io(format!("creating {}", at.display())))?;
        if cgroupns {
            let (fstype, data) = if key.is_empty() { ("cgroup2", None) } else { ("cgroup", Some(key.as_str())) };
            return mount(Some(fstype), at, Some(fstype), hardening | ro, data).map_err(sys(format!("mounting {fstype} {} on {}", key, at.display())));
        }
        mount(Some(src), at, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys(format!("bind-mounting cgroup {} on {}", src.display(), dest_rel.display())))?;
        mount(None::<&str>, at, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | hardening | ro, None::<&str>)
            .map_err(sys(format!("remounting cgroup at {}", at.display())))
    };
    match views.as_slice() {
        [] => Err(ContainerError::Spec { field: "mounts[].type".into(), msg: format!("cgroup mount at {}: no cgroup hierarchy is mounted on this machine", dest_rel.display()) }),
        [v] if v.0.is_empty() => bind(v, dest),
        _ => {
            mount(Some("tmpfs"), dest, Some("tmpfs"), hardening, Some("mode=755")).map_err(sys(format!("mounting tmpfs for cgroups on {}", dest_rel.display())))?;
            for v in &views {
                bind(v, &dest.join(&v.0))?;
            }
            if !ro.is_empty() {
                mount(None::<&str>, dest, None::<&str>, MsFlags::MS_REMOUNT | hardening | ro, Some("mode=755")).map_err(sys(format!("making {} read-only", dest_rel.display())))?;
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
    }

    #[test]
    fn secure_join_keeps_symlinks_inside_root() {
        let root = std::env::temp_dir().join(format!("podbox-sj-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../real", root.join("up")).unwrap();
        assert_eq!(secure_join(&root, Path::new("/evil/passwd")).unwrap(), root.join("etc/passwd"));
        assert_eq!(secure_join(&root, Path::new("/up/x")).unwrap(), root.join("real/x"));
        assert_eq!(secure_join(&root, Path::new("/../../a")).unwrap(), root.join("a"));
        fs::remove_dir_all(&root).unwrap();
    }
}
