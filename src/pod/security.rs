//! Security policy of a pod's containers, as OCI spec parts: the capability set after
//! --cap-add/--cap-drop/--privileged, the default seccomp profile (a denylist in the spirit of
//! Docker's default profile, relaxed by the capabilities that make a syscall legitimate), and the
//! device cgroup rules.

use oci_spec::runtime::{
    Capabilities, Capability, LinuxDeviceCgroup, LinuxDeviceType, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use super::PodError;

/// The capability set container engines grant by default.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// A capability name as users write it: `NET_ADMIN`, `cap_net_admin`, ...; `ALL` is every
/// capability. Returns None for ALL.
pub fn parse_cap(name: &str) -> Result<Option<Capability>, PodError> {
    if name.eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map(Some)
        .map_err(|_| PodError::Invalid(format!("unknown capability {name:?} (see capabilities(7); e.g. NET_ADMIN or CAP_NET_ADMIN)")))
}

/// "Every capability": every one podbox itself may hold (its bounding set), since a container
/// cannot be given more than its runtime has (e.g. where the node withholds CAP_SYS_RESOURCE).
pub fn all_caps() -> Capabilities {
    let ours = caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all());
    ours.into_iter().filter_map(|c| serde_json::from_value(serde_json::Value::String(c.to_string())).ok()).collect()
}

/// The default set, then drops, then adds (Docker's order, so `--cap-drop ALL --cap-add X`
/// leaves exactly X). Privileged containers get every capability.
pub fn capabilities(add: &[String], drop: &[String], privileged: bool) -> Result<Capabilities, PodError> {
    if privileged {
        return Ok(all_caps());
    }
    let mut set: Capabilities = DEFAULT_CAPS.iter().copied().collect();
    for d in drop {
        match parse_cap(d)? {
            None => set.clear(),
            Some(c) => {
                set.remove(&c);
            }
        }
    }
    for a in add {
        match parse_cap(a)? {
            None => set.extend(all_caps()),
            Some(c) => {
                set.insert(c);
            }
        }
    }
    Ok(set)
}

/// Syscalls denied with EPERM unless the container holds the capability that makes them
/// legitimate (None: always denied). They reach the kernel's global state (modules, clock,
/// keyring, swap, accounting), allow escapes from namespaces (mount, setns, unshare) or have
/// a history of exploits (bpf, userfaultfd, perf_event_open, open_by_handle_at, io_uring: its
/// operations bypass this very filter, and Docker >= 25 and containerd 2.0 deny it too).
const DENIED: &[(Option<Capability>, &[&str])] = &[
    (None, &["keyctl", "add_key", "request_key", "userfaultfd", "uselib", "nfsservctl", "vm86", "vm86old", "kexec_file_load", "kexec_load",
        "io_uring_setup", "io_uring_enter", "io_uring_register"]),
    (Some(Capability::SysAdmin), &[
        "mount", "umount", "umount2", "unshare", "setns", "pivot_root", "swapon", "swapoff", "quotactl", "lookup_dcookie", "fanotify_init",
        "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at",
        "bpf", "perf_event_open",
    ]),
    (Some(Capability::SysBoot), &["reboot"]),
    (Some(Capability::SysModule), &["init_module", "finit_module", "delete_module", "create_module"]),
    (Some(Capability::SysTime), &["settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"]),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::Syslog), &["syslog"]),
    (Some(Capability::DacReadSearch), &["open_by_handle_at"]),
    (Some(Capability::SysRawio), &["iopl", "ioperm"]),
];

/// clone(2) flags that create namespaces: without CAP_SYS_ADMIN, a container must not create
/// namespaces (a user namespace above all) any more than unshare(2) may.
const CLONE_NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn errno_rule(names: &[&str], errno: i32) -> LinuxSyscall {
    LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(errno as u32)
        .build()
        .expect("static syscall rule is valid")
}

/// The default seccomp profile for a container holding `caps`: allow everything but DENIED.
pub fn default_seccomp(caps: &Capabilities) -> LinuxSeccomp {
    let mut names: Vec<&str> = Vec::new();
    for (cap, list) in DENIED {
        if cap.is_none_or(|c| !caps.contains(&c)) {
            names.extend(list.iter());
        }
    }
    let mut syscalls = vec![errno_rule(&names, libc::EPERM)];
    if !caps.contains(&Capability::SysAdmin) {
        // One rule per flag: several conditions on one argument are alternatives (OR).
        let args: Vec<_> = CLONE_NS_FLAGS
            .iter()
            .map(|f| LinuxSeccompArgBuilder::default().index(0usize).value(*f).value_two(*f).op(LinuxSeccompOperator::ScmpCmpMaskedEq).build().expect("static arg"))
            .collect();
        let mut clone = errno_rule(&["clone"], libc::EPERM);
        clone.set_args(Some(args));
        syscalls.push(clone);
        // clone3 passes its flags in memory, out of a filter's reach; ENOSYS makes the C library
        // fall back to clone, whose flags can be checked (Docker does the same).
        syscalls.push(errno_rule(&["clone3"], libc::ENOSYS));
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![oci_spec::runtime::Arch::ScmpArchX86_64, oci_spec::runtime::Arch::ScmpArchAarch64])
        .syscalls(syscalls)
        .build()
        .expect("static profile is valid")
}

/// The device cgroup rules: deny everything, then the standard set every container may use
/// (container::cgroups::standard_device_allows), as runc does. A privileged container may use
/// every device.
pub fn device_rules(privileged: bool) -> Vec<LinuxDeviceCgroup> {
    use crate::container::cgroups::device_rule;
    if privileged {
        return vec![device_rule(true, LinuxDeviceType::A, None, None, "rwm")];
    }
    let mut rules = vec![device_rule(false, LinuxDeviceType::A, None, None, "rwm")];
    rules.extend(crate::container::cgroups::standard_device_allows());
    rules
}

/// The names of `set`, sorted (for messages and tests).
pub fn cap_names(set: &Capabilities) -> Vec<String> {
    let mut v: Vec<String> = set.iter().map(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()).collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_names_parse_with_or_without_prefix_in_any_case() {
        assert_eq!(parse_cap("NET_ADMIN").unwrap(), Some(Capability::NetAdmin));
        assert_eq!(parse_cap("cap_net_admin").unwrap(), Some(Capability::NetAdmin));
        assert_eq!(parse_cap("Sys_Admin").unwrap(), Some(Capability::SysAdmin));
        assert_eq!(parse_cap("all").unwrap(), None);
        assert!(parse_cap("FLY").is_err());
    }

    #[test]
    fn add_and_drop_follow_dockers_order() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let set = capabilities(&s(&["NET_ADMIN"]), &s(&["chown", "CAP_KILL"]), false).unwrap();
        assert!(set.contains(&Capability::NetAdmin) && !set.contains(&Capability::Chown) && !set.contains(&Capability::Kill));
        assert_eq!(set.len(), DEFAULT_CAPS.len() - 1);
        assert_eq!(cap_names(&capabilities(&s(&["SYS_TIME"]), &s(&["ALL"]), false).unwrap()), vec!["CAP_SYS_TIME"]);
        assert!(capabilities(&[], &[], true).unwrap().contains(&Capability::SysAdmin));
        assert_eq!(capabilities(&s(&["all"]), &[], false).unwrap().len(), all_caps().len());
    }

    fn denied(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls().as_ref().unwrap()[0].names().clone()
    }

    #[test]
    fn seccomp_profile_is_relaxed_by_matching_capabilities() {
        let default: Capabilities = DEFAULT_CAPS.iter().copied().collect();
        let p = default_seccomp(&default);
        for s in ["mount", "reboot", "init_module", "kexec_load", "bpf", "unshare", "setns", "keyctl", "clock_settime", "io_uring_setup", "io_uring_enter", "io_uring_register"] {
            assert!(denied(&p).iter().any(|d| d == s), "{s} not denied");
        }
        assert_eq!(p.syscalls().as_ref().unwrap().len(), 3, "clone and clone3 rules expected");
        let mut admin = default.clone();
        admin.insert(Capability::SysAdmin);
        admin.insert(Capability::SysBoot);
        let p = default_seccomp(&admin);
        assert!(!denied(&p).iter().any(|d| d == "mount" || d == "reboot" || d == "unshare"));
        assert!(denied(&p).iter().any(|d| d == "init_module" || d == "kexec_load"));
        // No capability makes io_uring legitimate.
        assert!(denied(&p).iter().any(|d| d == "io_uring_setup"));
        assert_eq!(p.syscalls().as_ref().unwrap().len(), 1);
        // The container layer can compile what the pod layer writes (x86_64: and an x32 guard).
        let guard = usize::from(cfg!(target_arch = "x86_64"));
        assert_eq!(crate::container::seccomp::compile(Some(&default_seccomp(&default))).unwrap().len(), 2 + guard);
    }

    #[test]
    fn device_rules_deny_first_then_allow_the_standard_set() {
        let r = device_rules(false);
        assert!(!r[0].allow() && r[0].typ() == Some(LinuxDeviceType::A));
        assert!(r.iter().any(|d| d.allow() && d.major() == Some(136) && d.minor().is_none()));
        // runc's list has no /dev/console: a container must not open the machine's console.
        assert!(!r.iter().any(|d| d.allow() && d.major() == Some(5) && d.minor() == Some(1)));
        assert!(device_rules(true)[0].allow());
    }
}
