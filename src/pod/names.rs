//! Names in a pod: Kubernetes' DNS label rule, which pods, containers, volumes and ConfigMap or
//! Secret documents follow. Imports nothing of the pod layer but its error, so that the model
//! and the volumes can both use it without importing each other.

use super::PodError;

/// Kubernetes' DNS label rule (RFC 1123): 1–63 of [a-z0-9-], starting and ending alphanumeric.
pub fn validate_name(kind: &str, name: &str) -> Result<(), PodError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(PodError::InvalidName { kind: kind.into(), name: name.into() })
    }
}
