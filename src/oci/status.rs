//! The status machine of an OCI container, derived from its record, the exec FIFO, its
//! cgroup's freezer and /proc: creating → created → running (⇄ paused) → stopped; and the OCI
//! state JSON that `state` prints and hooks receive.

use crate::container::cgroups;

use super::store::{FIFO, Record};
use super::{OCI_VERSION, Result, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl Runtime {
    pub fn status(&self, rec: &Record) -> Status {
        match rec.pid {
            None => Status::Creating,
            Some(p) if p.alive() => {
                if self.dir(&rec.id).join(FIFO).exists() {
                    Status::Created
                } else if cgroups::is_frozen(&rec.cgroup) {
                    Status::Paused
                } else {
                    Status::Running
                }
            }
            Some(_) => Status::Stopped,
        }
    }

    /// The OCI state of a container, as `state` prints it and hooks receive it.
    pub fn state_json(&self, rec: &Record, status: Status) -> serde_json::Value {
        // A stopped container's PID may belong to another process by now.
        let pid = match status {
            Status::Stopped => 0,
            _ => rec.pid.map(|p| p.pid).unwrap_or(0),
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": rec.id,
            "status": status.as_str(),
            "pid": pid,
            "bundle": rec.bundle,
            "rootfs": rec.rootfs,
            "created": rec.created,
            "annotations": rec.annotations,
        })
    }

    pub fn state(&self, id: &str) -> Result<serde_json::Value> {
        let rec = self.load(id)?;
        Ok(self.state_json(&rec, self.status(&rec)))
    }
}
