//! A pod's volumes and a container's volume mounts as the manifest writes them (emptyDir,
//! hostPath, configMap, secret, projected file modes), and their conversion into the pod
//! layer's `Volume` and `VolumeMount`.

use serde::Deserialize;
use crate::pod::PodError;
use crate::pod::quantity;
use crate::pod::volumes::{HostPathType, Volume, VolumeMount, VolumeSource};

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct VolumeDoc {
    pub(super) name: String,
    #[serde(default)]
    pub(super) empty_dir: Option<EmptyDirDoc>,
    #[serde(default)]
    pub(super) host_path: Option<HostPathDoc>,
    #[serde(default)]
    pub(super) config_map: Option<FilesVolumeDoc>,
    #[serde(default)]
    pub(super) secret: Option<FilesVolumeDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct EmptyDirDoc {
    #[serde(default)]
    pub(super) medium: Option<String>,
    #[serde(default)]
    pub(super) size_limit: Option<Quantity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HostPathDoc {
    pub(super) path: String,
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
}

/// A configMap volume (`name`) or a secret volume (`secretName`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct FilesVolumeDoc {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) secret_name: Option<String>,
    #[serde(default)]
    pub(super) items: Vec<KeyToPath>,
    #[serde(default, deserialize_with = "file_mode")]
    pub(super) default_mode: Option<u32>,
    #[serde(default)]
    pub(super) optional: bool,
}

/// A file mode: a number (JSON: decimal, 420 = 0644), or YAML 1.1's octal `0644`, which kubectl
/// reads as octal and a YAML 1.2 parser leaves as the string "0644".
pub(super) fn file_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Number(u32),
        Text(String),
    }
    match Option::<Mode>::deserialize(d)? {
        None => Ok(None),
        Some(Mode::Number(n)) => Ok(Some(n)),
        Some(Mode::Text(t)) => {
            let digits = t.strip_prefix("0o").or_else(|| t.strip_prefix('0')).filter(|d| !d.is_empty());
            digits.and_then(|d| u32::from_str_radix(d, 8).ok()).map(Some).ok_or_else(|| serde::de::Error::custom(format!("{t:?} is not a file mode (an octal number like 0644, or decimal 420)")))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyToPath {
    pub(super) key: String,
    pub(super) path: String,
    #[serde(default, deserialize_with = "file_mode")]
    pub(super) mode: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct VolumeMountDoc {
    pub(super) name: String,
    pub(super) mount_path: String,
    #[serde(default)]
    pub(super) read_only: bool,
    #[serde(default)]
    pub(super) sub_path: Option<String>,
    #[serde(default)]
    pub(super) mount_propagation: Option<String>,
}

/// A volume of the manifest; `ignored` gets the parts podbox accepts without effect.
pub(super) fn volume(i: usize, v: VolumeDoc, objects: &objects::Objects, ignored: &mut Vec<String>) -> Result<Volume, PodError> {
    let field = format!("spec.volumes[{i}]");
    let kinds = [v.empty_dir.is_some(), v.host_path.is_some(), v.config_map.is_some(), v.secret.is_some()];
    if kinds.iter().filter(|k| **k).count() > 1 {
        return Err(invalid(&field, "a volume has exactly one type (emptyDir, hostPath, configMap, secret)"));
    }
    let files = |kind: &str, secret: bool, d: FilesVolumeDoc| -> Result<VolumeSource, PodError> {
        let f = format!("{field}.{kind}");
        let object = if secret { d.secret_name } else { d.name }.filter(|n| !n.is_empty());
        let object = object.ok_or_else(|| invalid(&format!("{f}.{}", if secret { "secretName" } else { "name" }), "required"))?;
        let items: Vec<_> = d.items.into_iter().map(|k| (k.key, k.path, k.mode)).collect();
        let files = objects.files(&f, secret, &object, &items, d.default_mode, d.optional)?;
        Ok(VolumeSource::Files { secret, object, items, default_mode: d.default_mode, optional: d.optional, files })
    };
    let source = if let Some(h) = v.host_path {
        let kind = h.kind.as_deref().unwrap_or("");
        let kind = HostPathType::parse(kind).ok_or_else(|| {
            invalid(&format!("{field}.hostPath.type"), format!("{kind:?}: must be \"\", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice or BlockDevice"))
        })?;
        VolumeSource::HostPath { path: h.path.into(), kind }
    } else if let Some(d) = v.config_map {
        files("configMap", false, d)?
    } else if let Some(d) = v.secret {
        files("secret", true, d)?
    } else {
        // As on the API server, a volume without a type is an emptyDir.
        let d = v.empty_dir.unwrap_or_default();
        let memory = match d.medium.as_deref() {
            None | Some("") => false,
            Some("Memory") => true,
            Some(m) => return Err(invalid(&format!("{field}.emptyDir.medium"), format!("{m:?}: must be \"\" (disk) or Memory"))),
        };
        let size_limit = match &d.size_limit {
            None => None,
            Some(q) => Some(quantity::memory_bytes(&q.text()).map_err(|e| invalid(&format!("{field}.emptyDir.sizeLimit"), e.to_string()))? as u64),
        };
        if size_limit.is_some() && !memory {
            let line = "spec.volumes[].emptyDir.sizeLimit (disk): not enforced; the kubelet evicts a pod past it, podbox has no eviction (medium: Memory makes it a hard limit)".to_string();
            if !ignored.contains(&line) {
                ignored.push(line);
            }
        }
        VolumeSource::EmptyDir { memory, size_limit: if memory { size_limit } else { None } }
    };
    Ok(Volume { name: v.name, source })
}

pub(super) fn volume_mounts(list: &str, i: usize, ms: Vec<VolumeMountDoc>) -> Result<Vec<VolumeMount>, PodError> {
    let mut out = Vec::new();
    for (j, m) in ms.into_iter().enumerate() {
        let host_to_container = match m.mount_propagation.as_deref() {
            None | Some("None") => false,
            Some("HostToContainer") => true,
            Some(p) => {
                return Err(invalid(&format!("spec.{list}[{i}].volumeMounts[{j}].mountPropagation"), format!("{p:?} is not supported (only None or HostToContainer): a container's mounts never propagate to the node")));
            }
        };
        out.push(VolumeMount { name: m.name, mount_path: m.mount_path, read_only: m.read_only, sub_path: m.sub_path.filter(|s| !s.is_empty()), host_to_container, bidirectional: false });
    }
    Ok(out)
}
