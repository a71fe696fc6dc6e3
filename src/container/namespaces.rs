//! Namespaces from the spec's `linux.namespaces`: which to join by path (setns) and which to
//! create (unshare). The PID namespace is special: it applies to children, so the monitor enters
//! it before forking the init; every other namespace is handled by the init itself.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns, unshare};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{ContainerError, Result, sys};

#[derive(Debug, Clone)]
pub struct Plan {
    /// (namespace flag, path) pairs to join, PID excluded.
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// Namespaces to create, PID excluded.
    pub new: CloneFlags,
    /// None: stay in the caller's PID namespace; Some(None): a new one; Some(Some(p)): join p.
    pub pid: Option<Option<PathBuf>>,
    pub new_uts: bool,
    /// The spec has a mount namespace (new or joined). Without one the process stays in the
    /// caller's: no root file system is set up and it sees the caller's files, as runc does.
    pub mount_ns: bool,
    /// The user namespace, created or joined by `spawn` before every other (see `userns`).
    pub user: Option<super::userns::UserNs>,
}

fn flag(t: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        other => {
            return Err(ContainerError::Spec {
                field: "linux.namespaces".into(),
                msg: format!("namespace type {other:?} is not supported by podbox"),
            });
        }
    })
}

pub fn plan(spec: &Spec) -> Result<Plan> {
    let mut p = Plan { join: vec![], new: CloneFlags::empty(), pid: None, new_uts: false, mount_ns: false, user: None };
    let mut user = None;
    let empty = vec![];
    let nss = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).unwrap_or(&empty);
    let mut has_mount = false;
    for ns in nss {
        let f = flag(ns.typ())?;
        if f == CloneFlags::CLONE_NEWNS {
            has_mount = true;
        }
        match (f, ns.path()) {
            (CloneFlags::CLONE_NEWPID, path) => p.pid = Some(path.clone()),
            (CloneFlags::CLONE_NEWUSER, path) => user = Some(path.clone()),
            (f, Some(path)) => p.join.push((f, path.clone())),
            (f, None) => {
                if f == CloneFlags::CLONE_NEWUTS {
                    p.new_uts = true;
                }
                p.new |= f
            }
        }
    }
    if !has_mount {
        refuse_without_mount_ns(spec)?;
    }
    p.mount_ns = has_mount;
    p.user = super::userns::from_spec(spec, user)?;
    Ok(p)
}

/// Without a mount namespace nothing of the file system view can be set up (it would change
/// the caller's): every field that asks for some of it is refused, by name, rather than dropped.
fn refuse_without_mount_ns(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fields = [
        ("mounts", spec.mounts().as_ref().is_some_and(|m| !m.is_empty())),
        ("root.readonly", spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false)),
        ("linux.maskedPaths", linux.and_then(|l| l.masked_paths().as_ref()).is_some_and(|m| !m.is_empty())),
        ("linux.readonlyPaths", linux.and_then(|l| l.readonly_paths().as_ref()).is_some_and(|m| !m.is_empty())),
        ("linux.devices", linux.and_then(|l| l.devices().as_ref()).is_some_and(|m| !m.is_empty())),
        ("linux.rootfsPropagation", linux.and_then(|l| l.rootfs_propagation().as_ref()).is_some()),
    ];
    if let Some((field, _)) = fields.iter().find(|(_, set)| *set) {
        return Err(ContainerError::Spec {
            field: (*field).into(),
            msg: "needs a mount namespace: add {\"type\": \"mount\"} to linux.namespaces, or leave the field out to run in the caller's mount namespace (chrooted into root.path)".into(),
        });
    }
    Ok(())
}

/// Open every namespace to join first (paths resolve in the caller's mount namespace), then join.
pub fn join_all(join: &[(CloneFlags, PathBuf)]) -> Result<()> {
    let mut files = Vec::with_capacity(join.len());
    for (f, path) in join {
        let file = File::open(path).map_err(|e| ContainerError::Io { what: format!("opening namespace {}", path.display()), source: e })?;
        files.push((*f, path, file));
    }
    // The mount namespace last: after it, the other paths might no longer resolve.
    files.sort_by_key(|(f, _, _)| *f == CloneFlags::CLONE_NEWNS);
    for (f, path, file) in &files {
        setns(file.as_fd(), *f).map_err(sys(format!("joining namespace {}", path.display())))?;
    }
    Ok(())
}

pub fn unshare_new(flags: CloneFlags) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(sys("creating namespaces (unshare)"))
}

/// The PID namespace the container's init is to be born in (see `spawn::PidNs`), its file
/// opened here, in the caller's mount namespace.
pub fn pid_ns_for(pid: &Option<Option<PathBuf>>) -> Result<super::spawn::PidNs> {
    use super::spawn::PidNs;
    Ok(match pid {
        None => PidNs::Inherit,
        Some(None) => PidNs::New,
        Some(Some(path)) => PidNs::Join(File::open(path).map_err(|e| ContainerError::Io { what: format!("opening namespace {}", path.display()), source: e })?),
    })
}
