//! `image load -i PATH`: an OCI image layout (directory or tar) or a `docker save` archive.

use std::path::Path;

use super::store::Store;
use super::{ImageError, Result};

pub fn load(_store: &Store, input: &Path, _name: Option<&str>) -> Result<Vec<(String, String)>> {
    Err(ImageError::Invalid(format!("load {}: not yet", input.display())))
}
