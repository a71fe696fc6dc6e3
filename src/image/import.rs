//! `image import DIR NAME`: a plain directory (such as the busybox `rootfs/`) becomes a one-layer
//! image. The directory is written as an uncompressed tar layer (modes, owners, hard links,
//! symlinks and device nodes as they are), then stored and unpacked exactly like a pulled layer.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::digest::HashingWriter;
use super::reference::Reference;
use super::store::Store;
use super::{ImageError, Result, host_platform, io, media};

/// Store config + manifest for `layers` (blob digest, diff ID, size, media type; already stored
/// and unpacked) and tag the image `name`. Returns the manifest digest.
pub fn commit(store: &Store, name: &str, layers: &[(String, String, u64, String)], cfg: &[u8]) -> Result<String> {
    let cfg_digest = store.put_bytes(cfg)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cfg_digest, "size": cfg.len()},
        "layers": layers.iter().map(|(d, _, size, mt)| serde_json::json!({"mediaType": mt, "digest": d, "size": size})).collect::<Vec<_>>(),
    });
    let mbytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let mdigest = store.put_bytes(&mbytes)?;
    store.tag(name, &mdigest, None)?;
    Ok(mdigest)
}

/// Import `dir` as image `name` (an unqualified name goes under `localhost/`). Returns the
/// stored name and manifest digest.
pub fn import(store: &Store, dir: &Path, name: &str) -> Result<(String, String)> {
    let r = Reference::parse_local(name)?;
    if r.digest.is_some() {
        return Err(ImageError::Invalid(format!("image name {name:?}: a name for an import cannot carry a digest")));
    }
    if !dir.is_dir() {
        return Err(ImageError::Invalid(format!("{} is not a directory", dir.display())));
    }
    let _shared = store.lock_shared()?;
    let (tmp, file) = store.temp_file("import")?;
    let result = (|| {
        let mut b = tar::Builder::new(HashingWriter::new(std::io::BufWriter::with_capacity(256 * 1024, file)));
        let mut links = HashMap::new();
        append_tree(&mut b, dir, Path::new(""), &mut links)?;
        let mut w = b.into_inner().map_err(io("finishing the layer tar"))?;
        w.flush().map_err(io("writing the layer tar"))?;
        Ok::<_, ImageError>((w.digest(), w.written))
    })();
    let (digest, size) = match result {
        Ok(x) => x,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    store.adopt_temp(&tmp, &digest)?;
    store.ensure_layer(&digest, &digest)?;
    let (os, arch) = host_platform();
    let config = serde_json::json!({
        "created": crate::state::now_rfc3339(),
        "architecture": arch,
        "os": os,
        "config": {"Env": [format!("PATH={}", crate::pod::spec::DEFAULT_PATH)], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [digest]},
        "history": [{"created_by": format!("podbox image import {}", dir.display())}],
    });
    let config = serde_json::to_vec(&config).map_err(|e| ImageError::Invalid(e.to_string()))?;
    let m = commit(store, &r.name(), &[(digest.clone(), digest, size, media::OCI_LAYER.into())], &config)?;
    Ok((r.name(), m))
}

/// Append `dir/rel` and everything below it, sorted, without following symlinks; files seen
/// before under another name (same device and inode) become hard links.
fn append_tree<W: Write>(b: &mut tar::Builder<W>, dir: &Path, rel: &Path, links: &mut HashMap<(u64, u64), std::path::PathBuf>) -> Result<()> {
    let full = dir.join(rel);
    let mut names: Vec<_> = fs::read_dir(&full).map_err(io(format!("reading {}", full.display())))?.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let rel = rel.join(&n);
        let path = dir.join(&rel);
        let m = fs::symlink_metadata(&path).map_err(io(format!("reading {}", path.display())))?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
        let ft = m.file_type();
        let e = |what: &str| io(format!("adding {what} {}", path.display()));
        if ft.is_dir() {
            h.set_size(0);
            b.append_data(&mut h, &rel, std::io::empty()).map_err(e("directory"))?;
            append_tree(b, dir, &rel, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(e("symlink"))?;
            h.set_size(0);
            b.append_link(&mut h, &rel, &target).map_err(e("symlink"))?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &rel, first).map_err(e("hard link"))?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), rel.clone());
            }
            let f = fs::File::open(&path).map_err(e("file"))?;
            b.append_data(&mut h, &rel, f).map_err(e("file"))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_size(0);
            b.append_data(&mut h, &rel, std::io::empty()).map_err(e("device"))?;
        }
        // Sockets cannot be stored in a layer; they are skipped.
    }
    Ok(())
}
