//! The init's order of operations, run against the recording `FakeKernel` (no root needed), and
//! the plan's refusals of bad specs before anything is forked.

use std::cell::Cell;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use serde_json::json;

use super::fake_kernel::{EXECED, FakeKernel};
use super::init::{self, InitArgs};
use super::plan::{InitPlan, unraisable_ambient};
use super::spawn::{Channel, Msg};
use super::{ContainerError, Rootfs, Stdio};

/// A typical container: new mount, network, UTS and IPC namespaces, a user with additional
/// groups, a few capabilities, an rlimit, a sysctl, no_new_privs and a seccomp profile.
fn typical() -> serde_json::Value {
    json!({
        "ociVersion": "1.0.2",
        "hostname": "box",
        "process": {
            "args": ["sh", "-c", "true"], "env": ["PATH=/bin"], "cwd": "/work",
            "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 10], "umask": 0o077},
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"], "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"], "inheritable": ["CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}],
            "noNewPrivileges": true
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "ro", "rprivate"]}
        ],
        "linux": {
            "namespaces": [{"type": "mount"}, {"type": "network"}, {"type": "uts"}, {"type": "ipc"}],
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"], "rootfsPropagation": "rslave",
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "sysctl": {"net.ipv4.ip_unprivileged_port_start": "0"},
            "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]}
        }
    })
}

fn spec(v: serde_json::Value) -> Spec {
    serde_json::from_value(v).expect("a valid spec")
}

/// Run the init's plan for `spec` against `k`; returns its error (the fake's exec is one).
fn run_init(k: &FakeKernel, spec: &Spec, no_pivot: bool) -> ContainerError {
    let plan = InitPlan::build(spec).expect("the plan");
    let (_parent, child) = Channel::pair().expect("socketpair");
    let rootfs = Rootfs::Plain(PathBuf::from("/bundle/rootfs"));
    let args = InitArgs { rootfs: &rootfs, plan: &plan, stdio: &Stdio::Inherit, chan: &child, gate: None, preserve_fds: 0, no_pivot, placement: None };
    match init::execute(k, &args) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// `init::Placement` (pod mode): the monitor makes the init's cgroups while the init sets up,
/// and the init joins them once made. The cgroup namespace is made once it is there (it is rooted where the init is when
/// it is made): right before the first cgroup mount, else once the mounts and devices are
/// made, before pivot_root (the host's cgroup files are out of reach after); every other
/// namespace is made as before.
#[test]
fn a_placed_init_makes_its_cgroup_namespace_once_it_is_in_its_cgroups() {
    for cgroup_mount in [false, true] {
        let mut v = typical();
        v["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "cgroup"}));
        if cgroup_mount {
            v["mounts"].as_array_mut().unwrap().insert(1, json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}));
        }
        let plan = InitPlan::build(&spec(v)).expect("the plan");
        let k = FakeKernel::default();
        let (monitor, child) = Channel::pair().expect("socketpair");
        // Sent before the init waits for it: otherwise it would wait (and exit the test on
        // end-of-file).
        monitor.send(&Msg::CgroupsMade).expect("send");
        let placement = init::Placement { chan: &child, cgroups: &[], done: Cell::new(false) };
        let rootfs = Rootfs::Plain(PathBuf::from("/bundle/rootfs"));
        let args = InitArgs { rootfs: &rootfs, plan: &plan, stdio: &Stdio::Inherit, chan: &child, gate: None, preserve_fds: 0, no_pivot: false, placement: Some(&placement) };
        let err = match init::execute(&k, &args) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        assert!(err.to_string().contains(EXECED), "{err}");
        let others = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
        assert_eq!(position(&k, &format!("unshare {:#x}", others.bits())), 3, "{:#?}", k.ops.borrow());
        let cgroupns = format!("unshare {:#x}", CloneFlags::CLONE_NEWCGROUP.bits());
        let made = position(&k, &cgroupns);
        assert_eq!(k.ops.borrow().iter().filter(|o| o.starts_with("unshare")).count(), 2, "{:#?}", k.ops.borrow());
        if cgroup_mount {
            assert_eq!(made + 1, position(&k, "mount cgroup cgroup on /sys/fs/cgroup"), "{:#?}", k.ops.borrow());
            assert!(made > position(&k, "mount proc proc on /proc"), "{:#?}", k.ops.borrow());
        } else {
            assert_eq!(made, position(&k, "create_devices") + 1, "{:#?}", k.ops.borrow());
            assert_eq!(made + 1, position(&k, "pivot_root"), "{:#?}", k.ops.borrow());
        }
    }
}

fn position(k: &FakeKernel, op: &str) -> usize {
    let ops = k.ops.borrow();
    ops.iter().position(|o| o == op || o.starts_with(&format!("{op} "))).unwrap_or_else(|| panic!("no {op} in {ops:#?}"))
}

#[test]
fn typical_spec_runs_every_step_in_order() {
    let k = FakeKernel::default();
    let s = spec(typical());
    let err = run_init(&k, &s, false);
    assert!(err.to_string().contains(EXECED), "{err}");
    // One program, plus the x32 guard on x86_64.
    let programs = InitPlan::build(&s).unwrap().process.seccomp.len();
    let new = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    let expected = [
        "set_undumpable".to_string(),
        "redirect_stdio".into(),
        "join_namespaces []".into(),
        format!("unshare {:#x}", new.bits()),
        "loopback_up".into(),
        "sethostname box".into(),
        format!("mount_root /bundle/rootfs {:#x}", libc::MS_SLAVE),
        "check_mount_destination /proc".into(),
        "check_mount_destination /data".into(),
        "open_root /bundle/rootfs".into(),
        "mount proc proc on /proc".into(),
        "mount bind /srv/data on /data".into(),
        "create_devices 7".into(), // the standard six and /dev/fuse
        "pivot_root /bundle/rootfs".into(),
        "write_proc /proc/sys/net/ipv4/ip_unprivileged_port_start 0".into(),
        r#"finish_rootfs masked ["/proc/kcore"] readonly ["/proc/sys"]"#.into(),
        format!("set_root_propagation {:#x}", libc::MS_SLAVE),
        "setrlimit RLIMIT_NOFILE 1024:2048".into(),
        "resolve_executable sh".into(),
        "umask 77".into(),
        "limit_bounding CAP_KILL,CAP_NET_BIND_SERVICE".into(),
        "set_keepcaps true".into(),
        "setgroups [5, 10]".into(),
        "setresgid 100".into(),
        "setresuid 1000".into(),
        "set_keepcaps false".into(),
        "set_caps Inheritable CAP_NET_BIND_SERVICE".into(),
        "set_caps Effective CAP_KILL".into(),
        "set_caps Permitted CAP_KILL,CAP_NET_BIND_SERVICE".into(),
        "clear_ambient".into(),
        // CAP_KILL is not inheritable: the kernel could not raise it, the plan skips it.
        "raise_ambient CAP_NET_BIND_SERVICE".into(),
        "chdir /work".into(),
        "set_no_new_privs".into(),
        "cloexec_from 3".into(),
        format!("load_seccomp {programs}"),
        r#"exec /bin/sh ["sh", "-c", "true"]"#.into(),
    ];
    assert_eq!(*k.ops.borrow(), expected);
}

#[test]
fn caps_then_uid_then_nnp_then_seccomp_then_exec() {
    let k = FakeKernel::default();
    run_init(&k, &spec(typical()), false);
    let order = ["limit_bounding", "setresuid", "set_caps", "set_no_new_privs", "load_seccomp", "exec"].map(|op| position(&k, op));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?} in {:#?}", k.ops.borrow());
}

#[test]
fn without_no_new_privs_seccomp_goes_in_while_still_privileged() {
    let mut v = typical();
    v["process"]["noNewPrivileges"] = json!(false);
    let k = FakeKernel::default();
    run_init(&k, &spec(v), false);
    assert!(position(&k, "load_seccomp") < position(&k, "limit_bounding"), "{:#?}", k.ops.borrow());
    assert!(!k.names().contains(&"set_no_new_privs".to_string()));
    assert_eq!(k.names().iter().filter(|n| *n == "load_seccomp").count(), 1);
}

#[test]
fn a_failing_operation_stops_the_sequence_and_names_the_step() {
    let k = FakeKernel { fail: Some("setresuid"), ..FakeKernel::default() };
    let err = run_init(&k, &spec(typical()), false);
    assert!(err.to_string().contains("setresuid 1000"), "{err}");
    assert_eq!(k.ops.borrow().last().map(String::as_str), Some("setresuid 1000"));
    for later in ["set_caps", "chdir", "load_seccomp", "exec"] {
        assert!(!k.names().iter().any(|n| n == later), "{later} ran after the failure: {:#?}", k.ops.borrow());
    }
}

#[test]
fn no_mount_namespace_only_chroots() {
    let mut v = typical();
    v["linux"]["namespaces"] = json!([{"type": "network"}]);
    // Every field that would need a mount is refused without a mount namespace.
    v.as_object_mut().unwrap().remove("mounts");
    for field in ["maskedPaths", "readonlyPaths", "devices", "rootfsPropagation"] {
        v["linux"].as_object_mut().unwrap().remove(field);
    }
    let k = FakeKernel::default();
    run_init(&k, &spec(v), false);
    let names = k.names();
    for absent in ["mount_root", "mount", "create_devices", "pivot_root", "move_root", "finish_rootfs", "set_root_propagation", "sethostname"] {
        assert!(!names.iter().any(|n| n == absent), "{absent} without a mount/UTS namespace: {names:#?}");
    }
    assert!(position(&k, "loopback_up") < position(&k, "chroot /bundle/rootfs"));
    assert!(position(&k, "chroot") < position(&k, "write_proc"));
}

#[test]
fn no_pivot_moves_the_root_instead() {
    let k = FakeKernel::default();
    run_init(&k, &spec(typical()), true);
    assert!(k.ops.borrow().contains(&"move_root /bundle/rootfs".to_string()));
    assert!(!k.names().contains(&"pivot_root".to_string()));
}

#[test]
fn user_switch_sets_groups_then_gid_then_uid() {
    let mut v = typical();
    v["process"]["capabilities"] = serde_json::Value::Null;
    v["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [4, 24, 27]});
    let k = FakeKernel::default();
    run_init(&k, &spec(v), false);
    let ops = k.ops.borrow();
    let user: Vec<&str> = ops.iter().map(String::as_str).skip_while(|o| *o != "set_keepcaps true").take(5).collect();
    assert_eq!(user, ["set_keepcaps true", "setgroups [4, 24, 27]", "setresgid 1000", "setresuid 1000", "set_keepcaps false"]);
    // Without capabilities in the spec the sets are left alone; the default umask is 0022.
    assert!(!ops.iter().any(|o| o.starts_with("set_caps") || o.starts_with("limit_bounding")), "{ops:#?}");
    assert!(ops.contains(&"umask 22".to_string()));
}

/// Every refusal happens in `InitPlan::build`, in the caller, before anything is forked.
#[test]
fn bad_specs_are_refused_by_the_plan() {
    let cases: [(&str, serde_json::Value, &str); 9] = [
        ("/process/capabilities/bounding", json!(["CAP_NOPE"]), "unknown capability"),
        ("/process/rlimits", json!([{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]), "unknown rlimit"),
        ("/process/user/additionalGids", json!([5, u32::MAX]), "not an ID"),
        ("/process/args", json!([]), "empty command"),
        ("/linux/sysctl", json!({"kernel.panic": "1"}), "not isolated"),
        ("/mounts/0/destination", json!("proc"), "not absolute"),
        ("/mounts/1/options", json!(["rbind", "size=1m"]), "unknown option \"size=1m\" for the bind mount on /data"),
        ("/linux/devices/0/type", json!("a"), "only valid in cgroup rules"),
        ("/linux/rootfsPropagation", json!("rsideways"), "unknown value rsideways"),
    ];
    let mut checked = 0;
    for (pointer, value, want) in cases {
        let mut v = typical();
        *v.pointer_mut(pointer).expect(pointer) = value;
        let Ok(spec) = serde_json::from_value::<Spec>(v) else {
            continue; // oci-spec itself refused the value: also before anything is forked
        };
        let err = InitPlan::build(&spec).map(|_| ()).expect_err(pointer);
        assert!(err.to_string().contains(want), "{pointer}: {err}");
        checked += 1;
    }
    // IDs, args and sysctls always parse; oci-spec's enums may refuse the unknown names first.
    assert!(checked >= 7, "only {checked} cases reached the plan");
}

#[test]
fn unraisable_ambient_names_what_the_plan_skips() {
    let s = spec(typical());
    assert_eq!(unraisable_ambient(s.process().as_ref().unwrap()), ["CAP_KILL"]);
}

/// `exec` into a running container runs only the process part: no namespaces or root file
/// system steps, and the preserved descriptors stay open.
#[test]
fn exec_runs_only_the_process_steps() {
    let s = spec(typical());
    let plan = InitPlan::build(&s).unwrap();
    let k = FakeKernel::default();
    let Err(err) = init::run_process(&k, &plan.process, None, 2);
    assert!(err.to_string().contains(EXECED), "{err}");
    assert_eq!(k.names().first().map(String::as_str), Some("setrlimit"));
    assert!(k.ops.borrow().contains(&"cloexec_from 5".to_string()));
}

/// Mounts reach the init parsed: kind, flags, propagation; devices as nodes, the standard set
/// with the spec's added.
#[test]
fn mounts_and_devices_are_parsed_in_the_plan() {
    use super::mounts::MountKind;
    use nix::mount::MsFlags;
    let plan = InitPlan::build(&spec(typical())).unwrap().rootfs;
    let data = &plan.mounts[1];
    assert_eq!((data.kind, data.source.as_path(), data.destination.as_path()), (MountKind::Bind, std::path::Path::new("/srv/data"), std::path::Path::new("/data")));
    assert_eq!(data.options.flags, MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY);
    assert_eq!(data.options.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    assert_eq!((plan.mounts[0].kind, plan.mounts[0].typ.as_str()), (MountKind::Fs, "proc"));
    let fuse = plan.devices.iter().find(|d| d.path == std::path::Path::new("/dev/fuse")).expect("/dev/fuse");
    assert_eq!((fuse.major, fuse.minor, fuse.mode), (10, 229, 0o666));
    assert!(plan.devices.iter().any(|d| d.path == std::path::Path::new("/dev/null")));
    assert_eq!(plan.propagation, MsFlags::MS_SLAVE);
}

/// A refused mount destination stops the init before any of the spec's mounts is made.
#[test]
fn mount_destinations_are_checked_before_any_mount() {
    let k = FakeKernel { fail: Some("check_mount_destination"), ..FakeKernel::default() };
    let err = run_init(&k, &spec(typical()), false);
    assert!(err.to_string().contains("check_mount_destination /proc"), "{err}");
    let names = k.names();
    assert!(names.contains(&"mount_root".to_string()));
    for later in ["open_root", "mount", "create_devices", "pivot_root", "exec"] {
        assert!(!names.iter().any(|n| n == later), "{later} after a refused destination: {names:#?}");
    }
}

#[test]
fn in_a_user_namespace_the_init_becomes_its_root_before_entering_the_others() {
    let k = FakeKernel::default();
    let mut v = typical();
    v["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    v["linux"]["uidMappings"] = map.clone();
    v["linux"]["gidMappings"] = map;
    let err = run_init(&k, &spec(v), false);
    assert!(err.to_string().contains(EXECED), "{err}");
    let names = k.names();
    assert_eq!(&names[..4], ["set_undumpable", "redirect_stdio", "become_root", "join_namespaces"], "{:#?}", k.ops.borrow());
    // Without one, no such step.
    let k = FakeKernel::default();
    run_init(&k, &spec(typical()), false);
    assert!(!k.names().iter().any(|n| n == "become_root"));
}
