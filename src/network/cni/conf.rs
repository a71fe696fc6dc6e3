//! Loading a CNI network configuration: the first `*.conflist`, `*.conf` or `*.json` of a
//! directory in lexical order (as the kubelet and containerd pick it), a single-plugin `.conf`
//! promoted to a one-element list.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::CniError;

/// A network configuration list, with each plugin's configuration kept as JSON (plugins own
/// their keys; podbox only adds `name`, `cniVersion`, `prevResult` and `runtimeConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// The file it came from (None when rebuilt from the result cache).
    pub path: Option<PathBuf>,
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub plugins: Vec<Value>,
}

fn is_config_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("conflist" | "conf" | "json"))
}

/// The first network configuration file of `dir` in lexical order, parsed.
pub fn load_dir(dir: &Path) -> Result<NetworkList, CniError> {
    let rd = std::fs::read_dir(dir).map_err(|e| CniError::io(dir, e))?;
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| is_config_file(p) && p.is_file()).collect();
    files.sort();
    let first = files.into_iter().next().ok_or_else(|| CniError::NoConfig(dir.to_path_buf()))?;
    let bytes = std::fs::read(&first).map_err(|e| CniError::io(&first, e))?;
    let mut list = parse(&bytes).map_err(|m| CniError::Config(format!("{}: {m}", first.display())))?;
    list.path = Some(first);
    Ok(list)
}

/// Parse a `.conflist` (`{"cniVersion","name","plugins":[…]}`) or a single plugin's `.conf`.
pub fn parse(bytes: &[u8]) -> Result<NetworkList, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let name = text("name").filter(|n| !n.is_empty()).ok_or("missing \"name\"")?;
    if !super::valid_name(&name) {
        return Err(format!("network name {name:?}: letters, digits, '_', '.' and '-' only, starting with a letter or digit"));
    }
    let cni_version = text("cniVersion").filter(|n| !n.is_empty()).ok_or("missing \"cniVersion\"")?;
    let plugins = match obj.get("plugins") {
        Some(Value::Array(ps)) => ps.clone(),
        Some(_) => return Err("\"plugins\" is not a list".into()),
        // A single plugin's config: the whole object is that plugin.
        None => vec![v.clone()],
    };
    if plugins.is_empty() {
        return Err("\"plugins\" is empty".into());
    }
    for (i, p) in plugins.iter().enumerate() {
        let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
        if ty.is_empty() || ty.contains('/') || ty == "." || ty == ".." {
            return Err(format!("plugins[{i}]: \"type\" must name a plugin binary, got {:?}", p.get("type")));
        }
    }
    Ok(NetworkList {
        path: None,
        name,
        cni_version,
        disable_check: obj.get("disableCheck").and_then(Value::as_bool).unwrap_or(false),
        plugins,
    })
}

impl NetworkList {
    /// The list as JSON, as it is kept in the result cache so that DEL uses the config ADD used.
    pub fn to_value(&self) -> Value {
        json!({ "cniVersion": self.cni_version, "name": self.name, "disableCheck": self.disable_check, "plugins": self.plugins })
    }

    pub fn plugin_type(&self, i: usize) -> &str {
        self.plugins[i]["type"].as_str().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_single_conf() {
        let l = parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#).unwrap();
        assert_eq!((l.name.as_str(), l.plugins.len(), l.plugin_type(1)), ("n", 2, "portmap"));
        let c = parse(br#"{"cniVersion":"0.4.0","name":"m","type":"bridge","bridge":"b0"}"#).unwrap();
        assert_eq!((c.plugins.len(), c.plugin_type(0), c.plugins[0]["bridge"].as_str()), (1, "bridge", Some("b0")));
        assert!(parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#).unwrap_err().contains("type"));
        assert!(parse(br#"{"name":"n","plugins":[]}"#).unwrap_err().contains("cniVersion"));
    }

    #[test]
    fn picks_the_first_file_in_lexical_order() {
        let d = std::env::temp_dir().join(format!("podbox-cniconf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("20-b.conflist"), br#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#).unwrap();
        std::fs::write(d.join("10-a.conf"), br#"{"cniVersion":"1.0.0","name":"a","type":"bridge"}"#).unwrap();
        std::fs::write(d.join("00-readme.txt"), b"not a config").unwrap();
        assert_eq!(load_dir(&d).unwrap().name, "a");
        std::fs::remove_dir_all(&d).unwrap();
        assert!(matches!(load_dir(&d), Err(CniError::Io { .. })));
    }
}
