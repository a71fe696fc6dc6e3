//! Pod volumes: what a pod shares besides its network. A volume is made once per pod, under
//! `<pod dir>/volumes/<name>` (emptyDir: a directory, or a tmpfs for `medium: Memory`;
//! configMap/secret: files, a secret always on a tmpfs), or is a node path (hostPath, its type
//! checked as the kubelet does). Each container's `volumeMounts` become bind mounts of its OCI
//! spec. A `subPath` is resolved here, in the node's mount namespace, one component at a time
//! without following symlinks, and the opened file is bind-mounted through `/proc/self/fd/N` on a
//! staging point in the container's state directory: a symlink a container planted in a shared
//! volume cannot make the mount point outside it.

mod check;
mod flags;
mod subpath;

use check::*;
pub use check::{FieldError, check, check_host_path, check_node};
pub use flags::{parse_mount_flag, parse_v_flag, parse_volume_flag};
use subpath::*;
pub use subpath::{open_beneath, stage_subpaths, unstage_subpaths};

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use serde::{Deserialize, Serialize};

use super::PodError;
use super::sandbox;

/// A volume of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeSource {
    /// Lives as long as the pod. On disk: in the pod's state directory (so on the file system of
    /// `--root`); `memory`: a tmpfs of `size_limit` bytes (default: the kernel's, half the RAM).
    EmptyDir {
        #[serde(default)]
        memory: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_limit: Option<u64>,
    },
    /// A path of the node.
    HostPath { path: PathBuf, #[serde(default)] kind: HostPathType },
    /// Files of a ConfigMap or Secret document. The contents are never serialized: records on
    /// disk name the files' source only, so a secret's data is only ever on its tmpfs.
    Files {
        secret: bool,
        /// The ConfigMap's or Secret's name.
        object: String,
        /// How the manifest asked for them (for `pod generate`): items (key, path, mode),
        /// defaultMode, optional.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        items: Vec<(String, String, Option<u32>)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_mode: Option<u32>,
        #[serde(default)]
        optional: bool,
        #[serde(skip)]
        files: Vec<ProjectedFile>,
    },
}

/// One file of a configMap or secret volume.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedFile {
    /// Relative path inside the volume (validated: no `..`, not absolute).
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// hostPath `type`, with the kubelet's checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostPathType {
    /// `""`: no check.
    #[default]
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    pub fn parse(s: &str) -> Option<HostPathType> {
        Some(match s {
            "" => HostPathType::Unset,
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            "Directory" => HostPathType::Directory,
            "FileOrCreate" => HostPathType::FileOrCreate,
            "File" => HostPathType::File,
            "Socket" => HostPathType::Socket,
            "CharDevice" => HostPathType::CharDevice,
            "BlockDevice" => HostPathType::BlockDevice,
            _ => return None,
        })
    }
}

/// Where a container mounts a volume (a manifest's `volumeMounts[]`, `run -v/--mount`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// `mountPropagation: HostToContainer`: mounts made later on the node below the source show
    /// up in the container (rslave); default `None` (rprivate).
    #[serde(default)]
    pub host_to_container: bool,
    /// CRI's `PROPAGATION_BIDIRECTIONAL` (Kubernetes' `Bidirectional`): mounts also go from the
    /// container to the node (rshared; the node's side must be a shared mount). Privileged only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bidirectional: bool,
}

fn kernel(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> PodError {
    move |e| PodError::Kernel(format!("{what}: {e}"))
}

/// Where the pod's volume `name` lives.
pub fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

/// A hostPath volume's node path checked against its type, and made for the `…OrCreate` types.
fn prepare_host_path(path: &Path, kind: HostPathType) -> Result<(), PodError> {
    check_host_path(path, kind).map_err(PodError::Invalid)?;
    match kind {
        HostPathType::DirectoryOrCreate if !path.exists() => {
            fs::create_dir_all(path).map_err(kernel(format!("creating hostPath {}", path.display())))?;
        }
        HostPathType::FileOrCreate if !path.exists() => {
            if let Some(p) = path.parent() {
                fs::create_dir_all(p).map_err(kernel(format!("creating {}", p.display())))?;
            }
            fs::OpenOptions::new().write(true).create(true).truncate(false).open(path).map_err(kernel(format!("creating hostPath {}", path.display())))?;
        }
        _ => {}
    }
    Ok(())
}

/// Make the pod's volumes (pod create). Undone by `unmount_all` and the removal of the pod's
/// directory; hostPath directories and files created for `…OrCreate` stay, as with the kubelet.
/// With `fs_group` (fsGroup) the volumes podbox makes belong to that group, emptyDirs set-gid so
/// that what containers create there does too, as the kubelet does.
pub fn setup(pod_dir: &Path, volumes: &[Volume], fs_group: Option<u32>) -> Result<(), PodError> {
    let chgrp = |p: &Path| -> Result<(), PodError> {
        match fs_group {
            Some(g) => std::os::unix::fs::chown(p, None, Some(g)).map_err(kernel(format!("chgrp {}", p.display()))),
            None => Ok(()),
        }
    };
    for v in volumes {
        let dir = volume_dir(pod_dir, &v.name);
        match &v.source {
            VolumeSource::EmptyDir { memory, size_limit } => {
                fs::create_dir_all(&dir).map_err(kernel(format!("creating {}", dir.display())))?;
                if *memory {
                    let mut data = "mode=0777".to_string();
                    if let Some(s) = size_limit {
                        data.push_str(&format!(",size={s}"));
                    }
                    mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data.as_str()))
                        .map_err(|e| PodError::Kernel(format!("mounting the tmpfs of volume {}: {e}", v.name)))?;
                }
                // As the kubelet makes it: every user of the pod may write.
                chgrp(&dir)?;
                let mode = if fs_group.is_some() { 0o2777 } else { 0o777 };
                fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(kernel(format!("chmod {}", dir.display())))?;
            }
            VolumeSource::HostPath { path, kind } => prepare_host_path(path, *kind)?,
            VolumeSource::Files { secret, files, .. } => {
                fs::create_dir_all(&dir).map_err(kernel(format!("creating {}", dir.display())))?;
                if *secret {
                    // A secret never touches a disk: its files are written into a tmpfs.
                    mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("mode=0755,size=4m"))
                        .map_err(|e| PodError::Kernel(format!("mounting the tmpfs of secret volume {}: {e}", v.name)))?;
                }
                for f in files {
                    let p = dir.join(&f.path);
                    if let Some(parent) = p.parent() {
                        fs::create_dir_all(parent).map_err(kernel(format!("creating {}", parent.display())))?;
                    }
                    fs::write(&p, &f.data).map_err(kernel(format!("writing {}", p.display())))?;
                    chgrp(&p)?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(f.mode & 0o7777)).map_err(kernel(format!("chmod {}", p.display())))?;
                }
            }
        }
    }
    Ok(())
}

/// Unmount every mount podbox made for the pod's volumes: subPath staging points of each
/// container, then the volumes' tmpfs. By name, without reading the mount table. Must run before
/// the pod's directory is removed, so that the removal never reaches through a mount.
pub fn unmount_all(pod_dir: &Path) {
    for c in crate::state::list_dir(&pod_dir.join("containers")).unwrap_or_default() {
        unstage_subpaths(&pod_dir.join("containers").join(c));
    }
    for v in crate::state::list_dir(&pod_dir.join("volumes")).unwrap_or_default() {
        sandbox::unmount(&volume_dir(pod_dir, &v));
    }
}

/// The source directory of a volume on the node.
fn source_of(pod_dir: &Path, v: &Volume) -> PathBuf {
    match &v.source {
        VolumeSource::HostPath { path, .. } => path.clone(),
        _ => volume_dir(pod_dir, &v.name),
    }
}

/// The bind mounts of a container's `mounts` as OCI mount entries: (destination, source,
/// options). A subPath's source is its staging point (see `stage_subpaths`); configMap and secret
/// volumes are always read-only.
pub fn spec_mounts(pod_dir: &Path, volumes: &[Volume], cdir: &Path, mounts: &[VolumeMount]) -> Result<Vec<(String, PathBuf, Vec<String>)>, PodError> {
    let mut out = Vec::new();
    for (j, m) in mounts.iter().enumerate() {
        let v = volumes.iter().find(|v| v.name == m.name).ok_or_else(|| PodError::Invalid(format!("volume mount {j}: no volume {:?} in the pod", m.name)))?;
        let src = if m.sub_path.is_some() { staging(cdir, j) } else { source_of(pod_dir, v) };
        let mut opts: Vec<String> = vec!["rbind".into()];
        // Volumes podbox makes carry no set-uid files or device nodes; a hostPath is the node's
        // and is mounted as it is (a CharDevice volume is what the user asked for).
        if !matches!(v.source, VolumeSource::HostPath { .. }) {
            opts.extend(["nosuid".into(), "nodev".into()]);
        }
        if m.read_only || matches!(v.source, VolumeSource::Files { .. }) {
            opts.push("ro".into());
        }
        opts.push(match (m.bidirectional, m.host_to_container) {
            (true, _) => "rshared".into(),
            (false, true) => "rslave".into(),
            (false, false) => "rprivate".into(),
        });
        out.push((m.mount_path.clone(), src, opts));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed(name: &str) -> Volume {
        Volume { name: name.into(), source: VolumeSource::EmptyDir { memory: false, size_limit: None } }
    }

    #[test]
    fn checks_name_the_field() {
        let m = |name: &str, path: &str, sub: Option<&str>| VolumeMount { name: name.into(), mount_path: path.into(), sub_path: sub.map(String::from), ..Default::default() };
        let ok = [m("a", "/a", None), m("a", "/b", Some("x/y"))];
        check(&[ed("a")], &[("containers", "0", &ok)]).unwrap();
        let field = |vols: &[Volume], ms: &[VolumeMount]| check(vols, &[("containers", "1", ms)]).unwrap_err().0;
        assert_eq!(field(&[ed("a"), ed("a")], &[]), "spec.volumes[1].name");
        assert_eq!(field(&[ed("A")], &[]), "spec.volumes[0].name");
        assert_eq!(field(&[ed("a")], &[m("b", "/a", None)]), "spec.containers[1].volumeMounts[0].name");
        assert_eq!(field(&[ed("a")], &[m("a", "a", None)]), "spec.containers[1].volumeMounts[0].mountPath");
        assert_eq!(field(&[ed("a")], &[m("a", "/", None)]), "spec.containers[1].volumeMounts[0].mountPath");
        assert_eq!(field(&[ed("a")], &[m("a", "/x/../etc", None)]), "spec.containers[1].volumeMounts[0].mountPath");
        assert_eq!(field(&[ed("a")], &[m("a", "/a", None), m("a", "/a/", None)]), "spec.containers[1].volumeMounts[1].mountPath");
        for bad in ["../x", "a/../../b", "/etc", ""] {
            assert_eq!(field(&[ed("a")], &[m("a", "/a", Some(bad))]), "spec.containers[1].volumeMounts[0].subPath", "{bad}");
        }
    }

    #[test]
    fn spec_mounts_are_binds_with_the_right_options() {
        let vols = [
            ed("e"),
            Volume { name: "h".into(), source: VolumeSource::HostPath { path: "/srv".into(), kind: HostPathType::Unset } },
            Volume { name: "s".into(), source: VolumeSource::Files { secret: true, object: "x".into(), items: vec![], default_mode: None, optional: false, files: vec![] } },
        ];
        let m = |name: &str, path: &str, ro: bool, sub: Option<&str>, h2c: bool| VolumeMount { name: name.into(), mount_path: path.into(), read_only: ro, sub_path: sub.map(String::from), host_to_container: h2c, bidirectional: false };
        let got = spec_mounts(Path::new("/r/pods/p"), &vols, Path::new("/r/pods/p/containers/c"), &[m("e", "/e", false, None, false), m("h", "/h", true, None, true), m("s", "/s", false, None, false), m("e", "/sub", false, Some("a/b"), false)]).unwrap();
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(got[0], ("/e".to_string(), PathBuf::from("/r/pods/p/volumes/e"), o(&["rbind", "nosuid", "nodev", "rprivate"])));
        assert_eq!(got[1], ("/h".to_string(), PathBuf::from("/srv"), o(&["rbind", "ro", "rslave"])));
        // A secret is read-only even without readOnly.
        assert_eq!(got[2], ("/s".to_string(), PathBuf::from("/r/pods/p/volumes/s"), o(&["rbind", "nosuid", "nodev", "ro", "rprivate"])));
        // A subPath mounts its staging point, never a path inside the volume.
        assert_eq!(got[3].1, PathBuf::from("/r/pods/p/containers/c/subpaths/3"));
        // The records never carry a configMap's or secret's contents.
        let with_data = Volume { name: "s".into(), source: VolumeSource::Files { secret: true, object: "x".into(), items: vec![], default_mode: None, optional: false, files: vec![ProjectedFile { path: "pw".into(), data: b"hunter2".to_vec(), mode: 0o400 }] } };
        assert!(!serde_json::to_string(&with_data).unwrap().contains("hunter2"));
    }

    #[test]
    fn flags_parse() {
        assert_eq!(parse_volume_flag("data").unwrap(), ed("data"));
        assert_eq!(parse_volume_flag("c:tmpfs:1Mi").unwrap().source, VolumeSource::EmptyDir { memory: true, size_limit: Some(1 << 20) });
        assert_eq!(parse_volume_flag("h:hostPath=/srv/x:DirectoryOrCreate").unwrap().source, VolumeSource::HostPath { path: "/srv/x".into(), kind: HostPathType::DirectoryOrCreate });
        assert_eq!(parse_volume_flag("h:hostPath=/srv").unwrap().source, VolumeSource::HostPath { path: "/srv".into(), kind: HostPathType::Unset });
        for bad in ["d:nfs", "h:hostPath=/x:Dir", "c:tmpfs:lots"] {
            assert!(parse_volume_flag(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_v_flag("d:/data:ro").unwrap(), VolumeMount { name: "d".into(), mount_path: "/data".into(), read_only: true, ..Default::default() });
        assert!(parse_v_flag("/etc:/data").is_err());
        let m = parse_mount_flag("type=volume,src=d,dst=/x,ro,subpath=a/b").unwrap();
        assert_eq!((m.read_only, m.sub_path.as_deref()), (true, Some("a/b")));
        assert!(parse_mount_flag("type=bind,src=/etc,dst=/x").is_err());
    }

    #[test]
    fn host_path_types_are_checked() {
        assert!(check_host_path(Path::new("/"), HostPathType::Directory).is_ok());
        assert!(check_host_path(Path::new("/"), HostPathType::File).unwrap_err().contains("is not a file"));
        assert!(check_host_path(Path::new("/dev/null"), HostPathType::CharDevice).is_ok());
        assert!(check_host_path(Path::new("/dev/null"), HostPathType::BlockDevice).is_err());
        assert!(check_host_path(Path::new("/nonexistent/podbox"), HostPathType::Directory).is_err());
        assert!(check_host_path(Path::new("/nonexistent/podbox"), HostPathType::DirectoryOrCreate).is_ok());
        assert!(check_host_path(Path::new("/dev/null"), HostPathType::DirectoryOrCreate).is_err());
    }

    #[test]
    fn open_beneath_refuses_symlinks_and_creates_directories() {
        let root = std::env::temp_dir().join(format!("podbox-vol-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("d", root.join("inner")).unwrap();
        assert!(open_beneath(&root, "evil").unwrap_err().contains("symbolic link"));
        assert!(open_beneath(&root, "evil/passwd").unwrap_err().contains("symbolic link"));
        assert!(open_beneath(&root, "inner").unwrap_err().contains("symbolic link"));
        assert!(open_beneath(&root, "d/../..").is_err());
        open_beneath(&root, "new/deeper").unwrap();
        assert!(root.join("new/deeper").is_dir());
        fs::remove_dir_all(&root).unwrap();
    }
}
