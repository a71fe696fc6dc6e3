//! `image pull`: a small client of the Docker Registry HTTP API v2 (the OCI distribution spec)
//! on `ureq` (blocking; TLS by rustls with the system's CA store). Tags and digests, image indexes
//! and docker manifest lists (this machine's platform is picked), anonymous, bearer-token and
//! basic auth (`--creds`, or a docker-style auth.json), mirrors and insecure registries from a
//! containers-registries.conf(5) file. Plain HTTP only for a registry on loopback or one named
//! insecure. Layers are fetched in parallel threads; each blob once, even across concurrent
//! pulls (the store's per-blob lock), verified while written.

mod conf;
mod client;

use conf::*;
use client::*;
pub use conf::is_loopback;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use super::reference::{self, Reference};
use super::store::{ImageInfo, Store};
use super::{ImageError, Result, format_err, host_platform, media};

/// How pulls show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A line per layer on stderr.
    Lines,
    /// One JSON object per event on stdout.
    Json,
    Quiet,
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub creds: Option<(String, String)>,
    pub authfile: Option<PathBuf>,
    pub registries_conf: Option<PathBuf>,
    pub progress: Progress,
}

impl PullOptions {
    /// What a pull started by `run` or `pod apply` uses: files named by the environment, and a
    /// line per layer when stderr is a terminal.
    pub fn from_env() -> PullOptions {
        PullOptions {
            creds: None,
            authfile: std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from),
            registries_conf: std::env::var_os("PODBOX_REGISTRIES_CONF").map(PathBuf::from),
            progress: if std::io::stderr().is_terminal() { Progress::Lines } else { Progress::Quiet },
        }
    }
}

type Response = ureq::http::Response<ureq::Body>;

/// Progress output.
struct Reporter(Progress);

impl Reporter {
    fn event(&self, line: impl FnOnce() -> String, json: impl FnOnce() -> serde_json::Value) {
        match self.0 {
            Progress::Lines => eprintln!("{}", line()),
            Progress::Json => println!("{}", json()),
            Progress::Quiet => {}
        }
    }
}

fn short(d: &str) -> &str {
    let h = d.strip_prefix("sha256:").unwrap_or(d);
    &h[..h.len().min(12)]
}

/// Pull `reference` into `store`; returns the stored image.
pub fn pull(store: &Store, reference: &str, opts: &PullOptions) -> Result<ImageInfo> {
    let r = Reference::parse(reference)?;
    if r.registry == reference::LOCAL {
        return Err(ImageError::Registry { registry: r.registry, msg: format!("{reference} names an image made on this node (import/load); there is no registry to pull it from") });
    }
    let conf = read_conf(opts.registries_conf.as_deref())?;
    let mut last = None;
    for ep in endpoints(&r, &conf)? {
        let creds = opts.creds.clone().or_else(|| authfile_creds(opts.authfile.as_deref(), &ep.host));
        let client = Client::new(ep, creds);
        match pull_from(store, &client, &r, opts) {
            Ok(i) => return Ok(i),
            // A mirror that fails is skipped; a bad blob is not (the next source would be tried
            // with the same expectations, and the error must be seen).
            Err(e @ ImageError::DigestMismatch { .. }) => return Err(e),
            Err(e @ ImageError::UnsafeEntry { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| ImageError::Invalid(format!("no registry to pull {reference} from"))))
}

/// The manifest to pull for this machine: `r`'s, or where that is an image index, the one of
/// the host's platform (the index itself is stored). (manifest, media type, digest, index digest)
fn platform_manifest(store: &Store, c: &Client, r: &Reference, rep: &Reporter) -> Result<(Vec<u8>, String, String, Option<String>)> {
    let (mut body, mut mt, mut mdigest) = c.manifest(&r.manifest_ref())?;
    let mut index_digest = None;
    if media::is_index(&mt, &body) {
        let idx = ImageIndex::from_reader(&body[..]).map_err(|e| format_err(format!("image index {mdigest}"), e))?;
        let (os, arch) = host_platform();
        let pick = idx.manifests().iter().find(|m| m.platform().as_ref().is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch));
        let Some(pick) = pick else {
            let have: Vec<String> = idx.manifests().iter().filter_map(|m| m.platform().as_ref().map(|p| format!("{}/{}", p.os(), p.architecture()))).collect();
            return Err(c.err(format!("{} has no image for {os}/{arch} (it has: {})", r.name(), have.join(", "))));
        };
        store.put_bytes(&body)?;
        index_digest = Some(mdigest.clone());
        let want = pick.digest().to_string();
        rep.event(|| format!("Index {}: {os}/{arch} is {}", short(&mdigest), short(&want)), || serde_json::json!({"event": "index", "digest": mdigest, "platform": format!("{os}/{arch}"), "manifest": want}));
        (body, mt, mdigest) = c.manifest(&want)?;
        if media::is_index(&mt, &body) {
            return Err(c.err("an index that points to another index is not supported"));
        }
    }
    Ok((body, mt, mdigest, index_digest))
}

/// Every layer of `jobs` (digest, size, diff ID) fetched (verified while written) and unpacked,
/// four at a time; the first error stops the others from starting more.
fn fetch_layers(store: &Store, c: &Client, rep: &Reporter, jobs: &[(String, u64, String)]) -> Result<()> {
    let next = Mutex::new(0usize);
    let first_err: Mutex<Option<ImageError>> = Mutex::new(None);
    let threads = jobs.len().clamp(1, 4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        let i = *n;
                        *n += 1;
                        i
                    };
                    if i >= jobs.len() || first_err.lock().unwrap().is_some() {
                        return;
                    }
                    let (d, size, diff) = &jobs[i];
                    let res = (|| {
                        rep.event(|| format!("Layer {} ({size} bytes): fetching", short(d)), || serde_json::json!({"event": "layer", "digest": d, "size": size, "status": "fetching"}));
                        let fetched = store.put_blob(d, Some(*size), &mut || c.blob(d))?;
                        store.ensure_layer(d, diff)?;
                        let status = if fetched { "done" } else { "already present" };
                        rep.event(|| format!("Layer {}: {status}", short(d)), || serde_json::json!({"event": "layer", "digest": d, "size": size, "status": if fetched { "done" } else { "exists" }}));
                        Ok::<_, ImageError>(())
                    })();
                    if let Err(e) = res {
                        first_err.lock().unwrap().get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_err.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn pull_from(store: &Store, c: &Client, r: &Reference, opts: &PullOptions) -> Result<ImageInfo> {
    let rep = Reporter(opts.progress);
    let _shared = store.lock_shared()?;
    let (body, mt, mdigest, index_digest) = platform_manifest(store, c, r, &rep)?;
    let m = ImageManifest::from_reader(&body[..]).map_err(|e| format_err(format!("manifest {mdigest}"), e))?;
    // The config is small: read and verified in memory, stored with the manifest once every
    // layer is in, so that a failed or killed pull leaves no blob of an image that is not there.
    let cfg_d = m.config().digest().to_string();
    let cfg_bytes = if store.has_blob(&cfg_d) { store.read_blob(&cfg_d)? } else { c.small_blob(&cfg_d)? };
    let config = ImageConfiguration::from_reader(&cfg_bytes[..]).map_err(|e| format_err(format!("image config {cfg_d}"), e))?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != m.layers().len() {
        return Err(format_err(format!("image {}", r.name()), format!("{} layers but {} diff IDs in its config", m.layers().len(), diff_ids.len())));
    }
    // Layers in parallel: fetch (verified while written), then unpack.
    let jobs: Vec<(String, u64, String)> = m.layers().iter().zip(&diff_ids).map(|(l, d)| (l.digest().to_string(), l.size(), d.clone())).collect();
    fetch_layers(store, c, &rep, &jobs)?;
    store.put_bytes(&cfg_bytes)?;
    store.put_bytes(&body)?;
    store.tag(&r.name(), &mdigest, index_digest.as_deref())?;
    rep.event(|| format!("Pulled {} ({})", r.name(), mdigest), || serde_json::json!({"event": "done", "name": r.name(), "digest": mdigest}));
    let _ = mt;
    store.image(&r.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_and_insecure_registries_from_registries_conf() {
        let conf: RegistriesConf = toml::from_str(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "127.0.0.1:5000/hub"
[[registry]]
location = "10.0.0.1:5000"
insecure = true
"#,
        )
        .unwrap_or_default();
        let r = Reference::parse("busybox").unwrap();
        let eps = endpoints(&r, &conf).unwrap();
        assert_eq!(eps[0], Endpoint { host: "127.0.0.1:5000".into(), repository: "hub/library/busybox".into(), insecure: false });
        assert_eq!(eps[1].host, "docker.io");
        assert!(eps[0].base().starts_with("http://"), "loopback is plain HTTP");
        assert_eq!(eps[1].base(), "https://registry-1.docker.io");
        let eps = endpoints(&Reference::parse("10.0.0.1:5000/app:v1").unwrap(), &conf).unwrap();
        assert_eq!(eps.len(), 1);
        assert!(eps[0].base().starts_with("http://10.0.0.1:5000"));
        let eps = endpoints(&Reference::parse("quay.io/a/b").unwrap(), &conf).unwrap();
        assert_eq!(eps[0].base(), "https://quay.io");
        assert!(is_loopback("[::1]:5000") && is_loopback("localhost:5000") && !is_loopback("10.0.0.1:5000"));
    }
}
