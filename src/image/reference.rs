//! Image references as users write them (`busybox`, `127.0.0.1:5000/app:v1`,
//! `quay.io/x/y@sha256:…`) → registry, repository, tag and digest, with Docker's defaults
//! (`docker.io`, `library/`, `:latest`). Images made on this node (`import`, `load`) live under
//! the pseudo-registry `localhost`, as in podman.

use super::{ImageError, Result, digest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// The user named the registry (an unqualified name may also match a local image).
    pub qualified: bool,
}

pub const DOCKER_HUB: &str = "docker.io";
pub const LOCAL: &str = "localhost";

impl Reference {
    /// Parse with Docker's defaults.
    pub fn parse(s: &str) -> Result<Reference> {
        Self::parse_with(s, DOCKER_HUB)
    }

    /// Parse a name for an image made here: an unqualified name goes under `localhost/`.
    pub fn parse_local(s: &str) -> Result<Reference> {
        Self::parse_with(s, LOCAL)
    }

    fn parse_with(s: &str, default_registry: &str) -> Result<Reference> {
        let bad = |msg: &str| ImageError::Reference { reference: s.into(), msg: msg.into() };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                digest::hex_of(d).map_err(|_| bad("the digest must be sha256:<64 hex digits>"))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let (rest, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag
            && (t.is_empty() || t.len() > 128 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) || t.starts_with(['.', '-']))
        {
            return Err(bad("a tag is 1-128 letters, digits, '.', '_' or '-'"));
        }
        let (registry, path, qualified) = match rest.split_once('/') {
            Some((first, path)) if first.contains('.') || first.contains(':') || first == LOCAL => (first.to_string(), path.to_string(), true),
            _ => (default_registry.to_string(), rest.to_string(), false),
        };
        if registry.is_empty() || !registry.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            return Err(bad("invalid registry host"));
        }
        let path_ok = !path.is_empty()
            && path.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                    && c.as_bytes()[0].is_ascii_alphanumeric()
                    && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
            });
        if !path_ok {
            return Err(bad("a repository is lowercase letters, digits and separators ('.', '_', '-', '/')"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Reference { registry, repository, tag, digest, qualified })
    }

    /// The name the store keeps the image under: `registry/repository:tag`, or
    /// `registry/repository@digest` for a reference by digest alone.
    pub fn name(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(t), _) => format!("{}/{}:{t}", self.registry, self.repository),
            (None, Some(d)) => format!("{}/{}@{d}", self.registry, self.repository),
            (None, None) => format!("{}/{}:latest", self.registry, self.repository),
        }
    }

    /// What a manifest is fetched by: the digest when given, else the tag.
    pub fn manifest_ref(&self) -> String {
        self.digest.clone().or_else(|| self.tag.clone()).unwrap_or_else(|| "latest".into())
    }

    /// The same repository and tag under `localhost/`: where an unqualified name may also be found.
    pub fn local_alias(&self) -> Option<Reference> {
        if self.qualified {
            return None;
        }
        let repository = self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string();
        Some(Reference { registry: LOCAL.into(), repository, qualified: true, ..self.clone() })
    }

    /// Kubernetes' default pull policy: Always for `:latest` (or no tag), else IfNotPresent.
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|t| t == "latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_and_forms() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox:latest");
        assert!(!r.qualified && r.is_latest());
        assert_eq!(r.local_alias().unwrap().name(), "localhost/busybox:latest");
        let r = Reference::parse("127.0.0.1:5000/a/b:v1").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("127.0.0.1:5000", "a/b", Some("v1")));
        assert!(r.qualified && !r.is_latest());
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.name(), format!("localhost:5000/x@{d}"));
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(Reference::parse_local("busybox").unwrap().name(), "localhost/busybox:latest");
        for bad in ["", "UPPER", "a//b", "a:", "a@sha256:12", "-a", "a/../b"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }
}
