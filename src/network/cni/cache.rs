//! The CNI result cache, as libcni keeps it (`results/<network>-<containerID>-<ifname>`, kind
//! `cniCacheV1`), under `<root>/network/cni/`. The entry is written *before* ADD runs (without a
//! result): a runtime killed during or right after ADD leaves it behind, and `gc` then runs DEL
//! with the config ADD used. DEL removes the entry only when every plugin's DEL succeeded.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CniError;
use crate::network::config::net_dir;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// The network configuration list ADD ran with.
    pub config: Value,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Value,
    /// The pod's network namespace pin.
    pub netns: String,
    /// The last plugin's result; None while ADD has not finished.
    #[serde(default)]
    pub result: Option<Value>,
}

pub fn results_dir(root: &Path) -> PathBuf {
    net_dir(root).join("cni/results")
}

pub fn entry_path(root: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    results_dir(root).join(format!("{network}-{container_id}-{ifname}"))
}

/// Write atomically (temp + fsync + rename): a crash leaves the old entry or the new one.
pub fn write(root: &Path, e: &Entry) -> Result<(), CniError> {
    use std::io::Write;
    let dir = results_dir(root);
    std::fs::create_dir_all(&dir).map_err(|x| CniError::io(&dir, x))?;
    let path = entry_path(root, &e.network_name, &e.container_id, &e.if_name);
    let tmp = dir.join(format!(".tmp-{}-{}", e.container_id, std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(e).expect("entry serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(x) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(CniError::io(&path, x));
    }
    Ok(())
}

pub fn remove(root: &Path, e: &Entry) -> Result<(), CniError> {
    let path = entry_path(root, &e.network_name, &e.container_id, &e.if_name);
    match std::fs::remove_file(&path) {
        Err(x) if x.kind() != std::io::ErrorKind::NotFound => Err(CniError::io(&path, x)),
        _ => Ok(()),
    }
}

/// Every cache entry (unreadable ones are reported, not skipped: they may hold an attachment).
pub fn all(root: &Path) -> Result<Vec<Entry>, CniError> {
    let dir = results_dir(root);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io(&dir, e)),
    };
    let mut out = Vec::new();
    for f in rd.flatten() {
        if f.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let bytes = std::fs::read(f.path()).map_err(|e| CniError::io(&f.path(), e))?;
        let e: Entry = serde_json::from_slice(&bytes).map_err(|e| CniError::Config(format!("CNI cache entry {}: {e}", f.path().display())))?;
        out.push(e);
    }
    out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok(out)
}

/// The entries of container (pod) `id`.
pub fn of(root: &Path, id: &str) -> Result<Vec<Entry>, CniError> {
    Ok(all(root)?.into_iter().filter(|e| e.container_id == id).collect())
}
