//! Escape classes that runc, crun and youki closed years ago, each tried from inside a container
//! of a throwaway node: the runtime's own binary reached through /proc/PID/exe
//! (CVE-2019-5736), sysctls that are not namespaced, the default umask, masked paths.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Node;
use serde_json::{Value, json};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A runtime for the test: a *copy* of podbox named `podbox-runc` (an escape that works must
/// damage only the copy), a root and bundles in a temp dir.
struct Runc {
    dir: PathBuf,
    runc: PathBuf,
    root: PathBuf,
}

impl Runc {
    fn new(name: &str) -> Runc {
        let dir = common::tempdir(&format!("podbox-esc-{name}"));
        let runc = dir.join("podbox-runc");
        std::fs::copy(common::PODBOX, &runc).unwrap();
        // Until every process forked meanwhile by another test thread has exec'd, one may still
        // hold the copy's write descriptor: running it fails with ETXTBSY for that moment.
        for _ in 0..100 {
            match Command::new(&runc).arg("--version").output() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => std::thread::sleep(std::time::Duration::from_millis(10)),
                _ => break,
            }
        }
        Runc { root: dir.join("state"), runc, dir }
    }

    fn cmd(&self, args: &str) -> String {
        format!("{} --root {} {args}", self.runc.display(), self.root.display())
    }

    /// Detached: the container inherits the runtime's stdio, so it must not be a pipe of ours.
    fn bg(&self, args: &str) -> String {
        format!("{} </dev/null >>{}/container.out 2>&1", self.cmd(args), self.dir.display())
    }

    fn bundle(&self, name: &str, args: Value, tweak: impl FnOnce(&mut Value)) -> PathBuf {
        let b = self.dir.join(name);
        std::fs::create_dir_all(&b).unwrap();
        let out = Command::new(&self.runc).arg("spec").arg("--bundle").arg(&b).output().unwrap();
        assert!(out.status.success(), "spec: {}", text(&out.stderr));
        std::os::unix::fs::symlink(common::rootfs(), b.join("rootfs")).unwrap();
        let mut c: Value = serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = args;
        tweak(&mut c);
        std::fs::write(b.join("config.json"), c.to_string()).unwrap();
        b
    }

    fn delete_all(&self, node: &Node) {
        for id in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            node.sh(&self.cmd(&format!("delete --force {}", id.file_name().to_string_lossy())));
        }
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn add_caps(c: &mut Value, caps: &[&str]) {
    for set in ["bounding", "effective", "permitted"] {
        let list = c["process"]["capabilities"][set].as_array_mut().unwrap();
        for cap in caps {
            list.push(json!(cap));
        }
    }
}

/// CVE-2019-5736: a process exec'd into a *created* container finds podbox's init as its PID 1.
/// Without CAP_SYS_PTRACE it cannot open /proc/1/exe at all (the init is not dumpable); with it
/// (a privileged container) it gets the init's executable, which must be a clone nothing can
/// write: held open across `start` and reopened for writing once the init has exec'd, as the
/// exploit does, it refuses the write, and the runtime's file is unchanged. Both clones: the
/// read-only mount and (`PODBOX_EXE_CLONE=memfd`) the sealed memfd.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn proc_exe_of_a_created_container_is_not_the_runtime_binary() {
    require_root!();
    let node = Node::new("esc-exe");
    for (n, env) in ["", "PODBOX_EXE_CLONE=memfd "].iter().enumerate() {
        let r = Runc::new(&format!("exe{n}"));
        let before = std::fs::read(&r.runc).unwrap();
        let out_dir = r.dir.join("out");
        std::fs::create_dir_all(&out_dir).unwrap();
        let mount = json!({ "destination": "/home", "type": "bind", "source": out_dir, "options": ["rbind", "rw"] });
        let runc = |args: &str| format!("{env}{}", r.cmd(args));
        let bg = |args: &str| format!("{env}{}", r.bg(args));

        // Default capabilities: the init's exe cannot be opened.
        let b = r.bundle("plain", json!(["sleep", "1000"]), |c| c["mounts"].as_array_mut().unwrap().push(mount.clone()));
        node.sh_ok(&bg(&format!("create --bundle {} plain", b.display())));
        let out = node.sh(&runc("exec plain sh -c 'cat /proc/1/exe >/dev/null && echo READ-OK || echo READ-DENIED'"));
        assert_eq!(text(&out.stdout).trim(), "READ-DENIED", "{env}an unprivileged process read the init's executable: {}", text(&out.stderr));

        // CAP_SYS_PTRACE: the exe opens, but it is not the runtime's file.
        let b = r.bundle("ptrace", json!(["sleep", "1000"]), |c| {
            c["mounts"].as_array_mut().unwrap().push(mount.clone());
            add_caps(c, &["CAP_SYS_PTRACE"]);
        });
        node.sh_ok(&bg(&format!("create --bundle {} ptrace", b.display())));
        let link = node.sh_ok(&runc("exec ptrace readlink /proc/1/exe"));
        assert!(!link.contains("podbox-runc"), "{env}/proc/1/exe of the created container is the runtime's file: {link}");
        // The exploit: hold the exe open, wait until the init has exec'd `sleep`, then write.
        let exploit = "exec 3</proc/1/exe || { echo open-failed > /home/result; exit; }; echo > /home/opened; \
            while [ \"$(readlink /proc/1/exe)\" != /bin/sleep ] && [ \"$(readlink /proc/1/exe)\" != /bin/busybox ]; do sleep 0.01; done; \
            i=0; while [ $i -lt 100 ]; do if (echo PWNED >> /proc/self/fd/3) 2>/dev/null; then echo WROTE > /home/result; exit; fi; i=$((i+1)); sleep 0.02; done; \
            echo write-refused > /home/result";
        node.sh_ok(&bg(&format!("exec --detach ptrace sh -c '{exploit}'")));
        assert!(common::wait_until(10, || out_dir.join("opened").exists() || out_dir.join("result").exists()), "the exploit did not start");
        node.sh_ok(&runc("start ptrace"));
        assert!(common::wait_until(15, || out_dir.join("result").exists()), "the exploit did not finish");
        let result = std::fs::read_to_string(out_dir.join("result")).unwrap();
        assert_eq!(result.trim(), "write-refused", "{env}");
        assert!(std::fs::read(&r.runc).unwrap() == before, "{env}the runtime binary was changed from inside the container");
        r.delete_all(&node);
        assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
    }
}

/// The same for pod containers: a privileged container sharing its pod's PID namespace watches
/// every process's exe while other containers start and `exec` runs in the pod; no podbox
/// process it sees runs from the runtime's file.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pod_containers_never_see_the_runtime_binary() {
    require_root!();
    let node = Node::new("esc-pod");
    node.podbox_ok(&["pod", "create", "p", "--share-pid", "--network", "none"]);
    let watch = "while [ ! -e /stop ]; do ls -l /proc/[0-9]*/exe 2>/dev/null; done | grep -v -e busybox -e memfd:pause | sort -u";
    node.podbox_ok(&["run", "--pod", "p", "--name", "w", "--privileged", "-d", "--", "sh", "-c", &format!("{watch}; echo watch-done")]);
    for i in 0..15 {
        node.podbox_ok(&["run", "--pod", "p", "--name", &format!("c{i}"), "--", "true"]);
        node.podbox_ok(&["exec", "p", "w", "--", "true"]);
    }
    node.podbox_ok(&["exec", "p", "w", "--", "touch", "/stop"]);
    assert!(common::wait_until(15, || node.podbox_ok(&["logs", "p", "w"]).contains("watch-done")), "the watcher did not finish");
    let seen = node.podbox_ok(&["logs", "p", "w"]);
    // The runtime's file shows as its path (…/target/debug/podbox); the read-only clone as "/",
    // the root of its detached mount.
    let host: Vec<&str> = seen.lines().filter(|l| l.contains("/podbox")).collect();
    assert!(host.is_empty(), "a container saw podbox running from the runtime's file: {host:?}");
    assert!(seen.lines().any(|l| l.ends_with("-> /")), "the watcher saw no podbox process at all (test too slow?): {seen}");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
}

/// The re-execution from the read-only clone happens at the entry point, before libc starts
/// (`container::early_seal`): the clone's `execveat` comes before libc's first system calls
/// (`brk`, `arch_prctl`), for podbox's own command line and for runc's. Should the early path
/// fail, the late one still seals every container (the tests above), only slower: this is
/// what notices.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn the_sealed_reexecution_comes_before_libc_starts() {
    require_root!();
    let node = Node::new("esc-early");
    let r = Runc::new("early");
    // The names of the system calls `cmd` makes (the first process only), in order.
    let calls_of = |cmd: &str| -> Vec<String> {
        let trace = node.dir.join("early.trace");
        node.sh(&format!("strace -o {} {cmd}", trace.display()));
        std::fs::read_to_string(&trace).unwrap().lines().filter_map(|l| l.split_once('(').map(|(name, _)| name.to_string())).collect()
    };
    for (what, cmd) in [
        ("podbox run", format!("{} --root {} run --pod nope -- true", common::PODBOX, node.root.display())),
        ("runc create", r.cmd("create --bundle /nonexistent c")),
    ] {
        let calls = calls_of(&cmd);
        let reexec = calls.iter().position(|c| c == "execveat").unwrap_or_else(|| panic!("{what}: no re-execution at all: {calls:?}"));
        let libc = calls.iter().position(|c| c == "brk" || c == "arch_prctl").unwrap();
        assert!(reexec < libc, "{what}: libc started before the re-execution (the early path fell back): {:?}", &calls[..=reexec]);
    }
    // Other commands start no container and are not re-executed.
    let ps = calls_of(&format!("{} --root {} ps", common::PODBOX, node.root.display()));
    assert!(!ps.iter().any(|c| c == "execveat"), "`ps` was re-executed");
}

/// Sysctls no namespace of the container isolates would be written to the host kernel: they are
/// refused before anything exists, and nothing is written. Namespaced ones still work.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn non_namespaced_sysctls_are_refused_and_nothing_is_written() {
    require_root!();
    let node = Node::new("esc-sysctl");
    let r = Runc::new("sysctl");
    let host_ratio = std::fs::read_to_string("/proc/sys/vm/overcommit_ratio").unwrap();
    let other = if host_ratio.trim() == "51" { "52" } else { "51" };
    let without_ns = |c: &mut Value, t: &str| c["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != t);
    for (name, key, value, drop_ns, expect) in [
        ("vm", "vm.overcommit_ratio", other, None, "host's kernel"),
        ("hostnet", "net.ipv4.ip_unprivileged_port_start", "0", Some("network"), "network namespace"),
        ("hostipc", "kernel.shmmni", "100", Some("ipc"), "IPC namespace"),
        ("hostname", "kernel.hostname", "x", None, "hostname"),
    ] {
        let b = r.bundle(name, json!(["true"]), |c| {
            c["linux"]["sysctl"] = json!({ key: value });
            if let Some(t) = drop_ns {
                without_ns(c, t);
            }
        });
        let out = node.sh(&r.cmd(&format!("run --bundle {} {name}", b.display())));
        assert_ne!(out.status.code(), Some(0), "{key} was accepted");
        let err = text(&out.stderr);
        assert!(err.contains("linux.sysctl") && err.contains(key) && err.contains(expect), "{key}: {err}");
        assert!(std::fs::read_dir(&r.root).map(|d| d.count()).unwrap_or(0) == 0, "{key}: state left");
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/vm/overcommit_ratio").unwrap(), host_ratio, "the host's sysctl changed");
    // In the container's own namespaces they are set, there only.
    let b = r.bundle("ok", json!(["sh", "-c", "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_unprivileged_port_start"]), |c| {
        c["linux"]["sysctl"] = json!({ "kernel.shmmni": "100", "net.ipv4.ip_unprivileged_port_start": "0" });
    });
    let out = node.sh(&r.cmd(&format!("run --bundle {} ok", b.display())));
    assert_eq!(text(&out.stdout).split_whitespace().collect::<Vec<_>>(), ["100", "0"], "{}", text(&out.stderr));
    assert_ne!(std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap().trim(), "100");
    assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
}

/// Without `process.user.umask` the container's processes get 0022, as with runc and crun, not
/// whatever umask the runtime was started with — in the init, in `exec`, and in pods.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn umask_defaults_to_0022() {
    require_root!();
    let node = Node::new("esc-umask");
    let r = Runc::new("umask");
    let b = r.bundle("u", json!(["sh", "-c", "umask; sleep 1000"]), |_| {});
    node.sh_ok(&format!("umask 077; {}", r.bg(&format!("run --detach --bundle {} u", b.display()))));
    let log = r.dir.join("container.out");
    assert!(common::wait_until(5, || std::fs::read_to_string(&log).is_ok_and(|t| !t.is_empty())));
    assert_eq!(std::fs::read_to_string(&log).unwrap().trim(), "0022", "init");
    let out = node.sh(&format!("umask 077; {}", r.cmd("exec u sh -c umask")));
    assert_eq!(text(&out.stdout).trim(), "0022", "exec: {}", text(&out.stderr));
    // The spec's own umask is kept.
    let b = r.bundle("u2", json!(["sh", "-c", "umask"]), |c| c["process"]["user"]["umask"] = json!(0o027));
    let out = node.sh(&format!("umask 077; {}", r.cmd(&format!("run --bundle {} u2", b.display()))));
    assert_eq!(text(&out.stdout).trim(), "0027");
    r.delete_all(&node);
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    let out = node.sh(&format!("umask 077; {} --root {} run --pod p --name c -- sh -c umask", common::PODBOX, node.root.display()));
    assert_eq!(text(&out.stdout).trim(), "0022", "pod: {}", text(&out.stderr));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
}

/// Masking binds /dev/null over files; a /dev/null that is not the null device (here a
/// createContainer hook, running in the container's mount namespace before pivot_root, swaps it
/// for a regular file, as a hostile image or a shared mount could) must not be what /proc/timer_list
/// shows: the create fails with a clear error instead, leaving nothing (CVE-2025-31133).
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn masked_paths_use_only_the_real_null_device() {
    require_root!();
    let node = Node::new("esc-mask");
    let r = Runc::new("mask");
    let rootfs = std::fs::canonicalize(common::rootfs()).unwrap();
    // Only ever on the container's own /dev tmpfs: the hook checks that it is a mount point.
    let swap = format!("r={}; grep -q \" $r/dev \" /proc/self/mountinfo || exit 1; rm -f $r/dev/null; echo NOT-NULL > $r/dev/null", rootfs.display());
    let b = r.bundle("m", json!(["sh", "-c", "cat /proc/timer_list; echo done"]), |c| {
        c["hooks"] = json!({ "createContainer": [{ "path": "/bin/sh", "args": ["sh", "-c", swap] }] });
        c["linux"]["maskedPaths"] = json!(["/proc/timer_list"]);
    });
    let out = node.sh(&r.cmd(&format!("run --bundle {} m", b.display())));
    assert!(!text(&out.stdout).contains("NOT-NULL"), "the mask showed the fake /dev/null");
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("not the null device"), "{}", text(&out.stderr));
    assert!(std::fs::read_dir(&r.root).map(|d| d.count()).unwrap_or(0) == 0, "state left");
    assert!(std::fs::metadata(rootfs.join("dev/null")).is_err() || std::fs::read_to_string(rootfs.join("dev/null")).unwrap_or_default().is_empty(), "the hook touched the shared rootfs");
    // The real one masks as before.
    let b = r.bundle("ok", json!(["sh", "-c", "wc -c < /proc/timer_list"]), |c| c["linux"]["maskedPaths"] = json!(["/proc/timer_list"]));
    let out = node.sh(&r.cmd(&format!("run --bundle {} ok", b.display())));
    assert_eq!(text(&out.stdout).trim(), "0", "{}", text(&out.stderr));
    assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
}

/// Each `linux.rootfsPropagation` mode reaches the container's `/` (pivot_root refused a shared
/// root with EINVAL, and an unbindable tree could not be bound from), and a shared root still
/// propagates nothing back to the node.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn each_rootfs_propagation_mode() {
    require_root!();
    let node = Node::new("esc-prop");
    let r = Runc::new("prop");
    // The optional fields of the mount at "/" in the container's mountinfo.
    let script = "awk '$5 == \"/\" { f = \"\"; for (i = 7; $i != \"-\"; i++) f = f \" \" $i; print \"fields:\" f }' /proc/self/mountinfo";
    for (mode, want, not) in [
        ("rshared", "shared:", "unbindable"),
        ("shared", "shared:", "unbindable"),
        ("runbindable", "unbindable", "shared:"),
        ("rprivate", "fields:", "shared:"),
        ("rslave", "fields:", "shared:"),
    ] {
        let b = r.bundle(mode, json!(["sh", "-c", script]), |c| c["linux"]["rootfsPropagation"] = json!(mode));
        let out = node.sh(&r.cmd(&format!("run --bundle {} {mode}", b.display())));
        let got = text(&out.stdout);
        assert!(out.status.success() && got.contains(want) && !got.contains(not), "{mode}: {got} {}", text(&out.stderr));
    }
    // A mount made inside a shared-root container does not show up in the node.
    let b = r.bundle("leak", json!(["sh", "-c", "mount -t tmpfs podbox-prop-leak /tmp && echo mounted"]), |c| {
        c["linux"]["rootfsPropagation"] = json!("rshared");
        add_caps(c, &["CAP_SYS_ADMIN"]);
        c["linux"]["seccomp"] = Value::Null;
        c["linux"]["maskedPaths"] = json!([]);
    });
    let out = node.sh(&r.cmd(&format!("run --bundle {} leak", b.display())));
    assert!(text(&out.stdout).contains("mounted"), "{}", text(&out.stderr));
    assert!(!node.sh_ok("cat /proc/self/mountinfo").contains("podbox-prop-leak"), "a container mount propagated to the node");
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains("podbox-prop-leak"), "a container mount propagated to the machine");
    assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
}

/// Compile a small static C program for the test (gcc is part of the test machine's setup).
fn compile_static(src: &str, out: &std::path::Path, extra: &[&str]) {
    let c = out.with_extension("c");
    std::fs::write(&c, src).unwrap();
    let res = Command::new("gcc").args(["-static", "-O1", "-o"]).arg(out).arg(&c).args(extra).output().expect("run gcc");
    assert!(res.status.success(), "gcc: {}", text(&res.stderr));
}

/// A private copy of the test rootfs, which the test may plant symlinks in.
fn rootfs_copy(r: &Runc) -> PathBuf {
    let copy = r.dir.join("rootfs-copy");
    let out = Command::new("cp").arg("-a").arg(common::rootfs()).arg(&copy).output().unwrap();
    assert!(out.status.success(), "cp: {}", text(&out.stderr));
    copy
}

fn use_rootfs(bundle: &std::path::Path, rootfs: &std::path::Path) {
    std::fs::remove_file(bundle.join("rootfs")).unwrap();
    std::os::unix::fs::symlink(rootfs, bundle.join("rootfs")).unwrap();
}

/// A createContainer hook (in the container's mount namespace, before pivot_root, where the
/// node's paths are still visible) appending every mount point at or under `host` to `out`.
fn hook_listing_mounts_under(host: &std::path::Path, out: &std::path::Path) -> Value {
    let script = format!("awk -v h='{}' 'index($5, h) == 1 {{ print $5 }}' /proc/self/mountinfo >> '{}'", host.display(), out.display());
    json!({ "createContainer": [{ "path": "/bin/sh", "args": ["sh", "-c", script] }] })
}

/// Entries of a directory, sorted.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// CVE-2021-30465 class, the static half: the image plants symlinks where the spec's bind mounts
/// go — one to an absolute path of the node (the test's own directory), one climbing out with
/// `..`, one dangling to a file. Each mount must land inside the rootfs, at the link's target as
/// the container sees it; the node's directory gets no file and no mount.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn bind_destinations_through_symlinks_stay_in_the_rootfs() {
    require_root!();
    let node = Node::new("esc-link");
    let r = Runc::new("link");
    let rootfs = rootfs_copy(&r);
    let host = r.dir.join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("marker"), "host").unwrap();
    let src = r.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("from-src"), "src").unwrap();
    let climb = format!("../../../../../../../../..{}", host.display());
    std::os::unix::fs::symlink(&host, rootfs.join("abs")).unwrap();
    std::os::unix::fs::symlink(&climb, rootfs.join("up")).unwrap();
    std::os::unix::fs::symlink(host.join("file-target"), rootfs.join("absfile")).unwrap();
    let hook_out = r.dir.join("hook-mounts");
    let h = host.display();
    let check = format!("cat {h}/m/from-src {h}/n/from-src {h}/file-target; echo; ls {h}");
    let b = r.bundle("l", json!(["sh", "-c", check]), |c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({ "destination": "/abs/m", "type": "bind", "source": src, "options": ["rbind", "ro"] }));
        m.push(json!({ "destination": "/up/n", "type": "bind", "source": src, "options": ["bind"] }));
        m.push(json!({ "destination": "/absfile", "type": "bind", "source": src.join("from-src"), "options": ["bind"] }));
        c["hooks"] = hook_listing_mounts_under(&host, &hook_out);
    });
    use_rootfs(&b, &rootfs);
    let out = node.sh(&r.cmd(&format!("run --bundle {} l", b.display())));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Inside the container the mounts are where the links point as it sees them.
    assert_eq!(text(&out.stdout).split_whitespace().collect::<Vec<_>>(), ["srcsrcsrc", "file-target", "m", "n"], "{}", text(&out.stderr));
    assert_eq!(entries(&host), ["marker"], "a file was created in the node's directory");
    assert_eq!(std::fs::read_to_string(&hook_out).unwrap_or_default(), "", "a mount landed on the node's directory");
    assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
}

/// Swaps a directory and a symlink to the node's directory (renameat2 RENAME_EXCHANGE, as fast
/// as it can) in the directory given, until killed.
const FLIPPER: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv) {
    if (chdir(argv[1]) != 0) { perror("chdir"); return 1; }
    for (unsigned long i = 0;; i++) {
        syscall(SYS_renameat2, AT_FDCWD, "d", AT_FDCWD, "l", 2 /* RENAME_EXCHANGE */);
        if ((i & 63) == 0) sched_yield();
    }
}
"#;

/// CVE-2021-30465 class, the race: a container on a shared volume keeps swapping `d` (a
/// directory) with a symlink to the node's directory, while containers on the same volume are
/// created with bind mounts under `/vol/d`. Whatever `d` is at each moment, no file may appear
/// in the node's directory and no mount land on it (creates may fail, that is all).
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_racing_symlink_swap_never_mounts_on_the_node() {
    require_root!();
    let node = Node::new("esc-race");
    let r = Runc::new("race");
    let rootfs = rootfs_copy(&r);
    let (host, vol, src) = (r.dir.join("host"), r.dir.join("vol"), r.dir.join("src"));
    for d in [&host, &vol.join("d"), &src] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(host.join("marker"), "host").unwrap();
    std::os::unix::fs::symlink(&host, vol.join("l")).unwrap();
    compile_static(FLIPPER, &vol.join("flip"), &[]);
    let vol_mount = json!({ "destination": "/vol", "type": "bind", "source": vol, "options": ["rbind", "rw"] });
    let b = r.bundle("flipper", json!(["/vol/flip", "/vol"]), |c| c["mounts"].as_array_mut().unwrap().push(vol_mount.clone()));
    node.sh_ok(&r.bg(&format!("run --detach --bundle {} flipper", b.display())));
    let hook_out = r.dir.join("hook-mounts");
    let (mut created, mut failed) = (0, 0);
    let mut escape = None;
    for i in 0..20 {
        let name = format!("v{i}");
        let b = r.bundle(&name, json!(["true"]), |c| {
            let m = c["mounts"].as_array_mut().unwrap();
            m.push(vol_mount.clone());
            for j in 0..10 {
                m.push(json!({ "destination": format!("/vol/d/m{j}"), "type": "bind", "source": src, "options": ["bind"] }));
            }
            c["hooks"] = hook_listing_mounts_under(&host, &hook_out);
        });
        use_rootfs(&b, &rootfs);
        if node.sh(&r.cmd(&format!("run --bundle {} {name}", b.display()))).status.success() { created += 1 } else { failed += 1 }
        let mounted = std::fs::read_to_string(&hook_out).unwrap_or_default();
        if entries(&host) != ["marker"] || !mounted.is_empty() {
            escape = Some(format!("attempt {i}: the node's directory holds {:?}, mounts on it: {mounted:?}", entries(&host)));
            break;
        }
    }
    // Stop the swapper (and remove its cgroup) before judging, so that a failure leaves nothing.
    r.delete_all(&node);
    assert_eq!(escape, None, "a racing create escaped the rootfs");
    eprintln!("racing creates: {created} succeeded, {failed} failed");
    assert!(created > 0, "no container could be created at all while the swapper ran");
    assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
}

/// mkdir through the x32 ABI (the x86_64 number with bit 30 set), then through the native one;
/// prints each call's errno (0: it succeeded).
const X32_MKDIR: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    errno = 0;
    long rc = syscall(SYS_mkdir | 0x40000000, "/tmp/x32-made", 0755);
    printf("x32:%d\n", rc == 0 ? 0 : errno);
    errno = 0;
    rc = syscall(SYS_mkdir, "/tmp/native-made", 0755);
    printf("native:%d\n", rc == 0 ? 0 : errno);
    return 0;
}
"#;

/// A deny-list profile (default allow, `mkdir` → EPERM) must also deny mkdir made through the
/// x32 ABI: with EPERM, not ENOSYS (which a kernel without x32 gives, one with x32 would
/// run it) and never success.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
#[cfg(target_arch = "x86_64")]
fn x32_syscalls_do_not_bypass_a_deny_list() {
    require_root!();
    let node = Node::new("esc-x32");
    let r = Runc::new("x32");
    let bin = r.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    compile_static(X32_MKDIR, &bin.join("x32-mkdir"), &[]);
    let b = r.bundle("x", json!(["sh", "-c", "/x32/x32-mkdir; ls /tmp"]), |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/x32", "type": "bind", "source": bin, "options": ["rbind", "ro"] }));
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"] }));
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }]
        });
    });
    let out = node.sh(&r.cmd(&format!("run --bundle {} x", b.display())));
    let got = text(&out.stdout);
    assert!(out.status.success(), "{got} {}", text(&out.stderr));
    assert_eq!(got.split_whitespace().collect::<Vec<_>>(), ["x32:1", "native:1"], "mkdir through x32 was not denied with EPERM (38 is ENOSYS)");
    assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
}
