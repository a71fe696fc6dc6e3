//! The command line's volume flags: `--volume NAME:TYPE[:ARG]`, `-v`, `--mount`.

use std::path::PathBuf;
use crate::pod::PodError;

use super::*;

/// `pod create --volume NAME[:emptyDir|:tmpfs[:SIZE]|:hostPath=PATH[:TYPE]]`.
pub fn parse_volume_flag(s: &str) -> Result<Volume, PodError> {
    let bad = |m: &str| PodError::Invalid(format!("--volume {s:?}: {m}; expected NAME, NAME:emptyDir, NAME:tmpfs[:SIZE] or NAME:hostPath=PATH[:TYPE]"));
    let (name, rest) = s.split_once(':').unwrap_or((s, "emptyDir"));
    let source = match rest.split_once(':').unwrap_or((rest, "")) {
        ("emptyDir", "") => VolumeSource::EmptyDir { memory: false, size_limit: None },
        ("tmpfs", size) => VolumeSource::EmptyDir {
            memory: true,
            size_limit: if size.is_empty() { None } else { Some(crate::pod::quantity::memory_flag(size).map_err(|e| bad(&e.to_string()))? as u64) },
        },
        _ if rest.starts_with("hostPath=") => {
            let spec = &rest["hostPath=".len()..];
            let (path, kind) = spec.rsplit_once(':').map(|(p, k)| (p, Some(k))).unwrap_or((spec, None));
            let kind = match kind {
                None => HostPathType::Unset,
                Some(k) => HostPathType::parse(k).ok_or_else(|| bad(&format!("unknown hostPath type {k:?}")))?,
            };
            VolumeSource::HostPath { path: PathBuf::from(path), kind }
        }
        _ => return Err(bad("unknown volume kind")),
    };
    Ok(Volume { name: name.into(), source })
}

/// `run -v NAME:/PATH[:ro]` (as podman's named volumes).
pub fn parse_v_flag(s: &str) -> Result<VolumeMount, PodError> {
    let bad = || PodError::Invalid(format!("-v {s:?}: expected VOLUME:/PATH[:ro|rw] with a volume of the pod (pod create --volume)"));
    let mut it = s.split(':');
    let (Some(name), Some(path)) = (it.next(), it.next()) else { return Err(bad()) };
    let read_only = match it.next() {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(_) => return Err(bad()),
    };
    if it.next().is_some() || name.starts_with('/') {
        return Err(bad());
    }
    Ok(VolumeMount { name: name.into(), mount_path: path.into(), read_only, ..Default::default() })
}

/// `run --mount type=volume,src=NAME,dst=/PATH[,ro][,subpath=SUB][,propagation=rslave]` (podman's syntax).
pub fn parse_mount_flag(s: &str) -> Result<VolumeMount, PodError> {
    let bad = |m: String| PodError::Invalid(format!("--mount {s:?}: {m}; expected type=volume,src=NAME,dst=/PATH[,ro][,subpath=SUB]"));
    let mut m = VolumeMount::default();
    for kv in s.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match (k, v) {
            ("type", "volume") => {}
            ("type", t) => return Err(bad(format!("type {t:?} is not supported (only volume: a volume of the pod)"))),
            ("src" | "source", v) => m.name = v.into(),
            ("dst" | "destination" | "target", v) => m.mount_path = v.into(),
            ("ro" | "readonly", "" | "true") => m.read_only = true,
            ("ro" | "readonly", "false") | ("rw", "") => m.read_only = false,
            ("subpath", v) => m.sub_path = Some(v.into()),
            ("propagation" | "bind-propagation", "rslave") => m.host_to_container = true,
            ("propagation" | "bind-propagation", "rprivate" | "private") => m.host_to_container = false,
            _ => return Err(bad(format!("unknown option {kv:?}"))),
        }
    }
    if m.name.is_empty() || m.mount_path.is_empty() {
        return Err(bad("src and dst are required".into()));
    }
    Ok(m)
}
