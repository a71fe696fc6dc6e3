//! Where to pull from: registries.conf (mirrors, insecure registries), the endpoints of a
//! reference, and credentials from an auth file.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use base64::Engine as _;
use serde::Deserialize;
use crate::image::reference::{self, Reference};
use crate::image::{ImageError, Result, format_err};


/// registries.conf (v2 format): the parts podbox uses.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RegistriesConf {
    #[serde(default)]
    pub(super) registry: Vec<RegistryConf>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RegistryConf {
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) location: String,
    #[serde(default)]
    pub(super) insecure: bool,
    #[serde(default)]
    pub(super) blocked: bool,
    #[serde(default)]
    pub(super) mirror: Vec<MirrorConf>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MirrorConf {
    pub(super) location: String,
    #[serde(default)]
    pub(super) insecure: bool,
}

/// Where a repository can be fetched from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Endpoint {
    /// host[:port] as written.
    pub(super) host: String,
    pub(super) repository: String,
    pub(super) insecure: bool,
}

impl Endpoint {
    pub(super) fn base(&self) -> String {
        let host = if self.host == reference::DOCKER_HUB { "registry-1.docker.io" } else { &self.host };
        let scheme = if self.insecure || is_loopback(&self.host) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }
}

pub(super) fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

pub fn is_loopback(host: &str) -> bool {
    let h = host_only(host);
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn read_conf(path: Option<&Path>) -> Result<RegistriesConf> {
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
pub(super) fn endpoints(r: &Reference, conf: &RegistriesConf) -> Result<Vec<Endpoint>> {
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
pub(super) fn authfile_creds(explicit: Option<&Path>, host: &str) -> Option<(String, String)> {
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
