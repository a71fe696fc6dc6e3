//! OCI runtime mode end to end: the binary is driven through a `podbox-runc` symlink, as podman
//! or containerd would call it, with bundles whose config.json comes from `spec`. Every
//! container runs inside a throwaway `Node`, whose init reaps the containers' inits (the role
//! conmon plays for podman).
mod common;

use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Node;
use common::oci::Env;
use serde_json::{Value, json};

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn lifecycle_states_pid_file_signals_and_hook_order() {
    require_root!();
    let node = Node::new("oci-life");
    let env = Env::in_node("life", &node);
    let log = env.dir.join("hooks");
    std::fs::create_dir_all(&log).unwrap();
    let hook = |name: &str, file: &str| json!({ "path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {file}")] });
    let host_log = log.join("order").display().to_string();
    let b = env.bundle("b", "trap 'echo got-term > /hooks/term; exit 7' TERM; echo started > /hooks/started; i=0; while true; do i=$((i+1)); echo $i > /hooks/tick; sleep 0.05; done", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/hooks", "type": "bind", "source": log, "options": ["rbind", "rw"] }));
        c["hooks"] = json!({
            "prestart": [hook("prestart", &host_log)],
            "createRuntime": [hook("createRuntime", &host_log),
                              { "path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/state.json", log.display())] }],
            "createContainer": [hook("createContainer", &host_log)],
            // Runs in the container after pivot_root: the log is at /hooks there.
            "startContainer": [hook("startContainer", "/hooks/order")],
            "poststart": [hook("poststart", &host_log)],
            "poststop": [hook("poststop", &host_log)],
        });
    });
    let pid_file = env.dir.join("pid");
    node.sh_ok(&env.bg(&format!("create --bundle {} --pid-file {} c1", b.display(), pid_file.display())));
    let st = env.state(&node, "c1");
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], "c1");
    assert_eq!(st["bundle"], b.display().to_string());
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(st["pid"], pid);
    // The createRuntime hook got the state, with the init's PID, on stdin.
    let hook_state: Value = serde_json::from_str(&std::fs::read_to_string(log.join("state.json")).unwrap()).unwrap();
    assert_eq!((hook_state["id"].as_str(), hook_state["pid"].as_i64(), hook_state["status"].as_str()), (Some("c1"), Some(pid), Some("created")));
    // Created means set up but not exec'd: the command has not run.
    assert!(!log.join("started").exists());
    node.sh_ok(&env.bg("start c1"));
    assert!(common::wait_until(5, || log.join("started").exists()), "container did not run after start");
    assert_eq!(env.status(&node, "c1"), "running");
    let listed = node.sh_ok(&env.cmd("list --format json"));
    assert!(listed.contains("\"c1\"") && listed.contains("running"), "{listed}");
    // A second start is refused.
    let out = node.sh(&env.cmd("start c1"));
    assert_ne!(code(&out), 0);
    // pause freezes every process (the counter stops, exec is refused), resume thaws them.
    let tick = || std::fs::read_to_string(log.join("tick")).unwrap_or_default();
    node.sh_ok(&env.cmd("pause c1"));
    assert_eq!(env.status(&node, "c1"), "paused");
    let frozen_at = tick();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tick(), frozen_at, "a paused container went on running");
    assert_ne!(code(&node.sh(&env.cmd("exec c1 true"))), 0, "exec into a paused container");
    assert_ne!(code(&node.sh(&env.cmd("pause c1"))), 0, "paused twice");
    node.sh_ok(&env.cmd("resume c1"));
    assert_eq!(env.status(&node, "c1"), "running");
    assert!(common::wait_until(5, || tick() != frozen_at), "resume did not thaw the container");
    assert_ne!(code(&node.sh(&env.cmd("resume c1"))), 0, "resumed a running container");
    // delete of a running container needs --force.
    let out = node.sh(&env.cmd("delete c1"));
    assert_ne!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{}", String::from_utf8_lossy(&out.stderr));
    node.sh_ok(&env.cmd("kill c1 TERM"));
    assert!(common::wait_until(5, || env.status(&node, "c1") == "stopped"), "TERM did not stop the container");
    assert_eq!(std::fs::read_to_string(log.join("term")).unwrap().trim(), "got-term");
    assert_eq!(env.state(&node, "c1")["pid"], 0);
    node.sh_ok(&env.cmd("delete c1"));
    let order: Vec<String> = std::fs::read_to_string(log.join("order")).unwrap().lines().map(String::from).collect();
    assert_eq!(order, ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]);
    env.assert_clean(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn run_exit_codes_exec_and_kill_all() {
    require_root!();
    let node = Node::new("oci-run");
    let env = Env::in_node("run", &node);
    let b = env.bundle("b", "echo out-$(hostname); exit 3", |_| {});
    let out = node.sh(&env.cmd(&format!("run --bundle {} r1", b.display())));
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "out-podbox");
    let b = env.bundle("nf", "x", |c| c["process"]["args"] = json!(["no-such-command"]));
    let out = node.sh(&env.cmd(&format!("run -b {} r2", b.display())));
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));
    env.assert_clean(&node);

    // `spec`'s "deny all" device rule plus the standard set (v1 device cgroup here): the
    // machine's /dev/net/tun bound in cannot be opened, /dev/null and /dev/zero can.
    let b = env.bundle("dev", "(exec 3</dev/net/tun) 2>&1; head -c 3 /dev/zero | wc -c; echo x > /dev/null && echo null-ok", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/dev/net/tun", "type": "bind", "source": "/dev/net/tun", "options": ["bind"] }));
    });
    let out = node.sh(&env.cmd(&format!("run -b {} r5", b.display())));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("Operation not permitted") && text.contains("3\nnull-ok"), "{text}");
    env.assert_clean(&node);

    // --preserve-fds N hands descriptors 3 .. 3+N-1 to the process, and nothing above them;
    // --no-pivot enters the root with MS_MOVE + chroot: the same root, no old root left in it.
    let b = env.bundle("fds", "read line <&3; echo got=$line; echo to-4 >&4; [ -e /proc/self/fd/5 ] && echo LEAKED-5; cat /proc/self/mountinfo | wc -l | sed 's/^/mounts=/'", |_| {});
    let (fd3, fds) = (env.dir.join("fd3.txt"), env.dir.join("fd4.txt"));
    std::fs::write(&fd3, "from-3\n").unwrap();
    let run = |flags: &str| node.sh(&format!("{} 3<{} 4>{} 5</dev/null", env.cmd(&format!("run {flags} -b {} r4", b.display())), fd3.display(), fds.display()));
    let out = run("--preserve-fds 2");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("got=from-3") && !text.contains("LEAKED"), "{text}");
    assert_eq!(std::fs::read_to_string(&fds).unwrap(), "to-4\n");
    let pivoted = text.lines().find(|l| l.starts_with("mounts=")).unwrap().to_string();
    let out = run("--preserve-fds 2 --no-pivot");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(code(&out) == 0 && text.contains("got=from-3"), "{text}");
    assert_eq!(text.lines().find(|l| l.starts_with("mounts=")).unwrap(), pivoted, "--no-pivot shows other mounts than pivot_root");
    let out = run("");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("got=from-3"), "fd 3 reached the process without --preserve-fds");
    env.assert_clean(&node);

    // Detached run, exec (foreground with exit code, detached with a pid file), kill --all.
    let b = env.bundle("bg", "sleep 1000 & sleep 1000 & while true; do sleep 1; done", |_| {});
    node.sh_ok(&env.bg(&format!("run --detach --bundle {} r3", b.display())));
    assert_eq!(env.status(&node, "r3"), "running");
    let out = node.sh(&env.cmd("exec --env X=42 r3 sh -c 'echo x=$X; exit 5'"));
    assert_eq!((code(&out), String::from_utf8_lossy(&out.stdout).trim()), (5, "x=42"));
    let proc_file = env.dir.join("process.json");
    std::fs::write(&proc_file, json!({ "args": ["sleep", "1000"], "cwd": "/", "user": { "uid": 0, "gid": 0 }, "env": ["PATH=/bin"] }).to_string()).unwrap();
    let pf = env.dir.join("exec.pid");
    node.sh_ok(&env.bg(&format!("exec --detach --pid-file {} --process {} r3", pf.display(), proc_file.display())));
    let exec_pid: i32 = std::fs::read_to_string(&pf).unwrap().trim().parse().unwrap();
    let ps: Vec<i32> = serde_json::from_str(&node.sh_ok(&env.cmd("ps --format json r3"))).unwrap();
    assert!(ps.len() >= 4 && ps.contains(&exec_pid), "ps: {ps:?}, exec pid {exec_pid}");
    node.sh_ok(&env.cmd("kill --all r3 KILL"));
    assert!(common::wait_until(5, || env.status(&node, "r3") == "stopped"));
    // PIDs are the node's numbering: look in its /proc (a zombie awaits the node's init).
    let gone = |p: &i32| node.sh(&format!("! [ -e /proc/{p} ] || grep -q ') Z' /proc/{p}/stat")).status.success();
    assert!(common::wait_until(5, || ps.iter().all(gone)), "kill --all left processes");
    node.sh_ok(&env.cmd("delete r3"));
    env.assert_clean(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn errors_are_clear_and_leave_nothing_behind() {
    require_root!();
    let node = Node::new("oci-err");
    let env = Env::in_node("err", &node);
    for cmd in ["state nope", "start nope", "kill nope", "delete nope", "exec nope true"] {
        let out = node.sh(&env.cmd(cmd));
        assert_ne!(code(&out), 0, "{cmd}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let empty = env.dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let bad_json = env.dir.join("badjson");
    std::fs::create_dir_all(&bad_json).unwrap();
    std::fs::write(bad_json.join("config.json"), "{ \"ociVersion\": \"1.0.2\", \"process\": { \"args\": 7 } }").unwrap();
    let rdt = env.bundle("rdt", "true", |c| c["linux"]["intelRdt"] = json!({ "closID": "x" }));
    let userns = env.bundle("userns", "true", |c| c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({ "type": "user" })));
    let badcg = env.bundle("badcg", "true", |c| c["linux"]["cgroupsPath"] = json!("../escape"));
    let log = env.dir.join("runtime.log");
    for (bundle, expect) in [
        (&empty, "config.json"),
        (&bad_json, "process.args"),
        (&rdt, "linux.intelRdt"),
        (&userns, "linux.uidMappings"),
        (&badcg, "linux.cgroupsPath"),
    ] {
        let out = node.sh(&env.cmd(&format!("--log {} --log-format json create --bundle {} x", log.display(), bundle.display())));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(code(&out), 0, "{bundle:?}");
        assert!(err.contains(expect), "{bundle:?}: expected {expect} in {err}");
        env.assert_clean(&node);
    }
    // --log got one JSON line per error.
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 5);
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["level"], "error");
    // An existing id is refused, and the first container is untouched.
    let b = env.bundle("ok", "sleep 1000", |_| {});
    node.sh_ok(&env.bg(&format!("create --bundle {} dup", b.display())));
    let out = node.sh(&env.cmd(&format!("create --bundle {} dup", b.display())));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(env.status(&node, "dup"), "created");
    // A created container can be deleted without --force (its init never ran the command).
    node.sh_ok(&env.cmd("delete dup"));
    // A spec rlimit above the hard limit fails clearly at create.
    let b = env.bundle("rl", "true", |c| c["process"]["rlimits"] = json!([{ "type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576 }]));
    let out = node.sh(&env.cmd(&format!("create --bundle {} rl", b.display())));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RLIMIT_NOFILE"), "{}", String::from_utf8_lossy(&out.stderr));
    env.assert_clean(&node);
}

/// Receive one descriptor sent with SCM_RIGHTS on `stream`.
fn recv_fd(stream: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor received");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn console_socket_hands_over_the_pty() {
    require_root!();
    let node = Node::new("oci-tty");
    let env = Env::in_node("tty", &node);
    let b = env.bundle("b", "[ -t 0 ] && [ -t 1 ] && echo on-a-tty; stty size; read line; echo got-$line", |c| {
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({ "height": 33, "width": 101 });
    });
    let sock = env.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut create = std::process::Command::new("nsenter")
        .args(["-t", &node.init_pid.to_string(), "--net", "--pid", "--mount", "--uts", "--"])
        .args(env.cmd(&format!("create --bundle {} --console-socket {} t1", b.display(), sock.display())).split(' '))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let master = recv_fd(&stream);
    assert!(create.wait().unwrap().success(), "create failed");
    node.sh_ok(&env.bg("start t1"));
    let mut pty = std::fs::File::from(master);
    std::io::Write::write_all(&mut pty, b"hello\n").unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("got-hello") && std::time::Instant::now() < deadline {
        match pty.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(seen.contains("on-a-tty"), "{seen:?}");
    assert!(seen.contains("33 101"), "console size: {seen:?}");
    assert!(seen.contains("got-hello"), "{seen:?}");
    assert!(common::wait_until(5, || env.status(&node, "t1") == "stopped"));
    node.sh_ok(&env.cmd("delete t1"));
    env.assert_clean(&node);
}

#[test]
fn pod_command_and_oci_subcommand_coexist() {
    // `podbox oci …` is the same CLI as the symlink; `podbox run` keeps its pod meaning.
    let out = std::process::Command::new(common::PODBOX).args(["oci", "features"]).output().unwrap();
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(f["hooks"].as_array().unwrap().iter().any(|h| h == "createRuntime"));
    let out = std::process::Command::new(Path::new(&Env::new("v").runc)).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("spec: 1.2.0"));
    let out = std::process::Command::new(common::PODBOX).args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--pod"));
}

/// podman with `--runtime` = the podbox-runc symlink, offline: an image imported from podbox's
/// rootfs, storage and configuration in a temp dir, everything run inside a Node (podman and
/// conmon change the namespaces they run in). Skips where podman is not installed.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn podman_runs_containers_on_podbox() {
    require_root!();
    if std::process::Command::new("podman").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("skipped: podman is not installed (apt-get install -y podman)");
        return;
    }
    let cgroup_parent = common::CgroupParent(format!("podbox-test-podman-{}", std::process::id()));
    let node = Node::new("oci-podman");
    let env = Env::in_node("podman", &node);
    let cg = format!("--cgroup-parent /{}", cgroup_parent.0);
    // podman passes no --root to a custom runtime, and keeps locks and network state under
    // /run too: a tmpfs there, in the node's own mount namespace, keeps all of it off the machine.
    node.sh_ok("mount -t tmpfs -o mode=755 podbox-test-run /run");
    let d = env.dir.display().to_string();
    // No CAP_SYS_RESOURCE here: podman's default rlimits must stay within the hard limits.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard = |name: &str| limits.lines().find(|l| l.starts_with(name)).and_then(|l| l[name.len()..].split_whitespace().nth(1)).unwrap().to_string();
    let (nofile, nproc) = (hard("Max open files"), hard("Max processes"));
    std::fs::write(
        env.dir.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{d}/events.log\"\n\
             runtime = \"podbox\"\ntmp_dir = \"{d}/tmp\"\n[engine.runtimes]\npodbox = [\"{}\"]\n",
            env.runc.display()
        ),
    )
    .unwrap();
    std::fs::write(env.dir.join("storage.conf"), format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/run\"\n")).unwrap();
    // The pod's infra container needs a process that waits forever: a script added to the image.
    std::fs::create_dir_all(env.dir.join("extra")).unwrap();
    std::fs::write(env.dir.join("extra/pause"), "#!/bin/sh\nexec sleep 2147483647\n").unwrap();
    let podman_env = format!("CONTAINERS_CONF={d}/containers.conf CONTAINERS_STORAGE_CONF={d}/storage.conf");
    let podman = format!("{podman_env} timeout 120 podman");
    node.sh_ok(&format!(
        "tar -C {} -cf {d}/rootfs.tar . && chmod 755 {d}/extra/pause && tar -C {d}/extra -rf {d}/rootfs.tar ./pause && {podman} import {d}/rootfs.tar podbox-rootfs",
        common::rootfs().display()
    ));
    let p = |args: &str| node.sh(&format!("{podman} {args}"));
    let ok = |args: &str| {
        let out = p(args);
        assert!(out.status.success(), "podman {args}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(ok(&format!("run --rm {cg} --network none podbox-rootfs echo hi")), "hi");
    let out = p(&format!("run --rm {cg} --network none podbox-rootfs sh -c 'exit 3'"));
    assert_eq!(code(&out), 3);

    ok(&format!("run -d {cg} --name bg --network none podbox-rootfs sh -c 'echo started; sleep 1000'"));
    let out = p("exec bg sh -c 'echo in-exec; exit 4'");
    assert_eq!((code(&out), String::from_utf8_lossy(&out.stdout).trim()), (4, "in-exec"));
    assert!(ok("ps --format '{{.Names}} {{.Status}}'").contains("bg Up"));
    ok("pause bg");
    let listed = ok("ps -a --format '{{.Names}} {{.Status}}'");
    assert!(listed.contains("bg Paused"), "podman does not see bg paused: {listed}");
    ok("unpause bg");
    assert_eq!(ok("exec bg echo thawed"), "thawed");
    ok("stop -t 1 bg");
    assert_eq!(ok("logs bg"), "started");
    ok("rm bg");

    // A terminal: `script` gives podman one, podman gives the container a pty through conmon.
    // `script` reads EOF from its /dev/null stdin at once and may end before all output is
    // copied, so a miss is retried. The time limit goes around `script`: inside, `timeout` would
    // put podman in a background process group of the pty, where the kernel stops it (SIGTTOU)
    // as soon as it sets the terminal's mode.
    let tty_run = format!("timeout -k 5 60 script -qc \"{podman_env} podman run -it --rm {cg} --network none podbox-rootfs sh -c '[ -t 0 ] && [ -t 1 ] && echo is-a-tty; sleep 0.3'\" /dev/null </dev/null");
    let mut tries = 0;
    assert!(common::wait_until(60, || { tries += 1; tries > 3 || node.sh(&tty_run).stdout.windows(8).any(|w| w == b"is-a-tty") }) && tries <= 3, "no terminal in podman run -it");

    // A pod: two containers share the infra container's network namespace, so localhost.
    ok(&format!("pod create {cg} --name web --infra-image podbox-rootfs --infra-command /pause --network none"));
    ok("run -d --pod web --name server podbox-rootfs sh -c 'echo hello-from-server > /tmp/index.html; exec httpd -f -p 8080 -h /tmp'");
    assert!(
        common::wait_until(10, || p("run --rm --pod web podbox-rootfs wget -qO- http://127.0.0.1:8080/index.html").stdout.starts_with(b"hello-from-server")),
        "the second container of the pod could not reach the first over localhost"
    );
    ok("pod rm -f web");
    assert_eq!(ok("ps -a -q"), "");
    // podman removed every container through podbox: nothing left in podbox's state.
    let leftovers = node.sh_ok(&format!("{} list -q", env.runc.display()));
    assert!(leftovers.trim().is_empty(), "{leftovers}");
    // ... and removed each container's cgroup (podman's own pod and conmon cgroups are podman's).
    let cgroups = node.sh_ok(&format!("find /sys/fs/cgroup -path '*/{}/*' -name 'libpod-*' 2>/dev/null || true", cgroup_parent.0));
    assert!(cgroups.trim().is_empty(), "container cgroups left: {cgroups}");
}

/// On a node that sees only cgroup v2 (the unified hierarchy mounted over /sys/fs/cgroup in the
/// node's own mount namespace), the default cgroup is a v2 one with the device rules as an eBPF
/// program, and pause/resume use v2's cgroup.freeze.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pure_cgroup_v2_default_cgroup_pause_and_devices() {
    require_root!();
    let node = Node::new("oci-v2");
    let env = Env::in_node("v2", &node);
    node.sh_ok("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup");
    let tick = env.dir.join("tick");
    std::fs::create_dir_all(&tick).unwrap();
    let b = env.bundle("b", "[ -c /dev/net/tun ] && echo NODE > /t/node; (exec 3</dev/net/tun) 2>/dev/null && echo TUN > /t/tun; i=0; while true; do i=$((i+1)); echo $i > /t/n; sleep 0.05; done", |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/t", "type": "bind", "source": tick, "options": ["rbind", "rw"] }));
        // The machine's /dev/net/tun, bound in: `spec`'s "deny all" plus the standard set that
        // create adds do not allow opening it. (A node listed in linux.devices would be allowed.)
        c["mounts"].as_array_mut().unwrap().push(json!({ "destination": "/dev/net/tun", "type": "bind", "source": "/dev/net/tun", "options": ["bind"] }));
    });
    let out = node.sh(&env.bg(&format!("run --detach -b {} v", b.display())));
    assert!(out.status.success(), "{}", std::fs::read_to_string(env.dir.join("container.out")).unwrap_or_default());
    let n = || std::fs::read_to_string(tick.join("n")).unwrap_or_default();
    assert!(common::wait_until(5, || !n().is_empty()), "the container did not run");
    assert!(tick.join("node").exists(), "/dev/net/tun was not created");
    assert!(!tick.join("tun").exists(), "/dev/net/tun opened despite the device rules");
    let cg = node.sh_ok("find /sys/fs/cgroup -type d -path '*/podbox-runc/v-*' 2>/dev/null || true").trim().to_string();
    assert!(!cg.is_empty() && !cg.contains('\n'), "one v2 cgroup expected: {cg:?}");
    node.sh_ok(&env.cmd("pause v"));
    assert_eq!(env.status(&node, "v"), "paused");
    assert_eq!(node.sh_ok(&format!("cat {cg}/cgroup.freeze")).trim(), "1");
    let at = n();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(n(), at, "a paused container went on running");
    node.sh_ok(&env.cmd("resume v"));
    assert!(common::wait_until(5, || n() != at), "resume did not thaw the container");
    node.sh_ok(&env.cmd("delete --force v"));
    assert!(node.sh_ok("find /sys/fs/cgroup -type d -name 'podbox-runc*' 2>/dev/null || true").trim().is_empty(), "cgroups left");
    env.assert_clean(&node);
}
