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

/// Without a mount namespace runc and crun make the spec's mounts in the caller's own mount
/// namespace (where they stay after the container is gone) and chroot into the root. podbox
/// chroots too (container::init) but does not change the caller's mounts: a spec's `mounts`,
/// `linux.devices` and `linux.rootfsPropagation` are dropped, by name in a warning (the
/// runtime-tools generator puts mounts in every spec, also in those without namespaces). What
/// would confine the process (masked and read-only paths, a read-only root) is still refused by
/// the container layer, as runc refuses masked and read-only paths.
pub(super) fn drop_rootfs_fields_without_mount_ns(spec: &mut Spec) -> Vec<&'static str> {
    use oci_spec::runtime::LinuxNamespaceType;
    let has_mount_ns = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));
    let mut dropped = vec![];
    if has_mount_ns {
        return dropped;
    }
    if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        spec.set_mounts(None);
        dropped.push("mounts");
    }
    if let Some(mut linux) = spec.linux().clone() {
        if linux.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            linux.set_devices(None);
            dropped.push("linux.devices");
        }
        if linux.rootfs_propagation().is_some() {
            linux.set_rootfs_propagation(None);
            dropped.push("linux.rootfsPropagation");
        }
        spec.set_linux(Some(linux));
    }
    dropped
}

/// File system data options (`mode=755`, `size=1k`) on bind mounts: mount(2) has no file system
/// to give them to, and runc and crun pass them on to be dropped by the kernel (the runtime-tools
/// suite puts them on every mount). podbox's container layer refuses them so that nothing is
/// dropped silently; here, for specs written for runc, they are removed and named in a warning.
pub(super) fn strip_bind_mount_data(spec: &mut Spec) -> Vec<String> {
    let Some(mut mounts) = spec.mounts().clone() else { return vec![] };
    let mut stripped = vec![];
    for m in &mut mounts {
        let Some(opts) = m.options().clone() else { continue };
        let parsed = container::mounts::parse_options(&opts);
        let is_bind = parsed.flags.contains(nix::mount::MsFlags::MS_BIND) || m.typ().as_deref() == Some("bind");
        if !is_bind || matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            continue;
        }
        // Only `key=value` data (`mode=755`, `size=1k`) is dropped; a bare word the parser does
        // not know (a misspelt `rnoexec`) stays, to be refused by name at create.
        let data: Vec<&String> = parsed.data.iter().filter(|d| d.contains('=')).collect();
        stripped.extend(data.iter().map(|d| format!("{d} ({})", m.destination().display())));
        m.set_options(Some(opts.iter().filter(|o| !data.contains(o)).cloned().collect()));
    }
    spec.set_mounts(Some(mounts));
    stripped
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
