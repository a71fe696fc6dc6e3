//! Removing from the store: an image's name (`remove`), everything no name and no container
//! holds (`prune`), and what killed pulls left in `tmp/` (`gc`).

use std::collections::BTreeSet;
use std::fs::{self};
use std::path::Path;
use serde::Serialize;
use crate::image::{ImageError, Result, io};

use super::*;

/// What `prune` removed.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub layers: Vec<String>,
    pub blobs: Vec<String>,
    pub temporary: usize,
    pub bytes: u64,
}

pub(super) fn list(dir: &Path) -> Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(ImageError::Io { what: format!("listing {}", dir.display()), source: e }),
    }
}

/// Bytes used by a file or tree (apparent sizes; not following symlinks).
pub fn du(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else { return 0 };
    if m.is_dir() {
        fs::read_dir(p).map(|rd| rd.flatten().map(|e| du(&e.path())).sum()).unwrap_or(0)
    } else {
        m.len()
    }
}

impl Store {
    /// Remove names. `reference` may be a name or a digest/id (then every name of it goes).
    /// `users(digest)` lists the containers using an image; they block removal unless `force`.
    pub fn remove(&self, reference: &str, force: bool, users: &dyn Fn(&str) -> Vec<String>) -> Result<Vec<String>> {
        let _l = self.lock_named("index")?;
        let (name, entry) = self.lookup(reference)?.ok_or_else(|| ImageError::NotFound(reference.into()))?;
        let by_digest = reference.trim_start_matches("sha256:").bytes().all(|b| b.is_ascii_hexdigit()) && !reference.contains('/');
        let mut idx = self.read_index()?;
        let names: Vec<String> = if by_digest { idx.images.iter().filter(|(_, e)| e.digest == entry.digest).map(|(n, _)| n.clone()).collect() } else { vec![name] };
        let last_name = idx.images.values().filter(|e| e.digest == entry.digest).count() == names.len();
        if last_name && !force {
            let u = users(&entry.digest);
            if !u.is_empty() {
                return Err(ImageError::InUse { image: names.join(", "), users: u.join(", ") });
            }
        }
        for n in &names {
            idx.images.remove(n);
        }
        self.write_index(&idx)?;
        Ok(names)
    }

    /// Remove the blobs and unpacked layers that no named image and no manifest in `keep` (the
    /// images of existing containers) needs, and every leftover temporary file.
    pub fn prune(&self, keep: &[String]) -> Result<PruneReport> {
        let _x = self.lock_exclusive(true)?;
        let idx = self.read_index()?;
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        let manifests: BTreeSet<String> = idx.images.values().map(|e| e.digest.clone()).chain(keep.iter().cloned()).collect();
        for e in idx.images.values() {
            if let Some(i) = &e.index_digest {
                blobs.insert(i.clone());
            }
        }
        for d in &manifests {
            blobs.insert(d.clone());
            let Ok(info) = self.info(vec![], &IndexEntry { digest: d.clone(), index_digest: None, created: String::new() }) else { continue };
            blobs.insert(info.config_digest.clone());
            for l in &info.layers {
                blobs.insert(l.digest.clone());
                layers.insert(l.diff_id.clone());
            }
        }
        let mut report = PruneReport { temporary: self.clear_tmp()?, ..Default::default() };
        let hexes = |set: &BTreeSet<String>| set.iter().filter_map(|d| d.strip_prefix("sha256:").map(String::from)).collect::<BTreeSet<_>>();
        let (keep_blobs, keep_layers) = (hexes(&blobs), hexes(&layers));
        for name in list(&self.root.join("layers"))? {
            if !keep_layers.contains(&name) {
                let p = self.root.join("layers").join(&name);
                report.bytes += du(&p);
                fs::remove_dir_all(&p).map_err(io(format!("removing layer {}", p.display())))?;
                report.layers.push(format!("sha256:{name}"));
            }
        }
        for name in list(&self.root.join("blobs/sha256"))? {
            if !keep_blobs.contains(&name) {
                let p = self.root.join("blobs/sha256").join(&name);
                report.bytes += du(&p);
                fs::remove_file(&p).map_err(io(format!("removing blob {}", p.display())))?;
                report.blobs.push(format!("sha256:{name}"));
            }
        }
        Ok(report)
    }

    /// `gc`: remove what killed pulls left in tmp/, unless a pull is running now (then there is
    /// nothing to do until it ends). Returns how many entries were removed.
    pub fn gc(&self) -> Result<usize> {
        match self.lock_exclusive(false)? {
            Some(_x) => self.clear_tmp(),
            None => Ok(0),
        }
    }

    pub(super) fn clear_tmp(&self) -> Result<usize> {
        let tmp = self.root.join("tmp");
        let mut n = 0;
        for name in list(&tmp)? {
            let p = tmp.join(name);
            let r = if p.is_dir() && !p.is_symlink() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            r.map_err(io(format!("removing {}", p.display())))?;
            n += 1;
        }
        // Per-blob and per-layer lock files: whoever takes one holds the store lock shared,
        // which the caller holds exclusively, so none is in use.
        for name in list(&self.root.join("locks"))? {
            if name.starts_with("blob-") || name.starts_with("layer-") {
                let _ = fs::remove_file(self.root.join("locks").join(name));
            }
        }
        // Index files of a writer killed between write and rename.
        for name in list(&self.root)? {
            if name.starts_with("index.json.") {
                let _ = fs::remove_file(self.root.join(name));
                n += 1;
            }
        }
        Ok(n)
    }
}
