//! Volume validation: names, mounts and sub-paths of a pod's volumes (`check`), and the node
//! side of hostPath volumes (`check_host_path`, `check_node`).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use crate::pod::PodError;

use super::*;

/// An error at a field: (path, message). The manifest parser reports it as a manifest error, the
/// CLI as a plain one.
pub type FieldError = (String, String);

/// Check volumes and the mounts of `containers` (name, mounts) against them: unique valid names,
/// known volumes, absolute mount paths (each once per container), relative subPaths without `..`.
/// Field paths are a manifest's (`spec.volumes[1].name`); `list` names the container list.
pub fn check(volumes: &[Volume], containers: &[(&str, &str, &[VolumeMount])]) -> Result<(), FieldError> {
    let mut names = HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let field = format!("spec.volumes[{i}].name");
        if crate::pod::names::validate_name("volume", &v.name).is_err() {
            return Err((field, format!("{:?} is not a valid volume name (1-63 lowercase letters, digits and '-')", v.name)));
        }
        if !names.insert(v.name.as_str()) {
            return Err((field, format!("{:?}: two volumes have this name", v.name)));
        }
        match &v.source {
            VolumeSource::HostPath { path, .. } if !path.is_absolute() => {
                return Err((format!("spec.volumes[{i}].hostPath.path"), format!("{}: must be an absolute path", path.display())));
            }
            VolumeSource::Files { files, .. } => {
                for f in files {
                    check_relative(&f.path).map_err(|m| (format!("spec.volumes[{i}]"), format!("file {:?}: {m}", f.path)))?;
                }
            }
            _ => {}
        }
    }
    for (list, i, mounts) in containers.iter().map(|(l, i, m)| (*l, *i, *m)) {
        let mut paths = HashSet::new();
        for (j, m) in mounts.iter().enumerate() {
            let field = |f: &str| format!("spec.{list}[{i}].volumeMounts[{j}].{f}");
            if !names.contains(m.name.as_str()) {
                return Err((field("name"), format!("{:?}: no volume of the pod has this name", m.name)));
            }
            if !m.mount_path.starts_with('/') {
                return Err((field("mountPath"), format!("{:?}: must be an absolute path", m.mount_path)));
            }
            if m.mount_path.trim_end_matches('/').is_empty() {
                return Err((field("mountPath"), "a volume cannot be mounted over the container's root".into()));
            }
            if Path::new(&m.mount_path).components().any(|c| c == std::path::Component::ParentDir) {
                return Err((field("mountPath"), format!("{:?}: must not contain '..'", m.mount_path)));
            }
            if !paths.insert(m.mount_path.trim_end_matches('/').to_string()) {
                return Err((field("mountPath"), format!("{:?}: mounted twice in this container", m.mount_path)));
            }
            if let Some(s) = &m.sub_path {
                check_relative(s).map_err(|msg| (field("subPath"), format!("{s:?}: {msg}")))?;
            }
        }
    }
    Ok(())
}

/// A path that stays inside the directory it is relative to, by its text.
pub(super) fn check_relative(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("must not be empty");
    }
    if p.starts_with('/') {
        return Err("must be a relative path");
    }
    if p.split('/').any(|c| c == "..") {
        return Err("must not contain '..'");
    }
    Ok(())
}

/// The type check of a hostPath, as the kubelet does it, without creating anything: an
/// `…OrCreate` path may be missing, anything else must exist with the right type.
pub fn check_host_path(path: &Path, kind: HostPathType) -> Result<(), String> {
    let meta = fs::metadata(path);
    let want = match kind {
        HostPathType::Unset => return Ok(()),
        HostPathType::DirectoryOrCreate | HostPathType::FileOrCreate if meta.is_err() => return Ok(()),
        HostPathType::Directory | HostPathType::DirectoryOrCreate => "a directory",
        HostPathType::File | HostPathType::FileOrCreate => "a file",
        HostPathType::Socket => "a socket",
        HostPathType::CharDevice => "a character device",
        HostPathType::BlockDevice => "a block device",
    };
    let m = meta.map_err(|e| format!("hostPath {} (type {kind:?}): {e}", path.display()))?;
    let t = m.file_type();
    let ok = match kind {
        HostPathType::Directory | HostPathType::DirectoryOrCreate => t.is_dir(),
        HostPathType::File | HostPathType::FileOrCreate => t.is_file(),
        HostPathType::Socket => t.is_socket(),
        HostPathType::CharDevice => t.is_char_device(),
        HostPathType::BlockDevice => t.is_block_device(),
        HostPathType::Unset => true,
    };
    if ok { Ok(()) } else { Err(format!("hostPath {} is not {want} (type {kind:?})", path.display())) }
}

/// Every check of a pod's volumes that needs the node, before anything is made: hostPath types.
pub fn check_node(volumes: &[Volume]) -> Result<(), PodError> {
    for (i, v) in volumes.iter().enumerate() {
        if let VolumeSource::HostPath { path, kind } = &v.source {
            check_host_path(path, *kind).map_err(|m| PodError::Invalid(format!("volume {} (spec.volumes[{i}].hostPath): {m}", v.name)))?;
        }
    }
    Ok(())
}
