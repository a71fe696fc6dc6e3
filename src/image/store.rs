//! The image store on disk, and the only code that writes it:
//! ```text
//! <store>/blobs/sha256/<hex>   manifests, configs, compressed layers; verified while written
//! <store>/layers/<diffid hex>/ each layer unpacked once, shared by every image that has it
//! <store>/index.json           names (registry/repo:tag) → manifest digest, atomic JSON
//! <store>/tmp/                 downloads and unpacks in progress (a killed pull leaves them)
//! <store>/locks/               flock files: one per blob and per layer, the index, the store
//! ```
//! Concurrency: whoever adds content holds the store lock shared; `prune` and `gc` take it
//! exclusively, so they never see a half-made image. Two pulls of one blob serialise on that
//! blob's lock and the second finds it present.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use super::digest::{self, HashingWriter};
use super::reference::Reference;
use super::{ImageError, Result, format_err, io, unpack};

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// A name in the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexEntry {
    /// The image manifest (one platform) that runs.
    pub digest: String,
    /// The image index / manifest list it was chosen from, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    pub created: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    images: BTreeMap<String, IndexEntry>,
}

/// One layer of an image.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// The blob as distributed (maybe compressed).
    pub digest: String,
    /// The uncompressed tar's digest: the key of the unpacked directory.
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// An image as `ls`/`inspect` show it and as the pod layer runs it.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub names: Vec<String>,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    pub config_digest: String,
    /// Bytes of the manifest's config and layer blobs.
    pub size: u64,
    pub created: String,
    pub layers: Vec<LayerInfo>,
    pub config: ImageConfiguration,
}

impl ImageInfo {
    pub fn id(&self) -> &str {
        let hex = self.config_digest.strip_prefix("sha256:").unwrap_or(&self.config_digest);
        &hex[..hex.len().min(12)]
    }
}

/// An flock held until dropped.
pub struct Lock(#[allow(dead_code)] File);

fn flock(path: &Path, op: libc::c_int) -> Result<Option<Lock>> {
    let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io(format!("opening lock {}", path.display())))?;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(Some(Lock(f)));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(None),
            _ => return Err(ImageError::Io { what: format!("locking {}", path.display()), source: e }),
        }
    }
}

/// A random name part for temporary files.
pub fn random_suffix() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What `prune` removed.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub layers: Vec<String>,
    pub blobs: Vec<String>,
    pub temporary: usize,
    pub bytes: u64,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        let fresh = !root.exists();
        for d in ["blobs/sha256", "layers", "tmp", "locks"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io(format!("creating the image store {}", p.display())))?;
        }
        // Layers hold setuid files and device nodes: nobody but root walks into a store podbox
        // made. (A directory that existed before, say --images /tmp, keeps its mode; the layers
        // below it are still root's.)
        if fresh {
            let _ = fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        }
        let _ = fs::set_permissions(root.join("layers"), std::os::unix::fs::PermissionsExt::from_mode(0o700));
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest::hex_of(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest)?;
        fs::read(&p).map_err(io(format!("reading blob {digest}")))
    }

    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(digest::hex_of(diff_id)?))
    }

    /// Held (shared) by everyone who adds content; `prune`/`gc` hold it exclusively.
    pub fn lock_shared(&self) -> Result<Lock> {
        Ok(flock(&self.root.join("locks/store.lock"), libc::LOCK_SH)?.expect("blocking lock"))
    }

    fn lock_exclusive(&self, wait: bool) -> Result<Option<Lock>> {
        flock(&self.root.join("locks/store.lock"), libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB })
    }

    fn lock_named(&self, name: &str) -> Result<Lock> {
        Ok(flock(&self.root.join("locks").join(format!("{name}.lock")), libc::LOCK_EX)?.expect("blocking lock"))
    }

    /// A new temporary file under tmp/ (removed by `gc` if its writer dies).
    pub fn temp_file(&self, what: &str) -> Result<(PathBuf, File)> {
        let p = self.root.join("tmp").join(format!("{what}-{}", random_suffix()));
        let f = fs::OpenOptions::new().write(true).create_new(true).open(&p).map_err(io(format!("creating {}", p.display())))?;
        Ok((p, f))
    }

    /// Store the blob `digest` from `src`, hashing it as it is written to a temporary file; a
    /// digest (or size) mismatch removes the file and stores nothing. Returns whether it was
    /// written now (false: it was already there). `fetch` is only called when it is needed,
    /// under the blob's lock, so two concurrent pulls fetch each blob once.
    pub fn put_blob(&self, digest: &str, size: Option<u64>, fetch: &mut dyn FnMut() -> Result<Box<dyn Read>>) -> Result<bool> {
        let dest = self.blob_path(digest)?;
        if dest.is_file() {
            return Ok(false);
        }
        let _lock = self.lock_named(&format!("blob-{}", digest::hex_of(digest)?))?;
        if dest.is_file() {
            return Ok(false);
        }
        let (tmp, file) = self.temp_file("blob")?;
        let result = (|| {
            let mut src = fetch()?;
            let mut w = HashingWriter::new(std::io::BufWriter::with_capacity(256 * 1024, file));
            std::io::copy(&mut src, &mut w).map_err(io(format!("fetching blob {digest}")))?;
            w.flush().map_err(io(format!("writing blob {digest}")))?;
            let actual = w.digest();
            if actual != digest {
                return Err(ImageError::DigestMismatch { what: format!("blob {digest}"), expected: digest.into(), actual });
            }
            if let Some(s) = size
                && s != w.written
            {
                return Err(ImageError::DigestMismatch { what: format!("blob {digest} (size)"), expected: format!("{s} bytes"), actual: format!("{} bytes", w.written) });
            }
            fs::rename(&tmp, &dest).map_err(io(format!("storing blob {digest}")))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|_| true)
    }

    /// Store `bytes` as a blob; returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<String> {
        let d = digest::sha256(bytes);
        let owned = bytes.to_vec();
        self.put_blob(&d, Some(bytes.len() as u64), &mut || Ok(Box::new(std::io::Cursor::new(owned.clone()))))?;
        Ok(d)
    }

    /// Unpack layer blob `blob` (whose uncompressed digest must be `diff_id`) once: under the
    /// layer's lock, into a temporary directory that is renamed into place when complete.
    pub fn ensure_layer(&self, blob: &str, diff_id: &str) -> Result<PathBuf> {
        let dir = self.layer_dir(diff_id)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        let hex = digest::hex_of(diff_id)?;
        let _lock = self.lock_named(&format!("layer-{hex}"))?;
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self.root.join("tmp").join(format!("layer-{}-{}", &hex[..12], random_suffix()));
        let result = (|| {
            let src = File::open(self.blob_path(blob)?).map_err(io(format!("opening layer blob {blob}")))?;
            unpack::unpack(std::io::BufReader::with_capacity(256 * 1024, src), &tmp, blob, Some(diff_id))?;
            fs::rename(&tmp, &dir).map_err(io(format!("storing layer {diff_id}")))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result.map(|_| dir)
    }

    fn read_index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format_err(p.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::Io { what: format!("reading {}", p.display()), source: e }),
        }
    }

    fn write_index(&self, idx: &Index) -> Result<()> {
        let p = self.root.join("index.json");
        let tmp = self.root.join(format!("index.json.{}", random_suffix()));
        let body = serde_json::to_vec_pretty(idx).map_err(|e| format_err("index.json", e))?;
        (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            fs::rename(&tmp, &p)
        })()
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            ImageError::Io { what: format!("writing {}", p.display()), source: e }
        })
    }

    /// Point `name` at a complete image (manifest, config and layers already stored).
    pub fn tag(&self, name: &str, digest: &str, index_digest: Option<&str>) -> Result<()> {
        let _l = self.lock_named("index")?;
        let mut idx = self.read_index()?;
        idx.images.insert(name.into(), IndexEntry { digest: digest.into(), index_digest: index_digest.map(Into::into), created: crate::state::now_rfc3339() });
        self.write_index(&idx)
    }

    /// The name a reference is stored under, if it is: the exact name, or for an unqualified
    /// name its `localhost/` alias, or a digest / id prefix of a stored image.
    pub fn lookup(&self, reference: &str) -> Result<Option<(String, IndexEntry)>> {
        let idx = self.read_index()?;
        if let Ok(r) = Reference::parse(reference) {
            for cand in std::iter::once(r.clone()).chain(r.local_alias()) {
                if let Some(e) = idx.images.get(&cand.name()) {
                    return Ok(Some((cand.name(), e.clone())));
                }
                // name@digest: any name of that repository pointing at the digest
                if let Some(d) = &cand.digest {
                    let repo = format!("{}/{}", cand.registry, cand.repository);
                    if let Some((n, e)) = idx.images.iter().find(|(n, e)| (e.digest == *d || e.index_digest.as_deref() == Some(d)) && n.starts_with(&repo)) {
                        return Ok(Some((n.clone(), e.clone())));
                    }
                }
            }
        }
        // A digest or an id (config digest prefix, as `ls` shows).
        let key = reference.strip_prefix("sha256:").unwrap_or(reference);
        if key.len() >= 12 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (n, e) in &idx.images {
                let cfg = self.manifest(&e.digest).ok().map(|m| m.config().digest().to_string()).unwrap_or_default();
                if e.digest.trim_start_matches("sha256:").starts_with(key) || cfg.trim_start_matches("sha256:").starts_with(key) {
                    return Ok(Some((n.clone(), e.clone())));
                }
            }
        }
        Ok(None)
    }

    pub fn manifest(&self, digest: &str) -> Result<ImageManifest> {
        let b = self.read_blob(digest)?;
        ImageManifest::from_reader(&b[..]).map_err(|e| format_err(format!("manifest {digest}"), e))
    }

    /// Everything about the image `digest` (a manifest in the store).
    pub fn info(&self, names: Vec<String>, entry: &IndexEntry) -> Result<ImageInfo> {
        let m = self.manifest(&entry.digest)?;
        let cfg_digest = m.config().digest().to_string();
        let cfg_bytes = self.read_blob(&cfg_digest)?;
        let config = ImageConfiguration::from_reader(&cfg_bytes[..]).map_err(|e| format_err(format!("image config {cfg_digest}"), e))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != m.layers().len() {
            return Err(format_err(format!("image {}", entry.digest), format!("{} layers but {} diff IDs in its config", m.layers().len(), diff_ids.len())));
        }
        let layers: Vec<LayerInfo> = m
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| LayerInfo { digest: l.digest().to_string(), diff_id: d.clone(), size: l.size(), media_type: l.media_type().to_string() })
            .collect();
        let size = m.config().size() + layers.iter().map(|l| l.size).sum::<u64>();
        Ok(ImageInfo { names, digest: entry.digest.clone(), index_digest: entry.index_digest.clone(), config_digest: cfg_digest, size, created: entry.created.clone(), layers, config })
    }

    /// The image a reference names, with all its names.
    pub fn image(&self, reference: &str) -> Result<ImageInfo> {
        let (_, entry) = self.lookup(reference)?.ok_or_else(|| ImageError::NotFound(reference.into()))?;
        let names = self.read_index()?.images.into_iter().filter(|(_, e)| e.digest == entry.digest).map(|(n, _)| n).collect();
        self.info(names, &entry)
    }

    /// Every image, one entry per manifest digest with all its names.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let idx = self.read_index()?;
        let mut by_digest: BTreeMap<String, (Vec<String>, IndexEntry)> = BTreeMap::new();
        for (n, e) in idx.images {
            by_digest.entry(e.digest.clone()).or_insert_with(|| (vec![], e.clone())).0.push(n);
        }
        by_digest.into_values().map(|(names, e)| self.info(names, &e)).collect()
    }

    /// The directories of an image's layers, bottom layer first; unpacks any that are missing
    /// (e.g. removed by hand) from their blobs.
    pub fn layer_dirs(&self, info: &ImageInfo) -> Result<Vec<PathBuf>> {
        let _l = self.lock_shared()?;
        info.layers.iter().map(|l| self.ensure_layer(&l.digest, &l.diff_id)).collect()
    }

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

    fn clear_tmp(&self) -> Result<usize> {
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

fn list(dir: &Path) -> Result<Vec<String>> {
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
    /// Move a finished temporary file whose content hashes to `digest` into blobs/ (or drop it
    /// when the blob is already there).
    pub fn adopt_temp(&self, tmp: &Path, digest: &str) -> Result<()> {
        let dest = self.blob_path(digest)?;
        let _lock = self.lock_named(&format!("blob-{}", digest::hex_of(digest)?))?;
        if dest.is_file() {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        fs::rename(tmp, &dest).map_err(io(format!("storing blob {digest}")))
    }
}
