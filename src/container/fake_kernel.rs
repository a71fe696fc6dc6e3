//! A recording `Kernel` for unit tests: each operation is logged as one line (name and
//! arguments) instead of made, and one named operation can be told to fail. With it the tests
//! below run the init's plan without root and assert the order of its operations.

use std::cell::RefCell;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::sched::CloneFlags;
use nix::mount::MsFlags;
use seccompiler::BpfProgram;

use super::kernel::Kernel;
use super::mounts::MountOp;
use super::plan::{Rlimit, RootfsPlan};
use super::rootfs::DeviceNode;
use super::{ContainerError, Result, Rootfs, Stdio};

/// The error a fake `exec` "returns": the sequence reached its end.
pub const EXECED: &str = "exec reached (fake)";

#[derive(Default)]
pub struct FakeKernel {
    pub ops: RefCell<Vec<String>>,
    /// The operation (by name, the first word of its log line) that fails.
    pub fail: Option<&'static str>,
}

impl FakeKernel {
    fn op(&self, name: &str, args: String) -> Result<()> {
        self.ops.borrow_mut().push(if args.is_empty() { name.to_string() } else { format!("{name} {args}") });
        if self.fail == Some(name) {
            return Err(ContainerError::Io { what: format!("{name} {args}"), source: std::io::Error::from_raw_os_error(libc::EPERM) });
        }
        Ok(())
    }
    /// The logged operation names, without arguments.
    pub fn names(&self) -> Vec<String> {
        self.ops.borrow().iter().map(|o| o.split(' ').next().unwrap_or_default().to_string()).collect()
    }
}

fn caps_list(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    v.sort();
    v.join(",")
}

impl Kernel for FakeKernel {
    type Root = PathBuf;
    fn set_undumpable(&self) -> Result<()> {
        self.op("set_undumpable", String::new())
    }
    fn redirect_stdio(&self, _stdio: &Stdio) -> Result<()> {
        self.op("redirect_stdio", String::new())
    }
    fn become_root(&self) -> Result<()> {
        self.op("become_root", String::new())
    }
    fn join_namespaces(&self, join: &[(CloneFlags, PathBuf)]) -> Result<()> {
        self.op("join_namespaces", format!("{:?}", join.iter().map(|(_, p)| p.display().to_string()).collect::<Vec<_>>()))
    }
    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        self.op("unshare", format!("{:#x}", flags.bits()))
    }
    fn loopback_up(&self) -> Result<()> {
        self.op("loopback_up", String::new())
    }
    fn sethostname(&self, name: &str) -> Result<()> {
        self.op("sethostname", name.into())
    }
    fn setdomainname(&self, name: &str) -> Result<()> {
        self.op("setdomainname", name.into())
    }
    fn write_proc(&self, path: &Path, value: &str, _what: &str) -> Result<()> {
        self.op("write_proc", format!("{} {value}", path.display()))
    }
    fn mount_root(&self, rootfs: &Rootfs, propagation: MsFlags) -> Result<PathBuf> {
        let Rootfs::Plain(p) = rootfs else { panic!("the tests use a plain root") };
        self.op("mount_root", format!("{} {:#x}", p.display(), propagation.bits())).map(|_| p.clone())
    }
    fn check_mount_destination(&self, _root: &Path, m: &MountOp) -> Result<()> {
        self.op("check_mount_destination", m.destination.display().to_string())
    }
    fn open_root(&self, root: &Path) -> Result<PathBuf> {
        self.op("open_root", root.display().to_string()).map(|_| root.to_path_buf())
    }
    fn mount(&self, _root: &PathBuf, m: &MountOp, _cgroupns: bool) -> Result<()> {
        self.op("mount", format!("{} {} on {}", m.typ, m.source.display(), m.destination.display()))
    }
    fn create_devices(&self, _root: &PathBuf, nodes: &[DeviceNode]) -> Result<()> {
        self.op("create_devices", nodes.len().to_string())
    }
    fn pivot_root(&self, root: &Path) -> Result<()> {
        self.op("pivot_root", root.display().to_string())
    }
    fn move_root(&self, root: &Path) -> Result<()> {
        self.op("move_root", root.display().to_string())
    }
    fn chroot(&self, path: &Path) -> Result<()> {
        self.op("chroot", path.display().to_string())
    }
    fn finish_rootfs(&self, plan: &RootfsPlan) -> Result<()> {
        self.op("finish_rootfs", format!("masked {:?} readonly {:?}", plan.masked_paths, plan.readonly_paths))
    }
    fn set_root_propagation(&self, propagation: MsFlags) -> Result<()> {
        self.op("set_root_propagation", format!("{:#x}", propagation.bits()))
    }
    fn setrlimit(&self, l: &Rlimit) -> Result<()> {
        self.op("setrlimit", format!("{} {}:{}", l.name, l.soft, l.hard))
    }
    fn resolve_executable(&self, argv0: &str, _env: &[String], _cwd: &Path) -> Result<PathBuf> {
        self.op("resolve_executable", argv0.into()).map(|_| PathBuf::from("/bin").join(argv0))
    }
    fn umask(&self, mask: u32) {
        let _ = self.op("umask", format!("{mask:o}"));
    }
    fn load_seccomp(&self, filters: &[BpfProgram]) -> Result<()> {
        self.op("load_seccomp", filters.len().to_string())
    }
    fn limit_bounding(&self, keep: &CapsHashSet) -> Result<()> {
        self.op("limit_bounding", caps_list(keep))
    }
    fn set_keepcaps(&self, keep: bool) -> Result<()> {
        self.op("set_keepcaps", keep.to_string())
    }
    fn setgroups(&self, gids: &[u32]) -> Result<()> {
        self.op("setgroups", format!("{gids:?}"))
    }
    fn setresgid(&self, gid: u32) -> Result<()> {
        self.op("setresgid", gid.to_string())
    }
    fn setresuid(&self, uid: u32) -> Result<()> {
        self.op("setresuid", uid.to_string())
    }
    fn set_caps(&self, set: CapSet, caps: &CapsHashSet) -> Result<()> {
        self.op("set_caps", format!("{set:?} {}", caps_list(caps)))
    }
    fn clear_ambient(&self) {
        let _ = self.op("clear_ambient", String::new());
    }
    fn raise_ambient(&self, cap: Capability) -> Result<()> {
        self.op("raise_ambient", cap.to_string())
    }
    fn chdir(&self, dir: &Path) -> Result<()> {
        self.op("chdir", dir.display().to_string())
    }
    fn set_no_new_privs(&self) -> Result<()> {
        self.op("set_no_new_privs", String::new())
    }
    fn cloexec_from(&self, first: u32) -> Result<()> {
        self.op("cloexec_from", first.to_string())
    }
    fn exec(&self, exe: &Path, argv: &[String], _env: &[String]) -> Result<Infallible> {
        self.op("exec", format!("{} {argv:?}", exe.display()))?;
        Err(ContainerError::StartFailed { code: 0, msg: EXECED.into() })
    }
}
