//! A bundle's config.json read and checked (version, supported fields), and the device rules
//! runc adds to a spec that restricts devices.

use std::fs;
use std::path::Path;

use oci_spec::runtime::Spec;

use crate::container::{self, cgroups};

use super::store::CONFIG;
use super::{OCI_VERSION, OciError, Result};

/// Read and check `bundle/config.json`: parse errors name the JSON path of the bad field.
pub fn load_bundle(bundle: &Path) -> Result<Spec> {
    let berr = |msg: String| OciError::Bundle { bundle: bundle.to_path_buf(), msg };
    if !bundle.is_dir() {
        return Err(berr("not a directory".into()));
    }
    let path = bundle.join(CONFIG);
    let text = fs::read_to_string(&path).map_err(|e| berr(format!("cannot read config.json: {e}")))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| berr(format!("invalid config.json at {}: {}", e.path(), e.inner())))?;
    check_oci_version(spec.version()).map_err(berr)?;
    container::unsupported::check(&spec)?;
    if spec.process().is_none() {
        return Err(berr("config.json has no process: nothing to run".into()));
    }
    Ok(spec)
}

/// `ociVersion` must be a semantic version (MAJOR.MINOR.PATCH, optionally -pre and +build) of
/// major version 1: a spec of another major version may mean things podbox does not know.
fn check_oci_version(v: &str) -> std::result::Result<(), String> {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let nums: Vec<&str> = core.split('.').collect();
    let numeric = |n: &&str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n.len() == 1 || !n.starts_with('0'));
    if nums.len() != 3 || !nums.iter().all(numeric) || v.ends_with(['-', '+']) {
        return Err(format!("ociVersion {v:?} is not a semantic version (like \"{OCI_VERSION}\")"));
    }
    if nums[0] != "1" {
        return Err(format!("ociVersion {v:?}: major version {} is not supported (podbox implements runtime spec 1.x up to {OCI_VERSION})", nums[0]));
    }
    Ok(())
}

/// Where a spec restricts devices, the standard set stays usable and so do the devices it asks
/// to be created (`linux.devices`): runc appends the same allow rules, and specs are written
/// for it (`runc spec` has only "deny all").
pub(super) fn allow_standard_devices(spec: &mut Spec) {
    let Some(mut linux) = spec.linux().clone() else { return };
    let Some(mut resources) = linux.resources().clone() else { return };
    let Some(mut rules) = resources.devices().clone().filter(|r| !r.is_empty()) else { return };
    rules.extend(cgroups::standard_device_allows());
    // A FIFO is no device to the device cgroup (it governs block and character devices only,
    // and v1 refuses a `p` rule).
    for d in linux.devices().iter().flatten().filter(|d| d.typ() != oci_spec::runtime::LinuxDeviceType::P) {
        rules.push(cgroups::device_rule(true, d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
    }
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_versions() {
        for ok in ["1.0.0", "1.0.2-dev", "1.2.0", "1.0.0-rc.1+build.5", "1.10.3"] {
            assert!(check_oci_version(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1", "1.0", "banana", "01.0.0", "1.0.0-", "2.0.0", "0.9.0", "1.a.0"] {
            assert!(check_oci_version(bad).is_err(), "{bad}");
        }
    }
}
