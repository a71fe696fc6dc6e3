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

mod names;
mod prune;

pub use names::{ImageInfo, IndexEntry, LayerInfo};
pub use prune::{PruneReport, du};

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::digest::{self, HashingWriter};
use super::{ImageError, Result, io, unpack};

#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
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
