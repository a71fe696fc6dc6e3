//! `image load -i PATH`: images from an OCI image layout (a directory, or a tar of one) or a
//! `docker save` / `podman save` archive (manifest.json + config + layer tars). Every blob is
//! verified while it is copied into the store and every layer unpacked like a pulled one; a tar
//! is first unpacked (with the same refusal of escaping entries) into the store's tmp/.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::reference::Reference;
use super::store::Store;
use super::{ImageError, Result, digest, format_err, host_platform, io, media, unpack};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Load every image of `input`; `name` names an image the archive leaves unnamed (or the only
/// image). Returns (name, manifest digest) of each.
pub fn load(store: &Store, input: &Path, name: Option<&str>) -> Result<Vec<(String, String)>> {
    let _shared = store.lock_shared()?;
    if input.is_dir() {
        return load_dir(store, input, name);
    }
    let f = File::open(input).map_err(io(format!("opening {}", input.display())))?;
    let tmp = store.root.join("tmp").join(format!("load-{}", super::store::random_suffix()));
    let r = unpack::unpack(std::io::BufReader::new(f), &tmp, &input.display().to_string(), None).and_then(|_| load_dir(store, &tmp, name));
    let _ = fs::remove_dir_all(&tmp);
    r
}

fn load_dir(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<(String, String)>> {
    if dir.join("index.json").is_file() && dir.join("oci-layout").is_file() {
        load_oci(store, dir, name)
    } else if dir.join("manifest.json").is_file() {
        load_docker(store, dir, name)
    } else {
        Err(ImageError::Invalid(format!("{}: neither an OCI image layout (index.json, oci-layout) nor a docker archive (manifest.json)", dir.display())))
    }
}

/// A file of the archive, refusing names that leave it.
fn member(dir: &Path, rel: &str) -> Result<PathBuf> {
    if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
        return Err(ImageError::Invalid(format!("archive member {rel:?} leaves the archive")));
    }
    Ok(dir.join(rel))
}

fn blob_in(dir: &Path, d: &str) -> Result<PathBuf> {
    member(dir, &format!("blobs/sha256/{}", digest::hex_of(d)?))
}

fn read_verified(path: &Path, d: &str) -> Result<Vec<u8>> {
    let b = fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    let actual = digest::sha256(&b);
    if actual != d {
        return Err(ImageError::DigestMismatch { what: path.display().to_string(), expected: d.into(), actual });
    }
    Ok(b)
}

/// Store the layers of `m` (opened through `open`), then its config and the manifest itself,
/// and tag it `name`.
fn install(store: &Store, name: &str, mbytes: &[u8], cfg: &[u8], open: &dyn Fn(&str) -> Result<PathBuf>) -> Result<String> {
    let m = ImageManifest::from_reader(mbytes).map_err(|e| format_err("manifest", e))?;
    let config = ImageConfiguration::from_reader(cfg).map_err(|e| format_err("image config", e))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != m.layers().len() {
        return Err(format_err(format!("image {name}"), format!("{} layers but {} diff IDs in its config", m.layers().len(), diff_ids.len())));
    }
    for (l, diff) in m.layers().iter().zip(diff_ids) {
        let d = l.digest().to_string();
        let path = open(&d)?;
        store.put_blob(&d, Some(l.size()), &mut || Ok(Box::new(File::open(&path).map_err(io(format!("opening {}", path.display())))?) as Box<dyn Read>))?;
        store.ensure_layer(&d, diff)?;
    }
    store.put_bytes(cfg)?;
    let md = store.put_bytes(mbytes)?;
    store.tag(name, &md, None)?;
    Ok(md)
}

fn load_oci(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<(String, String)>> {
    let idx = ImageIndex::from_file(dir.join("index.json")).map_err(|e| format_err(format!("{}/index.json", dir.display()), e))?;
    let mut out = Vec::new();
    let only = idx.manifests().len() == 1;
    for desc in idx.manifests() {
        let ann = desc.annotations().clone().unwrap_or_default();
        let label = match (ann.get(CONTAINERD_NAME), ann.get(REF_NAME), name) {
            (_, _, Some(n)) if only => n.to_string(),
            (Some(full), _, _) => full.clone(),
            // A bare tag names `localhost/<layout dir>:<tag>`; a full reference is kept.
            (None, Some(r), _) if !r.contains('/') && !r.contains(':') && !r.contains('@') => {
                let base = dir.file_name().map(|b| b.to_string_lossy().to_lowercase()).unwrap_or_else(|| "image".into());
                format!("{}:{r}", base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>().trim_matches('-'))
            }
            (None, Some(r), _) => r.clone(),
            (None, None, Some(n)) => n.to_string(),
            (None, None, None) => return Err(ImageError::Invalid(format!("{}: an image without a name ({}): give --name", dir.display(), desc.digest()))),
        };
        let name = Reference::parse_local(&label)?.name();
        let mut d = desc.digest().to_string();
        let mut mbytes = read_verified(&blob_in(dir, &d)?, &d)?;
        if media::is_index(desc.media_type().as_ref(), &mbytes) {
            let inner = ImageIndex::from_reader(&mbytes[..]).map_err(|e| format_err(format!("index {d}"), e))?;
            let (os, arch) = host_platform();
            let pick = inner
                .manifests()
                .iter()
                .find(|m| m.platform().as_ref().is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch))
                .ok_or_else(|| ImageError::Invalid(format!("{name}: no image for {os}/{arch} in its index")))?;
            d = pick.digest().to_string();
            mbytes = read_verified(&blob_in(dir, &d)?, &d)?;
        }
        let m = ImageManifest::from_reader(&mbytes[..]).map_err(|e| format_err(format!("manifest {d}"), e))?;
        let cd = m.config().digest().to_string();
        let cfg = read_verified(&blob_in(dir, &cd)?, &cd)?;
        let md = install(store, &name, &mbytes, &cfg, &|ld| blob_in(dir, ld))?;
        out.push((name, md));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn load_docker(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<(String, String)>> {
    let path = dir.join("manifest.json");
    let entries: Vec<DockerEntry> = serde_json::from_slice(&fs::read(&path).map_err(io(format!("reading {}", path.display())))?).map_err(|e| format_err(path.display().to_string(), e))?;
    let only = entries.len() == 1;
    let mut out = Vec::new();
    for e in entries {
        let cfg = fs::read(member(dir, &e.config)?).map_err(io(format!("reading {}", e.config)))?;
        let mut layers = Vec::new();
        let mut files = Vec::new();
        for l in &e.layers {
            // The blob is the file as it is (docker save writes plain tars; newer ones may gzip).
            let p = member(dir, l)?;
            let mut f = File::open(&p).map_err(io(format!("opening {}", p.display())))?;
            let mut h = digest::HashingWriter::new(std::io::sink());
            std::io::copy(&mut f, &mut h).map_err(io(format!("reading {}", p.display())))?;
            let mut magic = [0u8; 2];
            let gz = File::open(&p).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x1f, 0x8b];
            layers.push(serde_json::json!({"mediaType": if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { media::OCI_LAYER }, "digest": h.digest(), "size": h.written}));
            files.push((h.digest(), p));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": digest::sha256(&cfg), "size": cfg.len()},
            "layers": layers,
        });
        let mbytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Invalid(e.to_string()))?;
        let names: Vec<String> = match (name, e.repo_tags.filter(|t| !t.is_empty())) {
            (Some(n), _) if only => vec![n.to_string()],
            (_, Some(tags)) => tags,
            (Some(n), None) => vec![n.to_string()],
            (None, None) => return Err(ImageError::Invalid(format!("{}: an image without RepoTags: give --name", dir.display()))),
        };
        let open = |d: &str| files.iter().find(|(fd, _)| fd == d).map(|(_, p)| p.clone()).ok_or_else(|| ImageError::Invalid(format!("layer {d} not in the archive")));
        for n in names {
            let n = Reference::parse_local(&n)?.name();
            let md = install(store, &n, &mbytes, &cfg, &open)?;
            out.push((n, md));
        }
    }
    Ok(out)
}
