//! OCI runtime mode: nothing in a spec is silently ignored. Each test runs a bundle through the
//! `podbox-runc` symlink inside a throwaway `Node` and checks the field took effect (or was
//! refused with an error naming it): recursive mount options, /proc and /sys on symlinks, hooks
//! after a failing one, FIFO devices, exec flags, create checks, error lines.
mod common;

use std::process::Stdio;

use common::Node;
use common::oci::Env;
use serde_json::{Value, json};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The per-mount options (mountinfo field 6) of the mount at `point` in a mountinfo dump.
fn mount_opts<'a>(mountinfo: &'a str, point: &str) -> Vec<&'a str> {
    let line = mountinfo.lines().rfind(|l| l.split(' ').nth(4) == Some(point)).unwrap_or_else(|| panic!("no mount at {point} in:\n{mountinfo}"));
    line.split(' ').nth(5).unwrap().split(',').collect()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn recursive_mount_options_reach_every_submount() {
    require_root!();
    let node = Node::new("ocispec-rmnt");
    let env = Env::in_node("rmnt", &node);
    // A directory with a submount (in the node's own mount namespace only).
    let data = env.dir.join("data");
    node.sh_ok(&format!("mkdir -p {0}/sub && mount -t tmpfs -o mode=755 podbox-test-sub {0}/sub && echo hi > {0}/sub/f", data.display()));
    let b = env.bundle("b", "cat /proc/self/mountinfo", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime"] }));
    });
    let out = node.sh(&env.cmd(&format!("run -b {} r", b.display())));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let mi = text(&out.stdout);
    for point in ["/data", "/data/sub"] {
        let opts = mount_opts(&mi, point);
        for want in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
            assert!(opts.contains(&want), "{point}: {want} missing in {opts:?}");
        }
    }
    // An option that means nothing to a bind mount is refused by name, not dropped.
    let b = env.bundle("bad", "true", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rnoexecc"] }));
    });
    let out = node.sh(&env.cmd(&format!("run -b {} bad", b.display())));
    assert_ne!(code(&out), 0);
    assert!(text(&out.stderr).contains("rnoexecc"), "{}", text(&out.stderr));
    // The cgroup mount takes the recursive options too (its v1 hierarchies are submounts of a
    // tmpfs), and refuses file system data it has no place for.
    let b = env.bundle("cg", "cat /proc/self/mountinfo", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/cg", "type": "cgroup", "source": "cgroup", "options": ["rw", "rro", "rnoatime"] }));
    });
    let out = node.sh(&env.cmd(&format!("run -b {} cg", b.display())));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let mi = text(&out.stdout);
    for point in ["/cg", "/cg/memory", "/cg/pids"] {
        let opts = mount_opts(&mi, point);
        assert!(opts.contains(&"ro") && opts.contains(&"noatime"), "{point}: {opts:?}");
    }
    let b = env.bundle("cgbad", "true", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/cg", "type": "cgroup", "source": "cgroup", "options": ["ro", "nsdelegate"] }));
    });
    let out = node.sh(&env.cmd(&format!("run -b {} cgbad", b.display())));
    assert!(code(&out) != 0 && text(&out.stderr).contains("nsdelegate"), "{}", text(&out.stderr));
    env.assert_clean(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn proc_and_sys_on_a_symlink_are_refused_and_nothing_is_created() {
    require_root!();
    let node = Node::new("ocispec-procln");
    let env = Env::in_node("procln", &node);
    for (name, typ, dest) in [("p", "proc", "/proc"), ("s", "sysfs", "/sys")] {
        // A root whose /proc (or /sys) is a link to a directory the image does not have.
        let root = env.dir.join(format!("root-{name}"));
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink("/evil", root.join(&dest[1..])).unwrap();
        let b = env.bundle_with_root(name, &root, "true", |c| c["root"]["readonly"] = json!(false));
        let out = node.sh(&env.cmd(&format!("create -b {} {name}", b.display())));
        assert_ne!(code(&out), 0, "{typ} on a symlink was accepted");
        let err = text(&out.stderr);
        assert!(err.contains("ordinary directory") && err.contains(dest), "{typ}: {err}");
        let made: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(made, [std::ffi::OsString::from(&dest[1..])], "{typ}: the image was changed");
        env.assert_clean(&node);
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_failing_poststart_or_poststop_hook_warns_and_the_rest_run() {
    require_root!();
    let node = Node::new("ocispec-hooks");
    let env = Env::in_node("hooks", &node);
    let order = env.dir.join("order");
    let hook = |name: &str| json!({ "path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {}", order.display())] });
    let fail = json!({ "path": "/bin/sh", "args": ["sh", "-c", "exit 3"] });
    let b = env.bundle("b", "sleep 1000", |c| {
        c["hooks"] = json!({ "poststart": [fail.clone(), hook("poststart-1"), fail.clone(), hook("poststart-2")], "poststop": [fail.clone(), hook("poststop-1"), hook("poststop-2")] });
    });
    let log = env.dir.join("runtime.log");
    node.sh_ok(&env.bg(&format!("create -b {} h", b.display())));
    let out = node.sh(&env.cmd(&format!("--log {} --log-format json start h", log.display())));
    assert_eq!(code(&out), 0, "a failing poststart hook failed start: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("level=warning") && text(&out.stderr).contains("poststart hook #0"), "{}", text(&out.stderr));
    assert_eq!(env.status(&node, "h"), "running", "a failing poststart hook stopped the container");
    let out = node.sh(&env.cmd(&format!("--log {} --log-format json delete --force h", log.display())));
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "poststart-1\npoststart-2\npoststop-1\npoststop-2\n");
    let records: Vec<Value> = std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let warned: Vec<&str> = records.iter().filter(|r| r["level"] == "warning").filter_map(|r| r["msg"].as_str()).collect();
    assert_eq!(warned.len(), 3, "{records:?}");
    assert!(warned[0].contains("poststart hook #0") && warned[1].contains("poststart hook #2") && warned[2].contains("poststop hook #0"), "{warned:?}");
    env.assert_clean(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn errors_are_one_line_with_the_level_on_stderr_and_in_the_log() {
    require_root!();
    let node = Node::new("ocispec-errline");
    let env = Env::in_node("errline", &node);
    let out = node.sh(&env.cmd("state nope"));
    assert_eq!(code(&out), 1);
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("level=error") && lines[0].contains(r#"msg="container \"nope\" does not exist"#), "{err}");
    // --log-format json: the same error as a JSON record in the log, with the exit code kept.
    let log = env.dir.join("log.json");
    let out = node.sh(&env.cmd(&format!("--log {} --log-format json kill nope", log.display())));
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("level=error"), "{}", text(&out.stderr));
    let rec: Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(rec["level"], "error");
    assert!(rec["msg"].as_str().unwrap().contains("does not exist") && rec["time"].is_string(), "{rec}");
    // The text format writes the stderr line to the log too.
    let log = env.dir.join("log.txt");
    node.sh(&env.cmd(&format!("--log {} delete nope", log.display())));
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(line.starts_with("time=\"") && line.contains("level=error msg="), "{line}");
}

/// A `linux.devices` entry of type `p` is a FIFO: created in /dev, and no device cgroup rule
/// (v1 refuses `p` in devices.allow), on v1 (this machine) and on a node that sees only v2.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_fifo_device_is_created_on_cgroup_v1_and_v2() {
    require_root!();
    for v2 in [false, true] {
        let node = Node::new(if v2 { "ocispec-fifo2" } else { "ocispec-fifo1" });
        if v2 {
            node.sh_ok("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup");
        }
        let env = Env::in_node("fifo", &node);
        let b = env.bundle("b", "[ -p /dev/myfifo ] && stat -c %a /dev/myfifo && echo x > /dev/null && echo null-ok", |c| {
            c["linux"]["devices"] = json!([{ "path": "/dev/myfifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o640 }]);
        });
        let out = node.sh(&env.cmd(&format!("run -b {} f", b.display())));
        assert_eq!((code(&out), text(&out.stdout)), (0, "640\nnull-ok\n".to_string()), "v2={v2}: {}", text(&out.stderr));
        env.assert_clean(&node);
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn create_refuses_a_bad_oci_version_and_a_missing_absolute_command() {
    require_root!();
    let node = Node::new("ocispec-create");
    let env = Env::in_node("create", &node);
    for (name, version, expect) in [("v2", "2.0.0", "major version 2"), ("vx", "banana", "not a semantic version"), ("v1", "1", "not a semantic version")] {
        let b = env.bundle(name, "true", |c| c["ociVersion"] = json!(version));
        let _ = std::fs::remove_file(env.dir.join("container.out"));
        let out = node.sh(&env.bg(&format!("create -b {} {name}", b.display())));
        let log = std::fs::read_to_string(env.dir.join("container.out")).unwrap_or_default();
        assert_eq!(code(&out), 1, "ociVersion {version} accepted");
        assert!(log.contains("ociVersion") && log.contains(expect), "{log}");
        env.assert_clean(&node);
    }
    // An absolute command that the root file system does not have fails create, as a relative
    // one found nowhere in PATH does; a directory is not executable.
    for (name, cmd, expect) in [("abs", "/no/such/cmd", "not found"), ("dir", "/bin", "is a directory"), ("rel", "./bin/nope", "not found")] {
        let b = env.bundle(name, "true", |c| c["process"]["args"] = json!([cmd]));
        let _ = std::fs::remove_file(env.dir.join("container.out"));
        let out = node.sh(&env.bg(&format!("create -b {} {name}", b.display())));
        assert_ne!(code(&out), 0, "create of {cmd} succeeded");
        let log = std::fs::read_to_string(env.dir.join("container.out")).unwrap_or_default();
        assert!(log.contains(cmd) && log.contains(expect), "{cmd}: {log}");
        env.assert_clean(&node);
    }
    // A relative path is looked up below process.cwd, where it will run.
    let b = env.bundle("cwd", "true", |c| {
        c["process"]["args"] = json!(["./busybox", "echo", "from-cwd"]);
        c["process"]["cwd"] = json!("/bin");
    });
    let out = node.sh(&env.cmd(&format!("run -b {} cwd", b.display())));
    assert_eq!((code(&out), text(&out.stdout)), (0, "from-cwd\n".into()), "{}", text(&out.stderr));
    env.assert_clean(&node);
}

/// The cgroup lines of /proc/self/cgroup output, as controller → path.
fn cgroup_lines(out: &str) -> std::collections::HashMap<String, String> {
    out.lines().filter_map(|l| l.splitn(3, ':').collect::<Vec<_>>().get(1..3).map(|v| (v[0].to_string(), v[1].to_string()))).collect()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn exec_cap_ignore_paused_and_cgroup() {
    require_root!();
    let node = Node::new("ocispec-exec");
    let env = Env::in_node("exec", &node);
    let t = env.dir.join("t");
    std::fs::create_dir_all(&t).unwrap();
    let b = env.bundle("b", "sleep 1000", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/t", "type": "bind", "source": t, "options": ["rbind", "rw"] }));
    });
    node.sh_ok(&env.bg(&format!("run -d -b {} e", b.display())));

    // --cap: the capability is the process's (CAP_SYS_ADMIN is not in `spec`'s set: mount fails).
    let mount = "mount -t tmpfs podbox-test /tmp && echo mounted";
    let out = node.sh(&env.cmd(&format!("exec e sh -c '{mount}'")));
    assert_ne!(text(&out.stdout), "mounted\n", "mounted without CAP_SYS_ADMIN");
    let out = node.sh(&env.cmd(&format!("exec --cap CAP_SYS_ADMIN --cap NET_RAW e sh -c '{mount}; grep CapEff /proc/self/status'")));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("mounted\n"), "{stdout} {}", text(&out.stderr));
    let eff = u64::from_str_radix(stdout.lines().nth(1).unwrap().split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(eff & (1 << 21) != 0 && eff & (1 << 13) != 0, "CapEff {eff:x}");
    let out = node.sh(&env.cmd("exec --cap CAP_NO_SUCH e true"));
    assert!(code(&out) == 1 && text(&out.stderr).contains("CAP_NO_SUCH"), "{}", text(&out.stderr));

    // --cgroup: a sub-cgroup in every hierarchy, or in the named controllers' only.
    let dirs: Vec<String> = node.sh_ok("find /sys/fs/cgroup -type d -path '*/podbox-runc/e-*' -prune 2>/dev/null || true").lines().map(String::from).collect();
    assert!(dirs.len() >= 2, "{dirs:?}");
    for d in &dirs {
        std::fs::create_dir(format!("{d}/sub")).unwrap();
        // A new v1 cpuset cgroup has no CPUs or memory nodes: nothing could join it until they
        // are given (as anyone making a sub-cgroup for `runc exec --cgroup` must).
        if d.starts_with("/sys/fs/cgroup/cpuset/") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                std::fs::write(format!("{d}/sub/{f}"), std::fs::read_to_string(format!("{d}/{f}")).unwrap()).unwrap();
            }
        }
    }
    let memory = dirs.iter().find(|d| d.starts_with("/sys/fs/cgroup/memory/")).unwrap();
    std::fs::create_dir(format!("{memory}/mem-only")).unwrap();
    let out = node.sh_ok(&env.cmd("exec --cgroup sub e cat /proc/self/cgroup"));
    let lines = cgroup_lines(&out);
    for ctrl in ["memory", "pids", "freezer", "devices", "cpu"] {
        assert!(lines[ctrl].contains("/podbox-runc/e-") && lines[ctrl].ends_with("/sub"), "{ctrl}: {out}");
    }
    let out = node.sh_ok(&env.cmd("exec --cgroup memory:mem-only e cat /proc/self/cgroup"));
    let lines = cgroup_lines(&out);
    assert!(lines["memory"].ends_with("/mem-only") && lines["pids"].contains("/podbox-runc/e-") && !lines["pids"].ends_with("/mem-only"), "{out}");
    for bad in ["no-such", "pids:mem-only", "nonexistent-ctrl:sub", "../x"] {
        let out = node.sh(&env.cmd(&format!("exec --cgroup {bad} e true")));
        assert_eq!(code(&out), 1, "--cgroup {bad} accepted");
        assert!(text(&out.stderr).contains("--cgroup"), "{}", text(&out.stderr));
    }

    // --ignore-paused: refused without it; with it the process starts frozen and runs on resume.
    node.sh_ok(&env.cmd("pause e"));
    let out = node.sh(&env.cmd("exec e true"));
    assert!(code(&out) == 1 && text(&out.stderr).contains("--ignore-paused"), "{}", text(&out.stderr));
    let mut exec = std::process::Command::new("nsenter")
        .args(["-t", &node.init_pid.to_string(), "--net", "--pid", "--mount", "--uts", "--"])
        .args(env.cmd("exec --ignore-paused e").split(' '))
        .args(["sh", "-c", "echo ran > /t/ran"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!t.join("ran").exists(), "the exec'd process ran in a paused container");
    node.sh_ok(&env.cmd("resume e"));
    assert!(common::wait_until(10, || t.join("ran").exists()), "the exec'd process did not run after resume");
    assert!(exec.wait().unwrap().success());
    node.sh_ok(&env.cmd("delete --force e"));
    for d in &dirs {
        assert!(!std::path::Path::new(d).exists(), "cgroup {d} left");
    }
    env.assert_clean(&node);
}

/// A spec without a mount namespace runs in the caller's mount namespace, chrooted into its
/// `root.path`, as runc and crun run it: it sees a mount the node made in its rootfs. Its spec
/// mounts are not made (runc and crun make them in the caller's namespace, where they stay
/// behind), with a warning naming them; a field that would confine the process (masked paths) is
/// refused by name.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn no_mount_namespace_runs_in_the_callers() {
    require_root!();
    let node = Node::new("ocispec-nomnt");
    let env = Env::in_node("nomnt", &node);
    let rootfs = env.dir.join("rootfs-copy");
    assert!(std::process::Command::new("cp").arg("-a").arg(common::rootfs()).arg(&rootfs).status().unwrap().success());
    // Only in the node's mount namespace: the container sees it only if it shares that namespace.
    let marker = rootfs.join("marker");
    node.sh_ok(&format!("mkdir {0} && mount -t tmpfs podbox-test-marker {0} && echo node-files > {0}/m", marker.display()));
    let no_mnt = |c: &mut Value| {
        c["linux"]["namespaces"] = json!([{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }]);
        c["mounts"] = json!([]);
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
        c["root"]["readonly"] = json!(false);
    };
    let b = env.bundle_with_root("b", &rootfs, "cat /marker/m; hostname", no_mnt);
    let out = node.sh(&env.cmd(&format!("run -b {} n", b.display())));
    assert_eq!((code(&out), text(&out.stdout)), (0, "node-files\npodbox\n".to_string()), "{}", text(&out.stderr));
    env.assert_clean(&node);
    // The same mount namespace as the runtime's; exec joins it the same way.
    let b = env.bundle_with_root("x", &rootfs, "sleep 1000", no_mnt);
    node.sh_ok(&env.bg(&format!("run -d -b {} x", b.display())));
    let pid = env.state(&node, "x")["pid"].as_i64().unwrap();
    assert_eq!(node.sh_ok(&format!("readlink /proc/{pid}/ns/mnt")), node.sh_ok("readlink /proc/self/ns/mnt"));
    assert_eq!(node.sh_ok(&format!("readlink /proc/{pid}/root")).trim(), rootfs.display().to_string());
    let out = node.sh(&env.cmd(&format!("exec x sh -c 'cat {}/m; hostname'", marker.display())));
    assert_eq!((code(&out), text(&out.stdout)), (0, "node-files\npodbox\n".to_string()), "{}", text(&out.stderr));
    node.sh_ok(&env.cmd("delete --force x"));
    env.assert_clean(&node);
    // Mounts (the spec's defaults, and one over the marker) are not made, and said so.
    let mounts_before = node.sh_ok("wc -l < /proc/self/mountinfo");
    let b = env.bundle_with_root("mnt", &rootfs, "cat /marker/m", |c| {
        let mounts = c["mounts"].clone();
        no_mnt(c);
        c["mounts"] = mounts;
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/marker", "type": "tmpfs", "source": "tmpfs" }));
    });
    let out = node.sh(&env.cmd(&format!("run -b {} mnt", b.display())));
    assert_eq!((code(&out), text(&out.stdout)), (0, "node-files\n".to_string()), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("mounts") && text(&out.stderr).contains("not applied"), "no warning: {}", text(&out.stderr));
    assert_eq!(node.sh_ok("wc -l < /proc/self/mountinfo"), mounts_before, "a mount was made in the caller's namespace");
    env.assert_clean(&node);
    // What would need a mount namespace is refused by name, not skipped.
    let b = env.bundle("m", "true", |c| {
        no_mnt(c);
        c["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    });
    let out = node.sh(&env.cmd(&format!("run -b {} m", b.display())));
    assert_eq!(code(&out), 1);
    assert!(text(&out.stderr).contains("linux.maskedPaths") && text(&out.stderr).contains("needs a mount namespace"), "{}", text(&out.stderr));
    env.assert_clean(&node);
}

/// File system data options on a bind mount (the runtime-tools suite puts `mode=755,size=1k` on
/// every mount) are ignored with a warning naming them, as runc and crun ignore them; the bind's
/// own flags still apply.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn bind_mount_data_options_are_ignored_with_a_warning() {
    require_root!();
    let node = Node::new("ocispec-binddata");
    let env = Env::in_node("binddata", &node);
    let src = env.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), "x\n").unwrap();
    let b = env.bundle("b", "cat /mnt/src/f; touch /mnt/src/g 2>/dev/null && echo writable || echo read-only", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/mnt/src", "type": "bind", "source": src, "options": ["bind", "ro", "mode=755", "size=1k"] }));
    });
    let out = node.sh(&env.cmd(&format!("run -b {} b", b.display())));
    assert_eq!((code(&out), text(&out.stdout)), (0, "x\nread-only\n".to_string()), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("mode=755 (/mnt/src)") && err.contains("size=1k (/mnt/src)"), "no warning naming the options: {err}");
    assert!(!src.join("g").exists());
    env.assert_clean(&node);
}
