//! ConfigMap and Secret documents of a manifest (as `podman kube play` takes them beside the
//! Pods), and the files a `configMap`/`secret` volume makes of them: `data`, `stringData`,
//! `binaryData` (base64), `items` (key → path) and `defaultMode`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::invalid_at;
use crate::pod::PodError;
use crate::pod::volumes::ProjectedFile;

/// The ConfigMaps and Secrets of a manifest, by name: key → bytes.
#[derive(Debug, Default)]
pub struct Objects {
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ObjectDoc {
    #[serde(default)]
    #[allow(dead_code)] // checked on the untyped document
    api_version: Option<String>,
    kind: String,
    metadata: Value,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    string_data: BTreeMap<String, String>,
    #[serde(default)]
    binary_data: BTreeMap<String, String>,
    /// A Secret's type (Opaque, kubernetes.io/tls, …): every type is a set of files here.
    #[serde(default, rename = "type")]
    #[allow(dead_code)]
    kind_of_secret: Option<String>,
    /// Only the API server enforces it; a podbox volume is read-only anyway.
    #[serde(default)]
    #[allow(dead_code)]
    immutable: Option<bool>,
}

/// A key as Kubernetes allows it: `[-._a-zA-Z0-9]+`, not `.` or `..`; it becomes a file name.
fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 253 && k != "." && k != ".." && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

impl Objects {
    /// Add a ConfigMap or Secret document.
    pub fn add(&mut self, label: &str, doc: Value) -> Result<(), PodError> {
        let o: ObjectDoc = serde_path_to_error::deserialize(doc).map_err(|e| invalid_at(label, &e.path().to_string(), e.inner().to_string()))?;
        let name = o.metadata.get("name").and_then(Value::as_str).ok_or_else(|| invalid_at(label, "metadata.name", "required"))?.to_string();
        crate::pod::model::validate_name(&o.kind, &name).map_err(|e| invalid_at(label, "metadata.name", e.to_string()))?;
        let secret = o.kind == "Secret";
        let mut keys: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut put = |field: &str, k: &str, v: Vec<u8>| -> Result<(), PodError> {
            if !valid_key(k) {
                return Err(invalid_at(label, &format!("{field}.{k}"), "a key may only hold letters, digits, '-', '_' and '.'"));
            }
            if keys.insert(k.to_string(), v).is_some() && field != "stringData" {
                return Err(invalid_at(label, &format!("{field}.{k}"), "this key is given twice"));
            }
            Ok(())
        };
        for (k, v) in &o.data {
            // A Secret's data is base64, a ConfigMap's text.
            let bytes = if secret { base64(v).map_err(|m| invalid_at(label, &format!("data.{k}"), m))? } else { v.clone().into_bytes() };
            put("data", k, bytes)?;
        }
        if !o.binary_data.is_empty() && secret {
            return Err(invalid_at(label, "binaryData", "a Secret has no binaryData: its data is base64 already"));
        }
        for (k, v) in &o.binary_data {
            put("binaryData", k, base64(v).map_err(|m| invalid_at(label, &format!("binaryData.{k}"), m))?)?;
        }
        if !o.string_data.is_empty() && !secret {
            return Err(invalid_at(label, "stringData", "only a Secret has stringData (a ConfigMap's data is text already)"));
        }
        // stringData wins over data for the same key, as on the API server.
        for (k, v) in &o.string_data {
            put("stringData", k, v.clone().into_bytes())?;
        }
        let map = if secret { &mut self.secrets } else { &mut self.config_maps };
        if map.insert(name.clone(), keys).is_some() {
            return Err(invalid_at(label, "metadata.name", format!("{name:?}: two {}s of this manifest have this name", o.kind)));
        }
        Ok(())
    }

    /// The files of a configMap or secret volume (`field`: its path in the Pod, for errors);
    /// `None` when the object is missing and the volume is optional.
    pub fn files(&self, field: &str, secret: bool, name: &str, items: &[(String, String, Option<u32>)], default_mode: Option<u32>, optional: bool) -> Result<Vec<ProjectedFile>, PodError> {
        let kind = if secret { "Secret" } else { "ConfigMap" };
        let name_field = if secret { "secretName" } else { "name" };
        let mode = default_mode.unwrap_or(0o644);
        if mode > 0o777 {
            return Err(invalid_at("", &format!("{field}.defaultMode"), format!("{mode} is not a file mode (0-0777; in JSON give it in decimal, 0644 = 420)")));
        }
        let map = if secret { &self.secrets } else { &self.config_maps };
        let Some(keys) = map.get(name) else {
            if optional {
                return Ok(vec![]);
            }
            return Err(invalid_at("", &format!("{field}.{name_field}"), format!("no {kind} {name:?} in the manifest: give it as another document (---) or set optional: true")));
        };
        if items.is_empty() {
            return Ok(keys.iter().map(|(k, v)| ProjectedFile { path: k.clone(), data: v.clone(), mode }).collect());
        }
        let mut out = Vec::new();
        for (i, (key, path, m)) in items.iter().enumerate() {
            let Some(v) = keys.get(key) else {
                if optional {
                    continue;
                }
                return Err(invalid_at("", &format!("{field}.items[{i}].key"), format!("{kind} {name:?} has no key {key:?}")));
            };
            if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
                return Err(invalid_at("", &format!("{field}.items[{i}].path"), format!("{path:?}: must be a relative path without '..'")));
            }
            let mode = m.unwrap_or(mode);
            if mode > 0o777 {
                return Err(invalid_at("", &format!("{field}.items[{i}].mode"), format!("{mode} is not a file mode (0-0777)")));
            }
            out.push(ProjectedFile { path: path.clone(), data: v.clone(), mode });
        }
        Ok(out)
    }
}

/// Standard base64 (RFC 4648, with padding; whitespace ignored, as YAML folds long values).
pub fn base64(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(&clean).map_err(|e| format!("not valid base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64("aGk=\n").unwrap(), b"hi");
        assert_eq!(base64("AP8=").unwrap(), [0, 255]);
        assert_eq!(base64("").unwrap(), b"");
        for bad in ["aGk", "a===", "aG*k", "aGVsbG8"] {
            assert!(base64(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn objects_become_files() {
        let mut o = Objects::default();
        let doc = |y: &str| serde_yaml_ng::from_str::<Value>(y).unwrap();
        o.add("", doc("kind: ConfigMap\nmetadata: {name: cfg}\ndata: {a.conf: x}\nbinaryData: {b: AP8=}\n")).unwrap();
        o.add("", doc("kind: Secret\nmetadata: {name: s}\ndata: {pw: aGk=}\nstringData: {user: bob}\n")).unwrap();
        let f = o.files("v", false, "cfg", &[], Some(0o600), false).unwrap();
        assert_eq!(f.iter().map(|f| (f.path.as_str(), f.data.as_slice(), f.mode)).collect::<Vec<_>>(), [("a.conf", &b"x"[..], 0o600), ("b", &[0, 255][..], 0o600)]);
        let f = o.files("v", true, "s", &[("pw".into(), "dir/password".into(), Some(0o400))], None, false).unwrap();
        assert_eq!((f[0].path.as_str(), f[0].data.as_slice(), f[0].mode), ("dir/password", &b"hi"[..], 0o400));
        assert!(o.files("v", true, "nope", &[], None, false).unwrap_err().to_string().contains("v.secretName"));
        assert!(o.files("v", true, "nope", &[], None, true).unwrap().is_empty());
        assert!(o.files("v", false, "cfg", &[("zz".into(), "p".into(), None)], None, false).unwrap_err().to_string().contains("v.items[0].key"));
        assert!(o.files("v", false, "cfg", &[("b".into(), "../p".into(), None)], None, false).is_err());
        assert!(o.add("", doc("kind: ConfigMap\nmetadata: {name: c2}\ndata: {'../x': y}\n")).is_err());
        assert!(o.add("", doc("kind: Secret\nmetadata: {name: s2}\ndata: {k: '!!'}\n")).unwrap_err().to_string().contains("data.k"));
    }
}
