//! Paths inside a container's root, resolved by the kernel and held as descriptors: every lookup
//! is `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from a descriptor of the root, missing
//! components are created one at a time relative to their parent's descriptor, and mounts are
//! made onto the opened descriptor (`/proc/self/fd/N`) rather than onto a path string. A symlink
//! that a container process or a shared volume swaps in at any moment (CVE-2021-30465) can only
//! move a mount elsewhere *inside* the root, never onto the node.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};

use super::{ContainerError, Result};

/// As the kernel's own limit on symlinks in one lookup.
const MAX_SYMLINKS: u32 = 40;
/// Attempts at one component that a concurrent process keeps creating and removing.
const MAX_RACES: u32 = 100;

/// What the last component of a path must be when it has to be created.
#[derive(Clone, Copy, PartialEq)]
enum Leaf {
    Dir,
    File,
}

/// A directory that lookups cannot leave: the container's root file system (before pivot_root),
/// or `/` of the container (after).
pub struct RootDir {
    fd: OwnedFd,
    /// For messages only.
    path: PathBuf,
}

/// `/proc/self/fd/N` of a descriptor: mount(2) follows it to the very file the descriptor holds.
pub fn proc_fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn sys_err(what: String) -> impl FnOnce(Errno) -> ContainerError {
    move |source| ContainerError::Sys { what, source }
}

/// The path below the root, shown as the container sees it.
fn shown(rel: &Path) -> String {
    Path::new("/").join(rel).display().to_string()
}

impl RootDir {
    /// Open `path` (a trusted path of the runtime's own view) as the root to resolve in.
    pub fn open(path: &Path) -> Result<RootDir> {
        let fd = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(sys_err(format!("opening the container root {}", path.display())))?;
        Ok(RootDir { fd, path: path.to_path_buf() })
    }

    /// An O_PATH descriptor of `rel` (absolute or not, read as below the root), following symlinks
    /// as if the root were `/`. Magic links (/proc/PID/root, /proc/self/fd/N) are refused: they
    /// would jump out of the root.
    pub fn open_path(&self, rel: &Path) -> std::result::Result<OwnedFd, Errno> {
        self.open_with(rel, OFlag::O_PATH)
    }

    fn open_with(&self, rel: &Path, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let rel: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        for _ in 0..MAX_RACES {
            match openat2(self.fd.as_fd(), rel, how) {
                // A rename anywhere on the machine during the lookup: the kernel could not
                // guarantee the result stayed inside the root; ask again.
                Err(Errno::EAGAIN) => continue,
                other => return other,
            }
        }
        Err(Errno::EAGAIN)
    }

    /// The directory `rel` below the root, created with every missing parent (mode 0755).
    pub fn mkdir_all(&self, rel: &Path) -> Result<OwnedFd> {
        self.walk(rel, Leaf::Dir)
    }

    /// The file `rel` below the root: an existing one as it is (whatever its type, for the mount
    /// to judge), else a new empty regular file (0644), with every missing parent directory.
    pub fn create_file(&self, rel: &Path) -> Result<OwnedFd> {
        self.walk(rel, Leaf::File)
    }

    /// The parent directory of `rel` (created if missing) and its last component, for the
    /// callers that make the entry themselves (device nodes, symlinks).
    pub fn parent_of(&self, rel: &Path) -> Result<(OwnedFd, OsString)> {
        let name = rel.file_name().ok_or_else(|| ContainerError::Spec { field: "path".into(), msg: format!("{} names no file", rel.display()) })?;
        let parent = self.mkdir_all(rel.parent().unwrap_or(Path::new("")))?;
        Ok((parent, name.to_os_string()))
    }

    /// Walk `rel` one component at a time. Each parent is reopened from the root with
    /// RESOLVE_IN_ROOT, a symlink is read and its target spliced into the rest of the path (an
    /// absolute one restarting at the root), and a missing component is made with mkdirat or
    /// openat(O_CREAT | O_EXCL | O_NOFOLLOW) relative to its parent's descriptor. `resolved` is
    /// only a guess of where things are: a concurrent swap makes the next lookup land somewhere
    /// else in the root, never outside it.
    fn walk(&self, rel: &Path, leaf: Leaf) -> Result<OwnedFd> {
        // Most destinations exist (proc, dev, sys, etc/hosts...): one lookup in the root finds
        // them as the walk would (symlinks followed inside the root), in one system call instead
        // of three per component.
        if let Ok(fd) = self.open_path(rel) {
            return Ok(fd);
        }
        let mut pending: Vec<OsString> = Vec::new();
        push_components(&mut pending, rel);
        let mut resolved = PathBuf::new();
        let (mut hops, mut races) = (0, 0);
        while let Some(part) = pending.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let last = pending.is_empty();
            let parent = self.open_with(&resolved, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(sys_err(format!("opening {} in the container root {}", shown(&resolved), self.path.display())))?;
            let here = resolved.join(&part);
            match fstatat(parent.as_fd(), part.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(ContainerError::Spec { field: "mounts[].destination".into(), msg: format!("too many symbolic links under {}", shown(rel)) });
                    }
                    let target = readlinkat(parent.as_fd(), part.as_os_str()).map_err(sys_err(format!("reading the link {}", shown(&here))))?;
                    if Path::new(&target).is_absolute() {
                        resolved = PathBuf::new();
                    }
                    push_components(&mut pending, Path::new(&target));
                }
                Ok(_) => resolved = here,
                Err(Errno::ENOENT) => match create(&parent, &part, if last { leaf } else { Leaf::Dir }) {
                    Ok(()) => resolved = here,
                    // Made by someone else meanwhile (maybe as a symlink): look again.
                    Err(Errno::EEXIST) if races < MAX_RACES => {
                        races += 1;
                        pending.push(part);
                    }
                    Err(e) => return Err(ContainerError::Sys { what: format!("creating {} in the container root {}", shown(&here), self.path.display()), source: e }),
                },
                Err(e) => return Err(ContainerError::Sys { what: format!("looking up {} in the container root {}", shown(&here), self.path.display()), source: e }),
            }
        }
        self.open_path(&resolved).map_err(sys_err(format!("opening {} in the container root {}", shown(&resolved), self.path.display())))
    }
}

/// Push the components of `path` so that the first is popped first; `.` and `/` vanish.
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(p) => pending.push(p.to_os_string()),
            Component::ParentDir => pending.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// Make `name` in `parent` without following anything: a directory, or an empty regular file.
fn create(parent: &OwnedFd, name: &OsStr, leaf: Leaf) -> std::result::Result<(), Errno> {
    if name.as_bytes().contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    match leaf {
        Leaf::Dir => mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)),
        Leaf::File => openat(parent.as_fd(), name, OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644)).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn same_file(fd: &OwnedFd, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let st = nix::sys::stat::fstat(fd.as_fd()).unwrap();
        let m = fs::metadata(path).unwrap();
        st.st_ino == m.ino() && st.st_dev == m.dev()
    }

    #[test]
    fn lookups_and_creations_stay_inside_the_root() {
        let base = std::env::temp_dir().join(format!("podbox-safe-path-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (root, outside) = (base.join("root"), base.join("outside"));
        fs::create_dir_all(root.join("real")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../../outside", root.join("up")).unwrap();
        symlink("/real/new", root.join("dangling")).unwrap();
        let r = RootDir::open(&root).unwrap();

        let fd = r.mkdir_all(Path::new("/abs/x/y")).unwrap();
        assert!(same_file(&fd, &root.join(outside.strip_prefix("/").unwrap()).join("x/y")));
        let fd = r.create_file(Path::new("/up/f")).unwrap();
        assert!(same_file(&fd, &root.join("outside/f")));
        let fd = r.mkdir_all(Path::new("/dangling")).unwrap();
        assert!(same_file(&fd, &root.join("real/new")));
        let fd = r.mkdir_all(Path::new("/../../real")).unwrap();
        assert!(same_file(&fd, &root.join("real")));
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "something was created outside the root");

        fs::remove_dir_all(&base).unwrap();
        // A magic link would leave any root: refused, not followed.
        let slash = RootDir::open(Path::new("/")).unwrap();
        assert_eq!(slash.open_path(Path::new("/proc/self/root/etc")).unwrap_err(), Errno::ELOOP);
    }
}
