//! User namespaces: OCI bundles with `linux.uidMappings`/`gidMappings` and a `user` namespace
//! run as root inside and as the mapped host ids outside; bad mappings are refused by name and
//! leave nothing behind.
mod common;

use common::Node;
use common::oci::Env;
use serde_json::{Value, json};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Give the bundle config a new user namespace mapping 0..65536 to host..host+65536.
fn with_userns(c: &mut Value, host: u32) {
    c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({ "type": "user" }));
    c["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": host, "size": 65536 }]);
    c["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": host, "size": 65536 }]);
}

/// The `Uid:`/`Gid:` lines of a process's status, as the node (outside the container) sees them.
fn host_ids(node: &Node, pid: i64) -> (String, String) {
    let status = node.sh_ok(&format!("cat /proc/{pid}/status"));
    let field = |name: &str| status.lines().find(|l| l.starts_with(name)).unwrap_or_default().split_whitespace().nth(1).unwrap_or_default().to_string();
    (field("Uid:"), field("Gid:"))
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn oci_bundle_with_mappings_is_root_inside_and_mapped_outside() {
    require_root!();
    let node = Node::new("userns-oci");
    let env = Env::in_node("userns", &node);
    let script = "echo uid=$(id -u) gid=$(id -g); echo map=$(cat /proc/self/uid_map); echo mine > /tmp/own && echo wrote=$(cat /tmp/own) owner=$(stat -c %u /tmp/own); echo proc=$(ls /proc/1/ns | wc -l); exec sleep 1000";
    let b = env.bundle("b", script, |c| {
        with_userns(c, 100000);
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"] }));
    });
    node.sh_ok(&env.bg(&format!("create --bundle {} u1", b.display())));
    node.sh_ok(&env.cmd("start u1"));
    let out_file = env.dir.join("container.out");
    let read_out = || std::fs::read_to_string(&out_file).unwrap_or_default();
    assert!(common::wait_until(10, || read_out().contains("proc=")), "container output: {}", read_out());
    let out = read_out();
    assert!(out.contains("uid=0 gid=0"), "{out}");
    // The kernel's columns: inside, outside, size.
    assert!(out.contains("map= 0 100000 65536"), "{out}");
    assert!(out.contains("wrote=mine owner=0"), "{out}");
    // /proc was mounted: the PID namespace is owned by the user namespace.
    assert!(!out.contains("proc=0"), "{out}");
    let pid = env.state(&node, "u1")["pid"].as_i64().unwrap();
    assert_eq!(host_ids(&node, pid), ("100000".into(), "100000".into()));

    // exec joins the user namespace too: root inside, 100000 outside.
    let out = node.sh(&env.cmd("exec u1 sh -c 'echo uid=$(id -u); cat /proc/self/uid_map'"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("uid=0") && text.split_whitespace().collect::<Vec<_>>().windows(3).any(|w| w == ["0", "100000", "65536"]), "{text}");
    let pf = env.dir.join("exec.pid");
    node.sh_ok(&env.bg(&format!("exec --detach --pid-file {} u1 sleep 1000", pf.display())));
    let exec_pid: i64 = std::fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    assert_eq!(host_ids(&node, exec_pid), ("100000".into(), "100000".into()));
    let user_ns = |p: i64| node.sh_ok(&format!("readlink /proc/{p}/ns/user"));
    assert_eq!(user_ns(exec_pid), user_ns(pid));
    assert_ne!(user_ns(pid), node.sh_ok("readlink /proc/self/ns/user"));

    // Without a network namespace of its own, sysfs cannot be mounted: the host's /sys is
    // bound, read-only as the spec's sysfs mount asks.
    let b = env.bundle("nonet", "ls /sys/class/net | grep -qx lo && echo sys-ok; touch /sys/x 2>&1 | grep -q Read-only && echo sys-ro", |c| {
        with_userns(c, 200000);
        c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "network");
    });
    let out = node.sh(&env.cmd(&format!("run --bundle {} u2", b.display())));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sys-ok\nsys-ro\n", "{}", String::from_utf8_lossy(&out.stderr));
    node.sh_ok(&env.cmd("kill --all u1 KILL"));
    assert!(common::wait_until(5, || env.status(&node, "u1") == "stopped"));
    node.sh_ok(&env.cmd("delete u1"));
    env.assert_clean(&node);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn bad_mappings_are_refused_by_name_and_leave_nothing() {
    require_root!();
    let node = Node::new("userns-bad");
    let env = Env::in_node("userns-bad", &node);
    let maps = |uid: Value, gid: Value| move |c: &mut Value| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({ "type": "user" }));
        c["linux"]["uidMappings"] = uid;
        c["linux"]["gidMappings"] = gid;
    };
    let one = |inside: u32, host: u32, size: u32| json!({ "containerID": inside, "hostID": host, "size": size });
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        ("no user namespace", env.bundle("nons", "true", |c| c["linux"]["uidMappings"] = json!([one(0, 100000, 1)])), "need a user namespace"),
        ("no mappings", env.bundle("nomap", "true", |c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({ "type": "user" }))), "linux.uidMappings"),
        ("overlap inside", env.bundle("ovl", "true", maps(json!([one(0, 100000, 10), one(5, 200000, 10)]), json!([one(0, 100000, 1)]))), "overlap inside"),
        ("overlap outside", env.bundle("ovh", "true", maps(json!([one(0, 100000, 1)]), json!([one(0, 100000, 10), one(10, 100005, 10)]))), "overlap on the host"),
        ("size 0", env.bundle("zero", "true", maps(json!([one(0, 100000, 0)]), json!([one(0, 100000, 1)]))), "size 0"),
        // Valid maps the kernel takes, but without a root for the init to become.
        ("no root", env.bundle("noroot", "true", maps(json!([one(1, 100000, 10)]), json!([one(1, 100000, 10)]))), "is gid 0 mapped"),
    ];
    for (what, bundle, expect) in cases {
        let out = node.sh(&env.cmd(&format!("create --bundle {} bad", bundle.display())));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(code(&out), 0, "{what}");
        assert!(err.contains(expect), "{what}: expected {expect:?} in {err}");
        env.assert_clean(&node);
    }
    node.assert_clean();
}

use std::path::PathBuf;

/// The container `name` of `pod`: its init's PID in the node's numbering.
fn container_pid(node: &Node, pod: &str, name: &str) -> i64 {
    let v = common::json(&node.podbox_ok(&["pod", "inspect", pod]));
    let c = v["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no container {name} in {v}"));
    c["pid"]["pid"].as_i64().or_else(|| c["pid"].as_i64()).unwrap_or_else(|| panic!("no pid in {c}"))
}

fn range_start(node: &Node, pod: &str) -> u64 {
    let v = common::json(&node.podbox_ok(&["pod", "inspect", pod]));
    v["user_range"]["host_start"].as_u64().unwrap_or_else(|| panic!("no user_range in {v}"))
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pods_with_userns_run_as_root_inside_and_their_own_range_outside() {
    require_root!();
    let node = Node::new("userns-pod");
    node.podbox_ok(&["pod", "create", "--userns", "--network", "none", "--volume", "data", "p1"]);
    node.podbox_ok(&["pod", "create", "--userns", "--network", "none", "p2"]);
    let (a, b) = (range_start(&node, "p1"), range_start(&node, "p2"));
    assert!(a.abs_diff(b) >= 65536 && a > 0 && b > 0, "ranges overlap: {a} and {b}");
    // Root inside, mapped to the pod's range; the rootfs (overlay upper over idmapped image
    // layers: new files and a copied-up one) and an emptyDir are writable.
    let script = "echo uid=$(id -u); echo map=$(cat /proc/self/uid_map); echo new > /new-file && cat /new-file; echo more >> /etc/group && tail -1 /etc/group; echo vol > /data/f && cat /data/f; echo owner=$(stat -c %u /bin/busybox)";
    let out = node.podbox_ok(&["run", "--pod", "p1", "--name", "c", "-v", "data:/data", "--", "sh", "-c", script]);
    assert!(out.contains("uid=0"), "{out}");
    assert!(out.contains(&format!("map= 0 {a} 65536")), "{out}");
    assert!(out.contains("new\nmore\nvol\nowner=0"), "{out}");
    // Outside: the pod's first host id, for the init and for exec.
    node.podbox_ok(&["run", "--pod", "p2", "--name", "s", "-d", "--", "sleep", "100000"]);
    let pid = container_pid(&node, "p2", "s");
    assert_eq!(host_ids(&node, pid), (b.to_string(), b.to_string()));
    let out = node.podbox_ok(&["exec", "p2", "s", "--", "sh", "-c", "id -u; cat /proc/self/uid_map"]);
    assert!(out.starts_with("0\n") && out.contains(&b.to_string()), "{out}");
    // A restarted container starts from the image again, in a writable layer it can still use.
    node.podbox_ok(&["run", "--pod", "p2", "--name", "r", "-d", "--restart", "always", "--", "sh", "-c", "[ -e /mark ] && echo LEFT-OVER; echo run > /mark && sleep 0.2"]);
    let restarts = || common::json(&node.podbox_ok(&["pod", "inspect", "p2"]))["containers"].as_array().unwrap().iter().find(|c| c["name"] == "r").map(|c| c["restarts"].as_u64().unwrap_or(0)).unwrap_or(0);
    assert!(common::wait_until(10, || restarts() >= 2), "the container was not restarted twice");
    let logs = node.podbox_ok(&["logs", "p2", "r"]);
    assert!(!logs.contains("LEFT-OVER") && !logs.contains("podbox:"), "{logs}");
    // Sharing the pause's PID namespace (owned by the pod's user namespace): /proc is mounted,
    // PID 1 is the pause.
    node.podbox_ok(&["pod", "create", "--userns", "--share-pid", "--network", "none", "p3"]);
    let out = node.podbox_ok(&["run", "--pod", "p3", "--name", "c", "--", "sh", "-c", "id -u; cat /proc/1/cmdline"]);
    assert!(out.starts_with("0\n") && out.contains("pause"), "{out}");
    node.podbox_ok(&["pod", "rm", "--force", "p1", "p2", "p3"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn manifest_host_users_false_gives_the_pod_a_user_namespace() {
    require_root!();
    let node = Node::new("userns-manifest");
    // An image made from the test rootfs: its layers are what gets idmapped.
    node.podbox_ok(&["image", "import", common::rootfs().to_str().unwrap(), "busybox"]);
    let file = node.dir.join("pod.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: Pod\nmetadata: {name: m}\nspec:\n  hostUsers: false\n  restartPolicy: Never\n  volumes: [{name: scratch, emptyDir: {}}]\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'echo x > /s/f && echo x > /f && sleep 100000']\n    volumeMounts: [{name: scratch, mountPath: /s}]\n").unwrap();
    node.podbox_ok(&["pod", "apply", "-f", file.to_str().unwrap(), "--network", "none"]);
    let start = range_start(&node, "m");
    let pid = container_pid(&node, "m", "c");
    assert_eq!(host_ids(&node, pid).0, start.to_string());
    assert!(common::wait_until(5, || node.podbox(&["exec", "m", "c", "--", "cat", "/s/f", "/f"]).status.success()));
    // pod generate writes it back.
    assert!(node.podbox_ok(&["pod", "generate", "m"]).contains("hostUsers: false"));
    node.podbox_ok(&["pod", "rm", "--force", "m"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_rootfs_that_cannot_be_idmapped_fails_naming_it_and_leaves_nothing() {
    require_root!();
    let node = Node::new("userns-ramfs");
    // ramfs has no idmapped mounts; the node's own mount namespace holds it.
    let ram = node.dir.join("ramfs");
    node.sh_ok(&format!("mkdir -p {r} && mount -t ramfs ramfs {r} && cp -a {}/. {r}/", common::rootfs().display(), r = ram.display()));
    node.podbox_ok(&["pod", "create", "--userns", "--network", "none", "p"]);
    let out = node.podbox(&["--rootfs", ram.to_str().unwrap(), "run", "--pod", "p", "--name", "c", "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(code(&out), 0);
    assert!(err.contains("idmapping") && err.contains(ram.to_str().unwrap()), "{err}");
    // The pod is usable still, from a rootfs that can be idmapped.
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "ok", "--", "id", "-u"]).trim(), "0");
    node.podbox_ok(&["pod", "rm", "--force", "p"]);
    node.sh_ok(&format!("umount {}", ram.display()));
    node.assert_clean();
}
