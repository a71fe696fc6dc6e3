//! The store's names: `index.json` (name → manifest digest), looking a reference up, and an
//! image's description (`ImageInfo`) from its manifest and config.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};
use crate::image::reference::Reference;
use crate::image::{ImageError, Result, format_err};

use super::*;

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
pub(super) struct Index {
    pub(super) images: BTreeMap<String, IndexEntry>,
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

impl Store {
    pub(super) fn read_index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format_err(p.display().to_string(), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::Io { what: format!("reading {}", p.display()), source: e }),
        }
    }

    pub(super) fn write_index(&self, idx: &Index) -> Result<()> {
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
}
