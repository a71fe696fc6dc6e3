//! The kernel seam of the init: each operation the init performs on its own process (namespaces,
//! root file system, hostname, limits, user, capabilities, seccomp, exec) as one method of
//! `Kernel`. `Linux` makes the system calls; a recording fake (`fake_kernel.rs`, tests only)
//! lets unit tests check the init's order of operations without root.

use std::convert::Infallible;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};
use nix::mount::MsFlags;
use seccompiler::BpfProgram;

use super::mounts::MountOp;
use super::plan::{Rlimit, RootfsPlan};
use super::rootfs::DeviceNode;
use super::safe_path::RootDir;
use super::{ContainerError, Result, Rootfs, Stdio, io, sys};

/// The operations of the init. Each error says which step failed.
pub trait Kernel {
    /// What `open_root` gives: a descriptor of the new root for the real kernel.
    type Root;
    fn set_undumpable(&self) -> Result<()>;
    fn redirect_stdio(&self, stdio: &Stdio) -> Result<()>;
    /// uid and gid 0 of the user namespace `spawn` put the process in (its maps are written).
    fn become_root(&self) -> Result<()>;
    fn join_namespaces(&self, join: &[(CloneFlags, PathBuf)]) -> Result<()>;
    fn unshare(&self, flags: CloneFlags) -> Result<()>;
    fn loopback_up(&self) -> Result<()>;
    fn sethostname(&self, name: &str) -> Result<()>;
    fn setdomainname(&self, name: &str) -> Result<()>;
    /// Write `value` to a file under /proc (oom_score_adj, a sysctl); `what` names the step.
    fn write_proc(&self, path: &Path, value: &str, what: &str) -> Result<()>;
    /// Set the propagation of the init's mounts and mount the root; returns the directory to
    /// pivot into.
    fn mount_root(&self, rootfs: &Rootfs, propagation: MsFlags) -> Result<PathBuf>;
    /// Refuse a proc or sysfs mount whose destination in `root` is not an ordinary directory.
    fn check_mount_destination(&self, root: &Path, m: &MountOp) -> Result<()>;
    /// A handle on the root that the mounts and devices below are resolved in (not by path).
    fn open_root(&self, root: &Path) -> Result<Self::Root>;
    fn mount(&self, root: &Self::Root, m: &MountOp, cgroupns: bool) -> Result<()>;
    fn create_devices(&self, root: &Self::Root, nodes: &[DeviceNode]) -> Result<()>;
    fn pivot_root(&self, root: &Path) -> Result<()>;
    /// `--no-pivot`: MS_MOVE the root onto / and chroot.
    fn move_root(&self, root: &Path) -> Result<()>;
    /// chroot into `path` and chdir to its root.
    fn chroot(&self, path: &Path) -> Result<()>;
    /// After pivot_root: masked and read-only paths, a read-only root.
    fn finish_rootfs(&self, plan: &RootfsPlan) -> Result<()>;
    /// After `finish_rootfs`: a shared or unbindable `linux.rootfsPropagation` on the whole tree.
    fn set_root_propagation(&self, propagation: MsFlags) -> Result<()>;
    fn setrlimit(&self, limit: &Rlimit) -> Result<()>;
    /// `argv0` as execvp would find it (see `init::resolve_executable`).
    fn resolve_executable(&self, argv0: &str, env: &[String], cwd: &Path) -> Result<PathBuf>;
    fn umask(&self, mask: u32);
    fn load_seccomp(&self, filters: &[BpfProgram]) -> Result<()>;
    /// Drop every capability not in `keep` from the bounding set.
    fn limit_bounding(&self, keep: &CapsHashSet) -> Result<()>;
    fn set_keepcaps(&self, keep: bool) -> Result<()>;
    fn setgroups(&self, gids: &[u32]) -> Result<()>;
    fn setresgid(&self, gid: u32) -> Result<()>;
    fn setresuid(&self, uid: u32) -> Result<()>;
    fn set_caps(&self, set: CapSet, caps: &CapsHashSet) -> Result<()>;
    fn clear_ambient(&self);
    fn raise_ambient(&self, cap: Capability) -> Result<()>;
    fn chdir(&self, dir: &Path) -> Result<()>;
    fn set_no_new_privs(&self) -> Result<()>;
    /// Mark every descriptor from `first` on close-on-exec.
    fn cloexec_from(&self, first: u32) -> Result<()>;
    /// Returns only on failure.
    fn exec(&self, exe: &Path, argv: &[String], env: &[String]) -> Result<Infallible>;
}

/// The real kernel: system calls on the calling process.
pub struct Linux;

fn caps_err(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> ContainerError {
    move |e| ContainerError::Io { what: what.into(), source: std::io::Error::other(e.to_string()) }
}

fn prctl(option: libc::c_int, arg: libc::c_ulong, what: &str) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(option, arg, 0, 0, 0) } != 0 {
        return Err(io(what.to_string())(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Kernel for Linux {
    type Root = RootDir;
    fn set_undumpable(&self) -> Result<()> {
        super::sealed_exe::set_undumpable().map_err(io("PR_SET_DUMPABLE 0"))
    }
    fn redirect_stdio(&self, stdio: &Stdio) -> Result<()> {
        super::init::redirect_stdio(stdio)
    }
    fn become_root(&self) -> Result<()> {
        super::userns::become_root()
    }
    fn join_namespaces(&self, join: &[(CloneFlags, PathBuf)]) -> Result<()> {
        super::namespaces::join_all(join)
    }
    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        super::namespaces::unshare_new(flags)
    }
    fn loopback_up(&self) -> Result<()> {
        crate::network::loopback::up().map_err(io("bringing lo up in the new network namespace"))
    }
    fn sethostname(&self, name: &str) -> Result<()> {
        nix::unistd::sethostname(name).map_err(sys("setting hostname"))
    }
    fn setdomainname(&self, name: &str) -> Result<()> {
        let c = CString::new(name).unwrap_or_default();
        // SAFETY: a valid C string and its length.
        if unsafe { libc::setdomainname(c.as_ptr(), name.len()) } != 0 {
            return Err(io("setting domainname")(std::io::Error::last_os_error()));
        }
        Ok(())
    }
    fn write_proc(&self, path: &Path, value: &str, what: &str) -> Result<()> {
        std::fs::write(path, value).map_err(io(what.to_string()))
    }
    fn mount_root(&self, rootfs: &Rootfs, propagation: MsFlags) -> Result<PathBuf> {
        super::rootfs::mount_root(rootfs, propagation)
    }
    fn check_mount_destination(&self, root: &Path, m: &MountOp) -> Result<()> {
        super::mounts::check_proc_sys_destination(root, m)
    }
    fn open_root(&self, root: &Path) -> Result<RootDir> {
        RootDir::open(root)
    }
    fn mount(&self, root: &RootDir, m: &MountOp, cgroupns: bool) -> Result<()> {
        super::mounts::mount_one(root, m, cgroupns)
    }
    fn create_devices(&self, root: &RootDir, nodes: &[DeviceNode]) -> Result<()> {
        super::rootfs::create_devices(root, nodes)
    }
    fn pivot_root(&self, root: &Path) -> Result<()> {
        super::rootfs::pivot(root)
    }
    fn move_root(&self, root: &Path) -> Result<()> {
        super::rootfs::move_root(root)
    }
    fn chroot(&self, path: &Path) -> Result<()> {
        nix::unistd::chroot(path).map_err(sys(format!("chroot into {}", path.display())))?;
        nix::unistd::chdir("/").map_err(sys("chdir /"))
    }
    fn finish_rootfs(&self, plan: &RootfsPlan) -> Result<()> {
        super::rootfs::finish(plan)
    }
    fn set_root_propagation(&self, propagation: MsFlags) -> Result<()> {
        super::rootfs::set_root_propagation(propagation)
    }
    fn setrlimit(&self, l: &Rlimit) -> Result<()> {
        let want = libc::rlimit { rlim_cur: l.soft, rlim_max: l.hard };
        // SAFETY: setrlimit reads a valid struct.
        if unsafe { libc::setrlimit(l.resource, &want) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into a struct we own.
        unsafe { libc::getrlimit(l.resource, &mut cur) };
        Err(ContainerError::Spec {
            field: "process.rlimits".into(),
            msg: format!("{} {}:{} refused ({e}); the hard limit here is {} and raising it needs CAP_SYS_RESOURCE", l.name, l.soft, l.hard, cur.rlim_max),
        })
    }
    fn resolve_executable(&self, argv0: &str, env: &[String], cwd: &Path) -> Result<PathBuf> {
        super::init::resolve_executable(argv0, env, cwd)
    }
    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    fn load_seccomp(&self, filters: &[BpfProgram]) -> Result<()> {
        super::seccomp::install(filters)
    }
    fn limit_bounding(&self, keep: &CapsHashSet) -> Result<()> {
        for cap in caps::all() {
            if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap).map_err(caps_err("dropping from the capability bounding set"))?;
            }
        }
        Ok(())
    }
    fn set_keepcaps(&self, keep: bool) -> Result<()> {
        prctl(libc::PR_SET_KEEPCAPS, keep as libc::c_ulong, if keep { "PR_SET_KEEPCAPS 1" } else { "PR_SET_KEEPCAPS 0" })
    }
    fn setgroups(&self, gids: &[u32]) -> Result<()> {
        let groups: Vec<Gid> = gids.iter().copied().map(Gid::from_raw).collect();
        nix::unistd::setgroups(&groups).map_err(sys("setting supplementary groups"))
    }
    fn setresgid(&self, gid: u32) -> Result<()> {
        let g = Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(sys(format!("setting gid {gid}")))
    }
    fn setresuid(&self, uid: u32) -> Result<()> {
        let u = Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(sys(format!("setting uid {uid}")))
    }
    fn set_caps(&self, set: CapSet, caps: &CapsHashSet) -> Result<()> {
        let what = match set {
            CapSet::Inheritable => "setting inheritable capabilities",
            CapSet::Effective => "setting effective capabilities",
            CapSet::Permitted => "setting permitted capabilities",
            CapSet::Bounding => "setting the bounding capabilities",
            CapSet::Ambient => "setting ambient capabilities",
        };
        caps::set(None, set, caps).map_err(caps_err(what))
    }
    fn clear_ambient(&self) {
        caps::clear(None, CapSet::Ambient).ok();
    }
    fn raise_ambient(&self, cap: Capability) -> Result<()> {
        caps::raise(None, CapSet::Ambient, cap).map_err(caps_err("raising ambient capabilities"))
    }
    fn chdir(&self, dir: &Path) -> Result<()> {
        nix::unistd::chdir(dir).map_err(sys(format!("chdir to working directory {}", dir.display())))
    }
    fn set_no_new_privs(&self) -> Result<()> {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "setting no_new_privs")
    }
    fn cloexec_from(&self, first: u32) -> Result<()> {
        super::process::cloexec_from(first).map_err(io("marking inherited descriptors close-on-exec"))
    }
    fn exec(&self, exe: &Path, argv: &[String], env: &[String]) -> Result<Infallible> {
        super::init::exec(exe, argv, env)
    }
}
