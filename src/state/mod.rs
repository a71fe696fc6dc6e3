//! State store: the runtime root on disk. Atomic JSON records (write to a temporary file, fsync,
//! rename), directory layout, and the root-wide lock that serialises changes to the set of pods.
//!
//! Layout under the root (default `/run/podbox`):
//! ```text
//! lock                                  flock: held while pods/containers are created or removed
//! pods/<pod-id>/pod.json                the pod record
//! pods/<pod-id>/ns/{net,ipc,uts,pid}    namespace pins (bind mounts of nsfs files)
//! pods/<pod-id>/etc/                    hostname, hosts, resolv.conf shared by the pod's containers
//! pods/<pod-id>/containers/<name>/      container.json, current.json, exit.json, config.json,
//!                                       container.log[.N] (rotated), overlay dirs
//! pods/<pod-id>/trash/                  containers being removed (renamed here first; gc empties it)
//! network/                              owned by the network layer
//! cache/seccomp/                        compiled seccomp programs (container::seccomp_cache)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: corrupt record: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
}

pub type Result<T> = std::result::Result<T, StateError>;

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// The runtime root directory.
#[derive(Debug, Clone)]
pub struct Root {
    pub path: PathBuf,
}

/// Holds the root-wide lock until dropped (the kernel drops it too if the process dies).
pub struct Lock {
    _file: File,
}

impl Root {
    /// Open (creating if needed) the root at `path`.
    pub fn open(path: &Path) -> Result<Root> {
        let pods = path.join("pods");
        fs::create_dir_all(&pods).map_err(io_err(&pods))?;
        Ok(Root { path: path.to_path_buf() })
    }

    /// Take the root-wide exclusive lock, waiting for other podbox processes to finish.
    pub fn lock(&self) -> Result<Lock> {
        let p = self.path.join("lock");
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&p).map_err(io_err(&p))?;
        loop {
            // SAFETY: flock on an fd we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Lock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(StateError::Io { path: p, source: e });
            }
        }
    }

    pub fn seccomp_cache_dir(&self) -> PathBuf {
        self.path.join("cache").join("seccomp")
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.path.join("pods")
    }

    pub fn pod_dir(&self, pod_id: &str) -> PathBuf {
        self.pods_dir().join(pod_id)
    }

    pub fn container_dir(&self, pod_id: &str, name: &str) -> PathBuf {
        self.pod_dir(pod_id).join("containers").join(name)
    }

    /// Ids of all pod directories, sorted.
    pub fn pod_ids(&self) -> Result<Vec<String>> {
        list_dir(&self.pods_dir())
    }
}

/// Names of the entries of `dir`, sorted; a missing directory is empty.
pub fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(io_err(dir))?;
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StateError::Io { path: dir.to_path_buf(), source: e }),
    }
    out.sort();
    Ok(out)
}

/// Write `data` to `path` so that readers see the old or the new content, never a torn one: a
/// temporary file beside it (named after this process), renamed over it; removed on failure.
/// fsync is skipped on purpose: the root lives on /run (tmpfs) by default, and after a machine
/// crash every pod is gone anyway; rename alone gives atomicity against concurrent readers.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = File::create(&tmp).and_then(|mut f| f.write_all(data)).and_then(|_| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Write `value` as JSON to `path` atomically (`write_atomic`).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut data = serde_json::to_vec_pretty(value).map_err(|source| StateError::Json { path: path.into(), source })?;
    data.push(b'\n');
    write_atomic(path, &data).map_err(io_err(path))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&data).map_err(|source| StateError::Json { path: path.into(), source })
}

/// Like `read_json` but a missing file is `None`.
pub fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|source| StateError::Json { path: path.into(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Io { path: path.into(), source: e }),
    }
}

/// Seconds since the epoch, as RFC 3339 UTC text (no timezone crate needed for UTC).
pub fn now_rfc3339() -> String {
    rfc3339_of(std::time::SystemTime::now())
}

pub fn rfc3339_of(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_millis())
}

/// RFC 3339 with nanoseconds, as the CRI log format and Go's RFC3339Nano write it.
pub fn rfc3339_nanos_of(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = rfc3339(d.as_secs() as i64, 0);
    format!("{}.{:09}Z", &ms[..ms.len() - 5], d.subsec_nanos())
}

fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951782400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1795737600 + 3661, 0), "2026-11-27T01:01:01.000Z");
    }

    #[test]
    fn json_roundtrip_is_atomic_and_missing_is_none() {
        let dir = std::env::temp_dir().join(format!("podbox-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.json");
        assert!(read_json_opt::<Vec<u32>>(&p).unwrap().is_none());
        write_json(&p, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&p).unwrap(), vec![1, 2, 3]);
        assert_eq!(list_dir(&dir).unwrap(), vec!["x.json"]);
        fs::write(&p, b"{").unwrap();
        assert!(matches!(read_json::<Vec<u32>>(&p), Err(StateError::Json { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
