//! The state store of OCI runtime mode: a directory per container under the root, holding its
//! `state.json` record and the spec as created; loading and listing them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::container::ProcRef;
use crate::state;

use super::{OciError, Result, Runtime, Status, io};

/// A container's record in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// None while `create` is still setting the container up.
    pub pid: Option<ProcRef>,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup directories, resolved once at create (relative cgroup paths
    /// depend on the calling process's own cgroup, which differs between callers).
    #[serde(default)]
    pub cgroup: Vec<PathBuf>,
}

pub(super) const STATE: &str = "state.json";
pub(super) const CONFIG: &str = "config.json";
pub(super) const FIFO: &str = "exec.fifo";

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 1024 && !id.starts_with('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Write `pid` to `path` atomically: supervisors poll for the file and must never read half.
pub(super) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::state::write_atomic(path, pid.to_string().as_bytes()).map_err(io(format!("writing pid file {}", path.display())))
}

impl Runtime {
    pub(super) fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn load(&self, id: &str) -> Result<Record> {
        if !valid_id(id) {
            return Err(OciError::InvalidId(id.into()));
        }
        let p = self.dir(id).join(STATE);
        if !p.exists() {
            return Err(OciError::NotFound(id.into()));
        }
        Ok(state::read_json(&p)?)
    }

    pub(super) fn spec_of(&self, id: &str) -> Result<Spec> {
        Spec::load(self.dir(id).join(CONFIG)).map_err(|e| OciError::Invalid(format!("reading the saved spec of {id}: {e}")))
    }

    /// Every container under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<(Record, Status)>> {
        let mut out = Vec::new();
        if !self.root.is_dir() {
            return Ok(out);
        }
        for id in state::list_dir(&self.root)? {
            if let Ok(rec) = self.load(&id) {
                let st = self.status(&rec);
                out.push((rec, st));
            }
        }
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok(out)
    }
}
