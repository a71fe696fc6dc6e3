//! `image pull`: a small client of the Docker Registry HTTP API v2 (the OCI distribution spec)
//! on `ureq` (blocking; TLS by rustls with the system's CA store). Tags and digests, image indexes
//! and docker manifest lists (this machine's platform is picked), anonymous, bearer-token and
//! basic auth (`--creds`, or a docker-style auth.json), mirrors and insecure registries from a
//! containers-registries.conf(5) file. Plain HTTP only for a registry on loopback or one named
//! insecure. Layers are fetched in parallel threads; each blob once, even across concurrent
//! pulls (the store's per-blob lock), verified while written.

use std::io::{IsTerminal, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::reference::{self, Reference};
use super::store::{ImageInfo, Store};
use super::{ImageError, Result, digest, format_err, host_platform, media};

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

/// registries.conf (v2 format): the parts podbox uses.
#[derive(Debug, Default, Deserialize)]
struct RegistriesConf {
    #[serde(default)]
    registry: Vec<RegistryConf>,
}

#[derive(Debug, Default, Deserialize)]
struct RegistryConf {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<MirrorConf>,
}

#[derive(Debug, Default, Deserialize)]
struct MirrorConf {
    location: String,
    #[serde(default)]
    insecure: bool,
}

/// Where a repository can be fetched from.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    /// host[:port] as written.
    host: String,
    repository: String,
    insecure: bool,
}

impl Endpoint {
    fn base(&self) -> String {
        let host = if self.host == reference::DOCKER_HUB { "registry-1.docker.io" } else { &self.host };
        let scheme = if self.insecure || is_loopback(&self.host) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }
}

fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

pub fn is_loopback(host: &str) -> bool {
    let h = host_only(host);
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn read_conf(path: Option<&Path>) -> Result<RegistriesConf> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("/etc/containers/registries.conf"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistriesConf::default()),
        Err(e) => return Err(ImageError::Io { what: format!("reading {}", path.display()), source: e }),
    };
    match toml::from_str::<RegistriesConf>(&text) {
        Ok(c) => Ok(c),
        Err(e) if explicit => Err(format_err(path.display().to_string(), e)),
        // The machine's own file may be in a format podbox does not read (v1); it is optional.
        Err(_) => Ok(RegistriesConf::default()),
    }
}

/// The endpoints to try for `r`, in order: the mirrors of the most specific matching
/// `[[registry]]`, then the registry itself (or its `location` rewrite).
fn endpoints(r: &Reference, conf: &RegistriesConf) -> Result<Vec<Endpoint>> {
    let full = format!("{}/{}", r.registry, r.repository);
    let matches = |p: &str| full == p || full.starts_with(&format!("{p}/")) || (r.registry == p);
    let best = conf.registry.iter().filter(|c| matches(c.prefix.as_deref().unwrap_or(&c.location))).max_by_key(|c| c.prefix.as_deref().unwrap_or(&c.location).len());
    let direct = Endpoint { host: r.registry.clone(), repository: r.repository.clone(), insecure: false };
    let Some(c) = best else { return Ok(vec![direct]) };
    if c.blocked {
        return Err(ImageError::Registry { registry: r.registry.clone(), msg: "is blocked in registries.conf".into() });
    }
    let prefix = c.prefix.as_deref().unwrap_or(&c.location);
    let rest = full.strip_prefix(prefix).unwrap_or("").trim_start_matches('/').to_string();
    let at = |location: &str, insecure: bool| {
        let (host, path) = location.split_once('/').unwrap_or((location, ""));
        let repository = [path, &rest].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("/");
        Endpoint { host: host.to_string(), repository: if repository.is_empty() { r.repository.clone() } else { repository }, insecure }
    };
    let mut out: Vec<Endpoint> = c.mirror.iter().map(|m| at(&m.location, m.insecure)).collect();
    out.push(if c.location.is_empty() { Endpoint { insecure: c.insecure, ..direct } } else { at(&c.location, c.insecure) });
    Ok(out)
}

/// Credentials for `host` from a docker-style auth.json.
fn authfile_creds(explicit: Option<&Path>, host: &str) -> Option<(String, String)> {
    let mut files: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if explicit.is_none() {
        if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
            files.push(PathBuf::from(x).join("containers/auth.json"));
        }
        if let Some(h) = std::env::var_os("HOME") {
            files.push(PathBuf::from(h).join(".docker/config.json"));
        }
    }
    for f in files {
        let Ok(v) = std::fs::read(&f).map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default()) else { continue };
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else { continue };
        for (k, e) in auths {
            let key = k.trim_start_matches("https://").trim_start_matches("http://");
            let key = key.split('/').next().unwrap_or(key);
            let hub = host == reference::DOCKER_HUB && (key == "index.docker.io" || key == "registry-1.docker.io");
            if key != host && !hub {
                continue;
            }
            let Some(b64) = e.get("auth").and_then(|a| a.as_str()) else { continue };
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else { continue };
            if let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':') {
                return Some((u.to_string(), p.to_string()));
            }
        }
    }
    None
}

/// One repository on one endpoint, with its auth state.
struct Client {
    agent: ureq::Agent,
    ep: Endpoint,
    creds: Option<(String, String)>,
    /// The Authorization header that works, once found.
    auth: Mutex<Option<String>>,
}

type Response = ureq::http::Response<ureq::Body>;

impl Client {
    fn new(ep: Endpoint, creds: Option<(String, String)>) -> Client {
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build());
        if is_loopback(&ep.host) {
            // Never send a loopback registry's traffic through a proxy.
            cfg = cfg.proxy(None);
        }
        Client { agent: cfg.build().new_agent(), ep, creds, auth: Mutex::new(None) }
    }

    fn err(&self, msg: impl Into<String>) -> ImageError {
        ImageError::Registry { registry: self.ep.host.clone(), msg: msg.into() }
    }

    fn basic(&self) -> Option<String> {
        self.creds.as_ref().map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
    }

    /// GET `path` (below /v2/<repo>/), answering an auth challenge once.
    fn get(&self, path: &str, accept: &str) -> Result<Response> {
        let url = format!("{}/v2/{}/{path}", self.ep.base(), self.ep.repository);
        for attempt in 0..2 {
            let mut req = self.agent.get(&url).header("Accept", accept);
            if let Some(a) = self.auth.lock().unwrap().clone() {
                req = req.header("Authorization", a);
            }
            let resp = req.call().map_err(|e| self.err(format!("GET {url}: {e}")))?;
            let status = resp.status().as_u16();
            if status == 401 && attempt == 0 {
                let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                self.authenticate(&challenge)?;
                continue;
            }
            return match status {
                200..=299 => Ok(resp),
                401 | 403 => Err(self.err(format!("GET {url}: access denied ({status}); give credentials with --creds or an auth.json"))),
                404 => Err(self.err(format!("GET {url}: not found (404)"))),
                s => Err(self.err(format!("GET {url}: HTTP {s}"))),
            };
        }
        Err(self.err(format!("GET {url}: authentication failed")))
    }

    /// Answer a WWW-Authenticate challenge: Bearer (fetch a token for pulling this repository)
    /// or Basic (send the credentials).
    fn authenticate(&self, challenge: &str) -> Result<()> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let b = self.basic().ok_or_else(|| self.err("needs credentials (basic auth): give --creds USER:PASSWORD or an auth.json"))?;
            *self.auth.lock().unwrap() = Some(b);
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.err(format!("unsupported authentication challenge {challenge:?}")));
        }
        let param = |name: &str| {
            params.split(',').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim_matches('"').to_string())
        };
        let realm = param("realm").ok_or_else(|| self.err("bearer challenge without a realm"))?;
        let scope = param("scope").unwrap_or_else(|| format!("repository:{}:pull", self.ep.repository));
        let mut req = self.agent.get(&realm).query("scope", &scope);
        if let Some(s) = param("service") {
            req = req.query("service", &s);
        }
        if let Some(b) = self.basic() {
            req = req.header("Authorization", b);
        }
        let mut resp = req.call().map_err(|e| self.err(format!("token from {realm}: {e}")))?;
        if !resp.status().is_success() {
            return Err(self.err(format!("token from {realm}: HTTP {} (wrong credentials?)", resp.status().as_u16())));
        }
        let raw = resp.body_mut().read_to_vec().map_err(|e| self.err(format!("token from {realm}: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| self.err(format!("token from {realm}: {e}")))?;
        let token = v.get("token").or_else(|| v.get("access_token")).and_then(|t| t.as_str()).ok_or_else(|| self.err(format!("token from {realm}: no token in the answer")))?;
        *self.auth.lock().unwrap() = Some(format!("Bearer {token}"));
        Ok(())
    }

    /// A manifest or index by tag or digest: (bytes, media type, digest). With a digest, the
    /// bytes must hash to it.
    fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String, String)> {
        let accept = [media::OCI_MANIFEST, media::OCI_INDEX, media::DOCKER_MANIFEST, media::DOCKER_LIST].join(", ");
        let mut resp = self.get(&format!("manifests/{reference}"), &accept)?;
        let mt = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        let body = resp.body_mut().with_config().limit(8 << 20).read_to_vec().map_err(|e| self.err(format!("reading manifest {reference}: {e}")))?;
        let d = digest::sha256(&body);
        if reference.starts_with("sha256:") && d != reference {
            return Err(ImageError::DigestMismatch { what: format!("manifest {reference}"), expected: reference.into(), actual: d });
        }
        Ok((body, mt, d))
    }

    /// A blob of at most 8 MiB (a config) into memory, verified.
    fn small_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let resp = self.get(&format!("blobs/{digest}"), "*/*")?;
        let body = resp.into_body().with_config().limit(8 << 20).read_to_vec().map_err(|e| self.err(format!("reading blob {digest}: {e}")))?;
        let actual = digest::sha256(&body);
        if actual != digest {
            return Err(ImageError::DigestMismatch { what: format!("blob {digest}"), expected: digest.into(), actual });
        }
        Ok(body)
    }

    fn blob(&self, digest: &str) -> Result<Box<dyn Read>> {
        let resp = self.get(&format!("blobs/{digest}"), "*/*")?;
        Ok(Box::new(resp.into_body().into_reader()))
    }
}

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

fn pull_from(store: &Store, c: &Client, r: &Reference, opts: &PullOptions) -> Result<ImageInfo> {
    let rep = Reporter(opts.progress);
    let _shared = store.lock_shared()?;
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
    if let Some(e) = first_err.into_inner().unwrap() {
        return Err(e);
    }
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
