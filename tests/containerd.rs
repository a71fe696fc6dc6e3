//! The runc command line as containerd reads it: `kill --all` of a stopped container succeeds and
//! a plain `kill` of one says "container not running" (runc's words, which containerd's shim takes
//! for "already gone"); ambient capabilities that cannot be raised are skipped as runc skips them;
//! and containerd 1.6 itself (its runc shim with podbox-runc as the runc binary) drives podbox
//! through run, exec, kill, stop and delete inside a throwaway node, leaving nothing.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Node;
use common::oci::Env;
use serde_json::json;

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn kill_of_a_stopped_container_and_unraisable_ambient_caps_as_runc() {
    require_root!();
    let node = Node::new("ctd-kill");
    let r = Env::new("ctd-kill");
    // `runc spec`'s capabilities: ambient ones without inheritable ones, which the kernel
    // cannot raise. runc warns and goes on; so must podbox (create failed before).
    let b = r.bundle("b", "grep CapAmb /proc/self/status; exit 3", |c| {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        for set in ["bounding", "effective", "permitted", "ambient"] {
            c["process"]["capabilities"][set] = caps.clone();
        }
        c["process"]["capabilities"]["inheritable"] = json!(["CAP_KILL"]);
    });
    let out = node.sh(&format!("{} </dev/null", r.cmd(&format!("run --bundle {} c1", b.display()))));
    assert_eq!(code(&out), 3, "run with runc spec's ambient capabilities: {}", text(&out.stderr));
    // Only CAP_KILL (5) is permitted and inheritable: the ambient set is exactly it.
    assert!(text(&out.stdout).contains("CapAmb:\t0000000000000020"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("CAP_AUDIT_WRITE") && text(&out.stderr).contains("skipped"), "no warning: {}", text(&out.stderr));

    // A container that exited on its own: `kill --all` succeeds, a plain kill says
    // "container not running", and `delete` removes it.
    let b = r.bundle("gone", "exit 0", |_| {});
    node.sh_ok(&format!("{} </dev/null >/dev/null 2>&1", r.cmd(&format!("run --detach --bundle {} c2", b.display()))));
    assert!(common::wait_until(5, || node.sh_ok(&r.cmd("state c2")).contains("\"stopped\"")));
    let out = node.sh(&r.cmd("kill --all c2 KILL"));
    assert_eq!(code(&out), 0, "kill --all of a stopped container: {}", text(&out.stderr));
    let out = node.sh(&r.cmd("kill c2 KILL"));
    assert_ne!(code(&out), 0);
    assert!(text(&out.stderr).contains("container not running"), "{}", text(&out.stderr));
    node.sh_ok(&r.cmd("delete c2"));
    // Gone: a plain delete says so, `delete --force` succeeds as runc's does.
    let out = node.sh(&r.cmd("delete c2"));
    assert!(code(&out) != 0 && text(&out.stderr).contains("does not exist"), "{}", text(&out.stderr));
    node.sh_ok(&r.cmd("delete --force c2"));
    assert!(std::fs::read_dir(&r.root).unwrap().next().is_none(), "state left");
    assert!(common::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
}

/// containerd run in `node` with everything of its own in `dir`; killed (and its child reaped)
/// when dropped.
struct Containerd {
    nsenter: Child,
    dir: PathBuf,
    node_init: i32,
}

impl Containerd {
    fn start(node: &Node, dir: &Path) -> Containerd {
        let d = dir.display();
        // Only what `ctr run --rootfs` needs: no CRI, no snapshotters but the default.
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let nsenter = Command::new("nsenter")
            .arg("-t").arg(node.init_pid.to_string()).args(["--net", "--pid", "--mount", "--uts", "--"])
            .arg("containerd").arg("--config").arg(dir.join("config.toml"))
            .stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log)
            .spawn().expect("spawn containerd");
        let ctd = Containerd { nsenter, dir: dir.to_path_buf(), node_init: node.init_pid };
        assert!(common::wait_until(20, || dir.join("containerd.sock").exists()), "containerd did not start: {}", ctd.log());
        ctd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// containerd's PID (machine numbering): the child of nsenter.
    fn pid(&self) -> Option<i32> {
        let id = self.nsenter.id();
        std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).ok()?.split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(p) = self.pid() {
            // SAFETY: kill(2) of the containerd this test started.
            unsafe { libc::kill(p, libc::SIGTERM) };
        }
        if !common::wait_until(10, || self.nsenter.try_wait().ok().flatten().is_some()) {
            let _ = self.nsenter.kill();
        }
        let _ = self.nsenter.wait();
        let _ = self.node_init;
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn containerd_drives_podbox_through_its_runc_shim() {
    require_root!();
    let installed = |c: &str| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success());
    if !installed("containerd") || !installed("ctr") {
        eprintln!("skipped: containerd is not installed (apt-get install -y containerd)");
        return;
    }
    let cg = common::CgroupParent(format!("podbox-test-ctd-{}", std::process::id()));
    let node = Node::new("ctd");
    let r = Env::new("ctd");
    // The shims' sockets and state go under /run: a tmpfs there, in the node's own mount
    // namespace, keeps them off the machine.
    node.sh_ok("mount -t tmpfs -o mode=755 podbox-test-run /run");
    let ctd = Containerd::start(&node, &r.dir);
    let rootfs = common::rootfs().display().to_string();
    let ctr = format!("timeout -k 5 30 ctr --address {}/containerd.sock", r.dir.display());
    let run_opts = |id: &str| format!("--runc-binary {} --runc-root {} --cgroup /{}/{id} --rootfs {rootfs} {id}", r.runc.display(), r.root.display(), cg.0);
    // Every step must finish promptly: a runtime answer containerd does not understand makes
    // it wait out its deadline instead.
    let timed = |what: &str, cmd: &str| -> Output {
        let t = Instant::now();
        let out = node.sh(cmd);
        assert!(t.elapsed() < Duration::from_secs(10), "{what} took {:?}", t.elapsed());
        out
    };
    let ok = |what: &str, cmd: &str| -> String {
        let out = timed(what, cmd);
        assert!(out.status.success(), "{what}: {}\ncontainerd log:\n{}", text(&out.stderr), ctd.log());
        text(&out.stdout)
    };
    let status = |id: &str| -> String {
        let ls = node.sh_ok(&format!("{ctr} task ls"));
        ls.lines().find(|l| l.split_whitespace().next() == Some(id)).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("").to_string()
    };

    // Foreground, with --rm: the exit code comes back and the container is removed.
    let out = timed("foreground run", &format!("{ctr} run --rm {} /bin/sh -c 'echo hello; exit 3' </dev/null", run_opts("fg")));
    assert_eq!((code(&out), text(&out.stdout).trim().to_string()), (3, "hello".to_string()), "{}", text(&out.stderr));

    // Detached, exec into it (exit code and output), then stop: SIGTERM, wait for the exit,
    // then the kill --all that follows an exit; then delete.
    ok("detached run", &format!("{ctr} run -d {} /bin/sh -c \"trap 'exit 0' TERM; while :; do sleep 0.1; done\" </dev/null >/dev/null", run_opts("bg")));
    assert_eq!(status("bg"), "RUNNING");
    let out = timed("exec", &format!("{ctr} task exec --exec-id e1 bg /bin/sh -c 'echo in-bg; exit 4' </dev/null"));
    assert_eq!((code(&out), text(&out.stdout).trim().to_string()), (4, "in-bg".to_string()), "{}", text(&out.stderr));
    ok("kill TERM", &format!("{ctr} task kill -s TERM bg"));
    assert!(common::wait_until(5, || status("bg") == "STOPPED"), "bg did not stop: {}", status("bg"));
    ok("kill --all of the stopped task", &format!("{ctr} task kill -a -s KILL bg"));
    let out = timed("kill of the stopped task", &format!("{ctr} task kill -s KILL bg"));
    assert!(!out.status.success() && text(&out.stderr).contains("not found"), "containerd did not read the kill error as 'already gone': {}", text(&out.stderr));
    ok("delete bg", &format!("{ctr} task delete bg && {ctr} container rm bg"));

    // A container that exits on its own, sharing the node's PID namespace: the shim then runs
    // `kill --all` on the stopped container itself, and logs it if that fails.
    ok("run shared-pid", &format!("{ctr} run -d --with-ns pid:/proc/1/ns/pid {} /bin/sh -c 'exit 6' </dev/null >/dev/null", run_opts("own")));
    assert!(common::wait_until(5, || status("own") == "STOPPED"), "own did not stop: {}", status("own"));
    ok("kill a stopped task", &format!("{ctr} task kill -a -s KILL own"));
    ok("delete own", &format!("{ctr} task delete own && {ctr} container rm own"));

    // A running container killed and deleted.
    ok("run victim", &format!("{ctr} run -d {} /bin/sleep 1000 </dev/null >/dev/null", run_opts("victim")));
    ok("kill victim", &format!("{ctr} task kill -s KILL victim"));
    assert!(common::wait_until(5, || status("victim") == "STOPPED"));
    ok("delete victim", &format!("{ctr} task delete victim && {ctr} container rm victim"));

    // Nothing left: no container, task or shim; no podbox state; no cgroup; no mount.
    assert!(node.sh_ok(&format!("{ctr} container ls -q")).trim().is_empty());
    let left: Vec<String> = node.processes().into_iter().filter(|p| !p.contains("containerd --config")).collect();
    assert!(left.is_empty(), "processes left: {left:?}");
    // The shim gives the runtime `--root <runc-root>/<namespace>`; that directory stays, as with runc.
    let ns_root = r.root.join("default");
    assert!(std::fs::read_dir(&ns_root).map(|d| d.count()).unwrap_or(0) == 0, "podbox state left in {}", ns_root.display());
    for id in ["fg", "bg", "own", "victim"] {
        assert!(cg.left(id).is_empty(), "cgroups left: {:?}", cg.left(id));
    }
    let mounts = node.sh_ok("cat /proc/self/mountinfo");
    let leftm: Vec<&str> = mounts.lines().filter(|l| l.contains(&*r.dir.to_string_lossy())).collect();
    assert!(leftm.is_empty(), "mounts left: {leftm:?}");
    let log = ctd.log();
    // (Its "failed to remove runc container … exit status 255" after each delete comes with
    // runc too: the dead-shim cleanup runs after the container is gone.)
    for bad in ["killall failed", "failed to kill init's children", "unknown error after kill"] {
        assert!(!log.contains(bad), "containerd logged {bad:?}:\n{log}");
    }
}
