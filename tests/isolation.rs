//! Isolation and limits end to end: hostile programs run in containers of throwaway nodes, and
//! the kernel must stop them (capabilities, seccomp, masked and read-only paths, device cgroup,
//! PID namespace, pids and memory limits). Nothing here may reach the machine: every pod lives in
//! a `Node`, no test uses --privileged for anything dangerous, and reboot(2) is only tried in a
//! container's own PID namespace, without CAP_SYS_BOOT and under the seccomp filter.
mod common;

use common::Node;

/// A pod without network in `node`; returns its id.
fn pod(node: &Node, name: &str) -> String {
    node.podbox_ok(&["pod", "create", name, "--network", "none"]).trim().to_string()
}

/// Run `script` in a foreground container; returns (exit code, stdout).
fn run(node: &Node, pod: &str, name: &str, flags: &[&str], script: &str) -> (i32, String) {
    let mut args = vec!["run", "--pod", pod, "--name", name];
    args.extend_from_slice(flags);
    args.extend(["--", "sh", "-c", script]);
    let out = node.podbox(&args);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of `key` in "key: value" (as /proc/PID/status has them) or "key=value" lines.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")).or_else(|| l.strip_prefix(&format!("{key}="))))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

/// Directories of cgroup `podbox/<pod_id>...` in every hierarchy of the machine.
/// (`|| true`: find fails when another test's cgroup is removed during its walk; that is not ours.)
fn cgroup_dirs(node: &Node, pod_id: &str) -> Vec<String> {
    node.sh_ok(&format!("find /sys/fs/cgroup -type d -name {pod_id} 2>/dev/null || true")).lines().map(String::from).collect()
}

const DEFAULT_CAPS: &str = "00000000a80425fb";

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn hostile_programs_are_stopped() {
    require_root!();
    let node = Node::new("hostile");
    let node_hostname = node.sh_ok("hostname");
    pod(&node, "p");
    let script = r#"
        mkdir -p /tmp/m; mount -t tmpfs x /tmp/m 2>&1 && echo MOUNT=ok || echo MOUNT=denied
        reboot -f 2>&1; echo REBOOT=$?
        printf 'not a module' > /tmp/x.ko; insmod /tmp/x.ko 2>&1; echo INSMOD=$?
        modprobe dummy 2>&1; echo MODPROBE=$?
        unshare -n true 2>&1 && echo UNSHARE=ok || echo UNSHARE=denied
        echo KCORE=$(head -c 64 /proc/kcore 2>/dev/null | wc -c)
        echo x > /proc/sys/kernel/hostname 2>&1 && echo PROCSYS=ok || echo PROCSYS=denied
        echo 1 > /proc/sysrq-trigger 2>&1 && echo SYSRQ=ok || echo SYSRQ=denied
        touch /sys/kernel/x 2>&1 && echo SYS=ok || echo SYS=denied
        hostname evil 2>&1 && echo HOSTNAME=ok || echo HOSTNAME=denied
        echo PROCS=$(ls -d /proc/[0-9]* | wc -l)
        mknod /tmp/sda b 8 0 && echo MKNOD=ok
        head -c 1 /tmp/sda 2>&1 >/dev/null | sed 's/^/DISKERR /'
        head -c 1 /tmp/sda >/dev/null 2>&1 && echo DISK=read || echo DISK=denied
        head -c 1 /dev/zero | wc -c | sed 's/^/ZERO=/'
        grep Cap /proc/self/status
        grep Seccomp: /proc/self/status
        grep NoNewPrivs /proc/self/status
    "#;
    let (code, out) = run(&node, "p", "c", &[], script);
    assert_eq!(code, 0, "{out}");
    for want in ["MOUNT=denied", "UNSHARE=denied", "KCORE=0", "PROCSYS=denied", "SYSRQ=denied", "SYS=denied", "HOSTNAME=denied", "MKNOD=ok", "DISK=denied", "ZERO=1"] {
        assert!(out.lines().any(|l| l == want), "expected {want} in:\n{out}");
    }
    assert_ne!(field(&out, "REBOOT"), "0", "reboot must fail");
    assert!(out.contains("reboot: (null): Operation not permitted") || out.contains("reboot: Operation not permitted"), "EPERM expected from seccomp:\n{out}");
    // The device cgroup (not a missing node or a nodev mount) refuses the disk.
    assert!(out.lines().any(|l| l.starts_with("DISKERR") && l.contains("Operation not permitted")), "{out}");
    assert_ne!(field(&out, "INSMOD"), "0");
    assert_ne!(field(&out, "MODPROBE"), "0");
    // The container's own sh, ls and its pipeline: nothing of the node or the pod's pause.
    assert!(field(&out, "PROCS").parse::<u32>().unwrap() <= 4, "{out}");
    for k in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(field(&out, k), DEFAULT_CAPS, "{k}");
    }
    assert_eq!(field(&out, "CapInh"), "0000000000000000");
    assert_eq!(field(&out, "CapAmb"), "0000000000000000");
    assert_eq!(field(&out, "Seccomp"), "2", "filter mode");
    assert_eq!(field(&out, "NoNewPrivs"), "1");
    assert_eq!(node.sh_ok("hostname"), node_hostname, "the node's hostname changed");
    // kexec: busybox has no kexec applet; kexec_load is in the denied list (unit-tested).
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn non_root_user_has_no_effective_capabilities() {
    require_root!();
    let node = Node::new("nonroot");
    pod(&node, "p");
    let script = r#"
        id
        echo x >> /etc/passwd 2>/dev/null && echo PASSWD=written || echo PASSWD=denied
        grep Cap /proc/self/status
    "#;
    let (code, out) = run(&node, "p", "c", &["-u", "1000:1000", "--group-add", "50"], script);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("uid=1000") && out.contains("gid=1000"), "{out}");
    assert!(out.lines().next().unwrap().contains("50"), "supplementary group missing: {out}");
    assert!(out.contains("PASSWD=denied"), "{out}");
    assert_eq!(field(&out, "CapEff"), "0000000000000000");
    assert_eq!(field(&out, "CapPrm"), "0000000000000000");
    assert_eq!(field(&out, "CapBnd"), DEFAULT_CAPS);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn capability_flags_and_privileged() {
    require_root!();
    let node = Node::new("caps");
    pod(&node, "p");
    let (_, out) = run(&node, "p", "a", &["--cap-drop", "ALL", "--cap-add", "cap_kill"], "grep CapEff /proc/self/status");
    assert_eq!(field(&out, "CapEff"), "0000000000000020");
    let (_, out) = run(&node, "p", "b", &["--cap-drop", "chown", "--cap-add", "NET_ADMIN"], "grep CapEff /proc/self/status");
    assert_eq!(field(&out, "CapEff"), format!("{:016x}", 0xa80425fbu64 & !1 | 1 << 12));
    // Privileged: every capability, no filter, /sys writable, mounting works (inside the
    // container's own mount namespace).
    let script = r#"
        grep -E 'CapEff|Seccomp:' /proc/self/status
        grep ' /sys ' /proc/mounts | grep -q '[ ,]rw[ ,]' && echo SYS=rw
        mkdir -p /tmp/m && mount -t tmpfs x /tmp/m && echo MOUNT=ok
    "#;
    let (code, out) = run(&node, "p", "c", &["--privileged"], script);
    assert_eq!(code, 0, "{out}");
    let all = u64::from_str_radix(field(&out, "CapEff"), 16).unwrap();
    assert!(all.count_ones() >= 40, "{out}");
    assert_eq!(field(&out, "Seccomp"), "0");
    assert!(out.contains("SYS=rw") && out.contains("MOUNT=ok"), "{out}");
    let (_, out) = run(&node, "p", "d", &["--security-opt", "seccomp=unconfined"], "grep Seccomp: /proc/self/status");
    assert_eq!(field(&out, "Seccomp"), "0");
    let bad = node.podbox(&["run", "--pod", "p", "--name", "e", "--cap-add", "FLY", "--", "true"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("FLY"));
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn read_only_root_and_exec_are_confined() {
    require_root!();
    let node = Node::new("rofs");
    pod(&node, "p");
    let (code, out) = run(&node, "p", "c", &["--read-only"], "touch /x 2>/dev/null && echo ROOT=rw || echo ROOT=ro");
    assert_eq!(code, 0);
    assert!(out.contains("ROOT=ro"), "{out}");
    node.podbox_ok(&["run", "--pod", "p", "--name", "d", "-d", "--pids-limit", "20", "--", "sleep", "1000"]);
    let out = node.podbox_ok(&["exec", "p", "d", "--", "sh", "-c", "grep Seccomp: /proc/self/status; cat /proc/self/cgroup"]);
    assert_eq!(field(&out, "Seccomp"), "2");
    // In the container's cgroup namespace its cgroup is the root: the exec'd process joined it.
    assert!(out.lines().filter(|l| l.contains("pids")).all(|l| l.ends_with(":/")), "{out}");
    node.podbox_ok(&["rm", "-f", "p", "d"]);
    // A container that cannot start leaves no cgroup behind.
    let id = node.podbox_ok(&["pod", "inspect", "p"]);
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let out = node.podbox(&["run", "--pod", "p", "--name", "nf", "--memory", "16m", "--", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    let left = node.sh_ok(&format!("find /sys/fs/cgroup -type d -path '*/podbox/??/{}/nf' 2>/dev/null || true", id["id"].as_str().unwrap()));
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    require_root!();
    let node = Node::new("forkbomb");
    pod(&node, "p");
    // A bounded bomb: a subshell starts 200 background sleeps and dies at the first fork the
    // limit refuses; its sleeps stay with the container's init (this sh, PID 1), which counts
    // them with a glob, as counting with a command would need a fork.
    let script = r#"
        ( i=0; while [ $i -lt 200 ]; do sleep 100 & i=$((i+1)); done ) 2>/tmp/err
        grep -q "can't fork" /tmp/err && echo FORK=refused
        set -- /proc/[0-9]*; echo TASKS=$#
    "#;
    let (code, out) = run(&node, "p", "c", &["--pids-limit", "50"], script);
    assert_eq!(code, 0, "{out}");
    let tasks: u32 = field(&out, "TASKS").parse().unwrap();
    assert!(tasks <= 50, "{tasks} processes despite --pids-limit 50");
    assert!(tasks >= 40, "the limit should be reached, got {tasks}");
    assert!(out.contains("FORK=refused"), "{out}");
    // The init's exit ended its PID namespace, so the sleeps are gone; the node works on.
    node.sh_ok("true");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn memory_hog_is_oom_killed_and_reported() {
    require_root!();
    let node = Node::new("oom");
    let id = pod(&node, "p");
    // tail keeps the last 10 lines; /dev/zero has no newline, so it holds everything.
    let (code, _) = run(&node, "p", "hog", &["--memory", "32m"], "head -c 200m /dev/zero | tail");
    assert_eq!(code, 137);
    let ps: serde_json::Value = serde_json::from_str(&node.podbox_ok(&["ps", "--json"])).unwrap();
    let exit = &ps[0]["container"]["exit"];
    assert_eq!(exit["oom_killed"], true, "{ps}");
    assert_eq!(exit["code"], 137);
    assert!(node.podbox_ok(&["ps"]).contains("OOMKilled"));
    let limit = node.sh_ok(&format!("cat $(find /sys/fs/cgroup/memory -type d -path '*/podbox/??/{id}/hog')/memory.limit_in_bytes"));
    assert_eq!(limit.trim(), (32u64 << 20).to_string());
    // A container within its limit is not reported.
    let (code, _) = run(&node, "p", "small", &["--memory", "32m"], "head -c 1m /dev/zero | tail | wc -c");
    assert_eq!(code, 0);
    let ps: serde_json::Value = serde_json::from_str(&node.podbox_ok(&["ps", "--json"])).unwrap();
    let small = ps.as_array().unwrap().iter().find(|c| c["container"]["name"] == "small").unwrap();
    assert_eq!(small["container"]["exit"]["oom_killed"], false);
    node.podbox_ok(&["rm", "p", "hog"]);
    assert!(node.sh_ok(&format!("find /sys/fs/cgroup -type d -path '*/podbox/??/{id}/hog' 2>/dev/null || true")).trim().is_empty(), "container cgroup left");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    assert!(cgroup_dirs(&node, &id).is_empty(), "pod cgroups left: {:?}", cgroup_dirs(&node, &id));
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn limits_from_flags_and_manifest_reach_the_cgroup() {
    require_root!();
    let node = Node::new("limits");
    let id = pod(&node, "p");
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "-d", "--cpus", "0.5", "--memory", "64m", "--pids-limit", "100", "--", "sleep", "1000"]);
    let dir = |ctrl: &str, c: &str| node.sh_ok(&format!("find /sys/fs/cgroup/{ctrl} -type d -path '*/podbox/??/{id}/{c}' 2>/dev/null || true")).trim().to_string();
    let read = |path: String| node.sh_ok(&format!("cat {path}")).trim().to_string();
    assert_eq!(read(format!("{}/cpu.cfs_quota_us", dir("cpu", "c"))), "50000");
    assert_eq!(read(format!("{}/pids.max", dir("pids", "c"))), "100");
    assert_eq!(read(format!("{}/memory.limit_in_bytes", dir("memory", "c"))), (64u64 << 20).to_string());
    let devices = read(format!("{}/devices.list", dir("devices", "c")));
    assert!(devices.contains("c 1:3 rwm") && devices.contains("c 136:* rwm") && !devices.contains("a *:* rwm"), "{devices}");
    // The pause has its own child of the pod's cgroup.
    assert!(!dir("pids", "_pause").is_empty());
    let manifest = node.dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        "metadata: {name: m}\nspec:\n  containers:\n  - name: web\n    command: [sleep, '1000']\n    resources:\n      limits: {memory: 48Mi, cpu: 250m}\n",
    )
    .unwrap();
    let mid = node.podbox_ok(&["pod", "apply", "-f", &manifest.to_string_lossy(), "--network", "none"]).trim().to_string();
    let mdir = |ctrl: &str| node.sh_ok(&format!("find /sys/fs/cgroup/{ctrl} -type d -path '*/podbox/??/{mid}/web' 2>/dev/null || true")).trim().to_string();
    assert_eq!(read(format!("{}/memory.limit_in_bytes", mdir("memory"))), (48u64 << 20).to_string());
    assert_eq!(read(format!("{}/cpu.cfs_quota_us", mdir("cpu"))), "25000");
    assert_eq!(read(format!("{}/cpu.shares", mdir("cpu"))), "256");
    node.podbox_ok(&["pod", "rm", "-f", "p", "m"]);
    assert!(cgroup_dirs(&node, &id).is_empty() && cgroup_dirs(&node, &mid).is_empty(), "cgroups left");
    node.assert_clean();
}

/// A node that sees cgroup v2 alone (this machine is hybrid: the node's own mount namespace
/// mounts the unified hierarchy over /sys/fs/cgroup): podbox puts pods and containers there and,
/// with no devices controller in v2, enforces the device rules with an eBPF program.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pure_cgroup_v2_denies_devices_with_ebpf() {
    require_root!();
    let node = Node::new("v2");
    node.sh_ok("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup");
    let id = pod(&node, "p");
    let script = r#"
        mknod /tmp/sda b 8 0 && echo MKNOD=ok
        head -c 1 /tmp/sda 2>&1 >/dev/null | sed 's/^/DISKERR /'
        mknod /tmp/tun c 10 200 && echo TUNNODE=ok
        (exec 3</tmp/tun) 2>&1 | sed 's/^/TUNERR /'
        (exec 3</tmp/tun) 2>/dev/null && echo TUN=opened
        head -c 1 /dev/zero | wc -c | sed 's/^/ZERO=/'
        echo x > /dev/null && echo NULL=ok
    "#;
    let (code, out) = run(&node, "p", "c", &[], script);
    assert_eq!(code, 0, "{out}");
    for want in ["MKNOD=ok", "TUNNODE=ok", "ZERO=1", "NULL=ok"] {
        assert!(out.lines().any(|l| l == want), "expected {want} in:\n{out}");
    }
    // mknod is allowed (CAP_MKNOD, as the engines do) but opening the node is refused — also
    // /dev/net/tun's, which any root process could open were it not for the device rules.
    assert!(!out.contains("TUN=opened"), "{out}");
    for err in ["DISKERR", "TUNERR"] {
        assert!(out.lines().any(|l| l.starts_with(err) && l.contains("Operation not permitted")), "{err}: {out}");
    }
    // One v2 cgroup per container, below the pod's.
    node.podbox_ok(&["run", "-d", "--pod", "p", "--name", "s", "--", "sleep", "100"]);
    // Below its middle level (the first two digits of the pod's ID).
    let level = &id[..2];
    assert_eq!(node.sh_ok(&format!("cat /sys/fs/cgroup/podbox/{level}/{id}/s/cgroup.procs | wc -l")).trim(), "1");
    let dirs = cgroup_dirs(&node, &id);
    assert_eq!(dirs, vec![format!("/sys/fs/cgroup/podbox/{level}/{id}")], "{dirs:?}");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    assert!(cgroup_dirs(&node, &id).is_empty(), "the pod's v2 cgroup is left");
    node.assert_clean();
}
