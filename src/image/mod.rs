//! Image layer: OCI images on the node. It owns the image store (content-addressed blobs, the
//! name index, unpacked layers shared by every image), fills it (registry pull, `load` of OCI
//! layouts and docker archives, `import` of a plain directory) and tells the pod layer what a
//! container of an image needs: its layer directories (overlay lowerdirs) and its config
//! (entrypoint, cmd, env, working dir, user, stop signal). It knows nothing of pods.

pub mod config;
pub mod digest;
pub mod import;
pub mod load;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use reference::Reference;
pub use store::{ImageInfo, Store};

/// Default image store: images outlive a reboot, unlike the state root under /run.
pub const DEFAULT_STORE: &str = "/var/lib/podbox/images";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {msg}")]
    Reference { reference: String, msg: String },
    #[error("no image {0:?} in the store (see `podbox image ls`; `podbox image pull` fetches it)")]
    NotFound(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}; nothing was stored")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("layer {layer}: entry {entry:?} {msg}; the layer was refused")]
    UnsafeEntry { layer: String, entry: String, msg: String },
    #[error("layer {layer}: {msg}")]
    Layer { layer: String, msg: String },
    #[error("{what}: {msg}")]
    Format { what: String, msg: String },
    #[error("registry {registry}: {msg}")]
    Registry { registry: String, msg: String },
    #[error("image {image} is used by container(s) {users}: remove them first, or use `image rm -f`")]
    InUse { image: String, users: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ImageError>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

pub(crate) fn format_err(what: impl Into<String>, msg: impl std::fmt::Display) -> ImageError {
    ImageError::Format { what: what.into(), msg: msg.to_string() }
}

/// This machine's platform in OCI (Go) terms, e.g. ("linux", "amd64").
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// Media types podbox writes and understands.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    /// An index (or docker manifest list) rather than a single image's manifest.
    pub fn is_index(media_type: &str, body: &[u8]) -> bool {
        if media_type == OCI_INDEX || media_type == DOCKER_LIST {
            return true;
        }
        if media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST {
            return false;
        }
        // No or an unknown media type: an index has "manifests", an image manifest "layers".
        serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("manifests").is_some())
    }
}
