//! The registry HTTP client of one endpoint: GET with bearer or basic authentication after a
//! challenge, manifests and blobs.

use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;
use base64::Engine as _;
use crate::image::{ImageError, Result, digest, media};

use super::*;

/// One repository on one endpoint, with its auth state.
pub(super) struct Client {
    pub(super) agent: ureq::Agent,
    pub(super) ep: Endpoint,
    pub(super) creds: Option<(String, String)>,
    /// The Authorization header that works, once found.
    pub(super) auth: Mutex<Option<String>>,
}

impl Client {
    pub(super) fn new(ep: Endpoint, creds: Option<(String, String)>) -> Client {
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

    pub(super) fn err(&self, msg: impl Into<String>) -> ImageError {
        ImageError::Registry { registry: self.ep.host.clone(), msg: msg.into() }
    }

    pub(super) fn basic(&self) -> Option<String> {
        self.creds.as_ref().map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))
    }

    /// GET `path` (below /v2/<repo>/), answering an auth challenge once.
    pub(super) fn get(&self, path: &str, accept: &str) -> Result<Response> {
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
    pub(super) fn authenticate(&self, challenge: &str) -> Result<()> {
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
    pub(super) fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String, String)> {
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
    pub(super) fn small_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let resp = self.get(&format!("blobs/{digest}"), "*/*")?;
        let body = resp.into_body().with_config().limit(8 << 20).read_to_vec().map_err(|e| self.err(format!("reading blob {digest}: {e}")))?;
        let actual = digest::sha256(&body);
        if actual != digest {
            return Err(ImageError::DigestMismatch { what: format!("blob {digest}"), expected: digest.into(), actual });
        }
        Ok(body)
    }

    pub(super) fn blob(&self, digest: &str) -> Result<Box<dyn Read>> {
        let resp = self.get(&format!("blobs/{digest}"), "*/*")?;
        Ok(Box::new(resp.into_body().into_reader()))
    }
}
