//! `image pull`: the Docker Registry HTTP API v2 client.

use std::path::PathBuf;

use super::store::{ImageInfo, Store};
use super::{ImageError, Result};

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
    pub fn from_env() -> PullOptions {
        PullOptions { creds: None, authfile: std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from), registries_conf: std::env::var_os("PODBOX_REGISTRIES_CONF").map(PathBuf::from), progress: Progress::Quiet }
    }
}

pub fn pull(_store: &Store, reference: &str, _opts: &PullOptions) -> Result<ImageInfo> {
    Err(ImageError::Invalid(format!("pull {reference}: not yet")))
}
