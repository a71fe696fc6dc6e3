//! Spec fields podbox does not implement. A runtime that skipped them would run the container
//! less confined or differently than its spec says, so each is refused with its field name.

use oci_spec::runtime::Spec;

use super::{ContainerError, Result};

fn refuse(field: &str, why: &str) -> ContainerError {
    ContainerError::Spec { field: field.into(), msg: format!("not supported by podbox ({why})") }
}

/// SELinux labels confine only where SELinux is on. Without it, no runtime can apply them and
/// none is less confined for skipping them: they are accepted then (as crun does, and as
/// engines that set them unconditionally need), and refused where podbox would have to
/// apply them.
fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// Ok when every field set in `spec` is one the container layer honours.
pub fn check(spec: &Spec) -> Result<()> {
    let top = [
        ("solaris", spec.solaris().is_some(), "not a Linux field"),
        ("windows", spec.windows().is_some(), "not a Linux field"),
        ("vm", spec.vm().is_some(), "podbox runs containers, not virtual machines"),
        ("zos", spec.zos().is_some(), "not a Linux field"),
    ];
    for (f, set, why) in top {
        if set {
            return Err(refuse(f, why));
        }
    }
    if let Some(p) = spec.process() {
        let unconfined = |s: &Option<String>| s.as_deref().is_none_or(|v| v.is_empty() || v == "unconfined");
        let fields = [
            ("process.apparmorProfile", !unconfined(p.apparmor_profile()), "no AppArmor support; use \"unconfined\" or leave it out"),
            ("process.selinuxLabel", p.selinux_label().as_deref().is_some_and(|s| !s.is_empty()) && selinux_enabled(), "no SELinux support"),
            ("process.scheduler", p.scheduler().is_some(), "no sched_setattr support"),
            ("process.ioPriority", p.io_priority().is_some(), "no ioprio_set support"),
            ("process.execCPUAffinity", p.exec_cpu_affinity().is_some(), "no CPU affinity support"),
            ("process.commandLine", p.command_line().is_some(), "a Windows field"),
            ("process.user.username", p.user().username().as_deref().is_some_and(|s| !s.is_empty()), "a Windows field; give uid and gid"),
        ];
        for (f, set, why) in fields {
            if set {
                return Err(refuse(f, why));
            }
        }
    }
    if spec.uid_mappings().is_some() || spec.gid_mappings().is_some() {
        return Err(refuse("uidMappings/gidMappings", "no user namespaces"));
    }
    if let Some(l) = spec.linux() {
        let fields = [
            ("linux.intelRdt", l.intel_rdt().is_some(), "no Intel RDT support"),
            ("linux.personality", l.personality().is_some(), "no personality(2) support"),
            ("linux.timeOffsets", l.time_offsets().as_ref().is_some_and(|m| !m.is_empty()), "no time namespaces"),
            ("linux.memoryPolicy", l.memory_policy().is_some(), "no set_mempolicy support"),
            ("linux.netDevices", l.net_devices().as_ref().is_some_and(|m| !m.is_empty()), "cannot move network devices"),
            ("linux.mountLabel", l.mount_label().as_deref().is_some_and(|s| !s.is_empty()) && selinux_enabled(), "no SELinux support"),
        ];
        for (f, set, why) in fields {
            if set {
                return Err(refuse(f, why));
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(refuse(&format!("mounts[{i}].uidMappings"), "no id-mapped mounts"));
        }
        for o in m.options().iter().flatten() {
            if o == "idmap" || o == "ridmap" {
                return Err(refuse(&format!("mounts[{i}].options {o}"), "no id-mapped mounts"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_fields_are_named() {
        let mut spec: Spec = serde_json::from_str(r#"{"ociVersion":"1.0.2","linux":{"intelRdt":{"closID":"x"}}}"#).unwrap();
        let e = check(&spec).unwrap_err().to_string();
        assert!(e.contains("linux.intelRdt"), "{e}");
        spec = serde_json::from_str(r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"unconfined"}}"#).unwrap();
        check(&spec).unwrap();
    }

    #[test]
    fn selinux_labels_are_refused_only_where_selinux_is_on() {
        let spec: Spec = serde_json::from_str(r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},"selinuxLabel":"system_u:system_r:svirt_lxc_net_t:s0"},"linux":{"mountLabel":"system_u:object_r:svirt_sandbox_file_t:s0"}}"#).unwrap();
        assert_eq!(check(&spec).is_err(), selinux_enabled());
    }
}
