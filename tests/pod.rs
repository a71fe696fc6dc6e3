//! Pods and containers end to end (issue #2), as root, each test inside its own throwaway node:
//! shared localhost, port conflicts, shared and private namespaces, PID sharing, exec/logs/stop,
//! exit codes, crash recovery with `gc`, and bad input that must change nothing.
mod common;

use common::{Node, json, wait_until};
use std::time::Duration;

fn container_state(node: &Node, pod: &str, name: &str) -> serde_json::Value {
    let v = json(&node.podbox_ok(&["pod", "inspect", pod]));
    v["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or(serde_json::Value::Null)
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn two_containers_share_localhost_and_a_third_cannot_bind_the_same_port() {
    require_root!();
    let node = Node::new("localhost");
    node.podbox_ok(&["pod", "create", "web", "--network", "none"]);
    node.podbox_ok(&["run", "--pod", "web", "--name", "server", "-d", "--", "httpd", "-f", "-p", "80", "-h", "/var/www"]);
    assert!(wait_until(5, || node.podbox(&["exec", "web", "server", "--", "sh", "-c", "netstat -ltn | grep -q ':80 '"]).status.success()));
    let page = node.podbox_ok(&["run", "--pod", "web", "--name", "client", "--", "wget", "-qO-", "http://localhost:80"]);
    assert!(page.contains("hello from podbox"), "page: {page}");

    let out = node.podbox(&["run", "--pod", "web", "--name", "second", "--", "httpd", "-f", "-p", "80"]);
    assert_eq!(out.status.code(), Some(1), "second httpd must fail to bind");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Address in use") || String::from_utf8_lossy(&out.stderr).contains("in use"));
    let second = container_state(&node, "web", "second");
    assert_eq!(second["state"], "exited");
    assert_eq!(second["exit"]["code"], 1);
    // podbox says who holds the port, read from the pod's socket table.
    let why = second["exit"]["diagnosis"].as_str().unwrap_or_default().to_string();
    assert!(why.contains("port 80/tcp is held by container server"), "diagnosis: {why:?}");
    // A foreground container's output went to the terminal and to its log.
    assert!(node.podbox_ok(&["logs", "web", "client"]).contains("hello from podbox"));
    assert_eq!(container_state(&node, "web", "server")["state"], "running");
    let ps = node.podbox_ok(&["ps"]);
    assert!(ps.lines().any(|l| l.contains("second") && l.contains("exited (1): port 80/tcp is held by container server")), "{ps}");
    assert!(ps.lines().any(|l| l.contains("server") && l.contains("running")), "{ps}");

    node.podbox_ok(&["pod", "rm", "-f", "web"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn containers_share_uts_ipc_net_but_not_mounts() {
    require_root!();
    let node = Node::new("sharing");
    let node_hostname = node.sh_ok("hostname");
    node.podbox_ok(&["pod", "create", "p", "--hostname", "podhost", "--network", "none"]);
    for c in ["a", "b"] {
        node.podbox_ok(&["run", "--pod", "p", "--name", c, "-d", "--", "sleep", "1000"]);
    }
    let ns = |c: &str, what: &str| node.podbox_ok(&["exec", "p", c, "--", "readlink", &format!("/proc/self/ns/{what}")]);
    for what in ["net", "ipc", "uts"] {
        assert_eq!(ns("a", what), ns("b", what), "{what} namespace differs");
    }
    assert_ne!(ns("a", "mnt"), ns("b", "mnt"), "mount namespaces must be private");
    assert_ne!(ns("a", "pid"), ns("b", "pid"), "PID namespaces are private without --share-pid");
    assert_eq!(node.podbox_ok(&["exec", "p", "a", "--", "hostname"]).trim(), "podhost");
    // A file written in one container's root stays there (own overlay upper layer).
    node.podbox_ok(&["exec", "p", "a", "--", "sh", "-c", "echo mine > /tmp/f"]);
    assert!(!node.podbox(&["exec", "p", "b", "--", "cat", "/tmp/f"]).status.success());
    // IPC: a POSIX shm file made in one is visible in the other (shared /dev/shm of the pod).
    node.podbox_ok(&["exec", "p", "a", "--", "sh", "-c", "echo x > /dev/shm/seg"]);
    assert_eq!(node.podbox_ok(&["exec", "p", "b", "--", "cat", "/dev/shm/seg"]).trim(), "x");
    // Interfaces: the same set in both (just lo here).
    assert_eq!(node.podbox_ok(&["exec", "p", "a", "--", "ls", "/sys/class/net"]), node.podbox_ok(&["exec", "p", "b", "--", "ls", "/sys/class/net"]));
    assert_eq!(node.sh_ok("hostname"), node_hostname, "the node's hostname changed");
    assert!(!std::path::Path::new(&common::rootfs().join("tmp/f")).exists(), "a container wrote into rootfs/");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn share_pid_shows_pause_as_pid_1_and_the_other_containers() {
    require_root!();
    let node = Node::new("sharepid");
    node.podbox_ok(&["pod", "create", "p", "--share-pid", "--network", "none"]);
    node.podbox_ok(&["run", "--pod", "p", "--name", "sleeper", "-d", "--", "sleep", "1001"]);
    let ps = node.podbox_ok(&["run", "--pod", "p", "--name", "looker", "--", "ps", "-o", "pid,args"]);
    let first = ps.lines().nth(1).unwrap_or_default();
    assert!(first.trim_start().starts_with("1 ") && first.contains("pause"), "PID 1 is not the pause: {ps}");
    assert!(ps.contains("sleep 1001"), "other container not visible: {ps}");
    // Without --share-pid, a container sees only itself.
    node.podbox_ok(&["pod", "create", "q", "--network", "none"]);
    node.podbox_ok(&["run", "--pod", "q", "--name", "s", "-d", "--", "sleep", "1002"]);
    let ps = node.podbox_ok(&["run", "--pod", "q", "--name", "l", "--", "ps", "-o", "pid,args"]);
    assert!(!ps.contains("pause") && !ps.contains("1002"), "{ps}");
    node.podbox_ok(&["pod", "rm", "-f", "p", "q"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn killing_and_rerunning_a_container_keeps_the_pods_namespaces_and_ip() {
    require_root!();
    let node = Node::new("rerun");
    node.podbox_ok(&["pod", "create", "p"]);
    let ip_before = json(&node.podbox_ok(&["pod", "inspect", "p"]))["attachment"]["ip"].clone();
    assert!(ip_before.is_string());
    node.podbox_ok(&["run", "--pod", "p", "--name", "app", "-d", "--", "sleep", "1000"]);
    let net_before = node.podbox_ok(&["exec", "p", "app", "--", "readlink", "/proc/self/ns/net"]);
    let pid = container_state(&node, "p", "app")["pid"]["pid"].as_i64().unwrap();
    node.sh_ok(&format!("kill -9 {pid}"));
    assert!(wait_until(5, || container_state(&node, "p", "app")["state"] == "exited"));
    assert_eq!(container_state(&node, "p", "app")["exit"]["code"], 137);
    node.podbox_ok(&["rm", "p", "app"]);
    node.podbox_ok(&["run", "--pod", "p", "--name", "app", "-d", "--", "sleep", "1000"]);
    assert_eq!(node.podbox_ok(&["exec", "p", "app", "--", "readlink", "/proc/self/ns/net"]), net_before);
    let v = json(&node.podbox_ok(&["pod", "inspect", "p"]));
    assert_eq!(v["attachment"]["ip"], ip_before);
    assert_eq!(v["pause_alive"], true);
    let inside = node.podbox_ok(&["exec", "p", "app", "--", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(inside.contains(ip_before.as_str().unwrap()), "{inside}");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn exit_codes_exec_logs_and_stop() {
    require_root!();
    let node = Node::new("codes");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    assert_eq!(node.podbox(&["run", "--pod", "p", "--name", "three", "--", "sh", "-c", "exit 3"]).status.code(), Some(3));
    let nf = node.podbox(&["run", "--pod", "p", "--name", "nf", "--", "no-such-command"]);
    assert_eq!(nf.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&nf.stderr).contains("not found"), "{}", String::from_utf8_lossy(&nf.stderr));
    let ne = node.podbox(&["run", "--pod", "p", "--name", "ne", "--", "/etc/passwd"]);
    assert_eq!(ne.status.code(), Some(126));
    // env, workdir and user reach the process
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "envy", "-e", "GREETING=hi there", "-w", "/tmp", "-u", "1000:1000", "--", "sh", "-c", "echo \"$GREETING\" $(pwd) $(id -u):$(id -g)"]);
    assert_eq!(out.trim(), "hi there /tmp 1000:1000");

    node.podbox_ok(&["run", "--pod", "p", "--name", "talker", "-d", "--", "sh", "-c", "echo out; echo err >&2; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"]);
    assert!(wait_until(5, || node.podbox_ok(&["logs", "p", "talker"]).contains("err")));
    let logs = node.podbox_ok(&["logs", "p", "talker"]);
    assert!(logs.contains("out") && logs.contains("err"), "{logs}");
    assert_eq!(node.podbox(&["exec", "p", "talker", "--", "sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(node.podbox(&["exec", "p", "talker", "--", "nope"]).status.code(), Some(127));
    // A shell that handles SIGTERM stops within the grace period with its own status ...
    node.podbox_ok(&["stop", "p", "talker", "-t", "5"]);
    let st = container_state(&node, "p", "talker");
    assert_eq!(st["state"], "exited");
    assert_eq!(st["exit"]["code"], 0);
    assert!(node.podbox_ok(&["logs", "p", "talker"]).contains("bye"));
    // ... one that ignores it (PID 1 without a handler) is killed after the grace period.
    node.podbox_ok(&["run", "--pod", "p", "--name", "stubborn", "-d", "--", "sleep", "1000"]);
    node.podbox_ok(&["stop", "p", "stubborn", "-t", "1"]);
    assert_eq!(container_state(&node, "p", "stubborn")["exit"]["code"], 137);
    // rm of a running container needs -f
    node.podbox_ok(&["run", "--pod", "p", "--name", "busy", "-d", "--", "sleep", "1000"]);
    assert_eq!(node.podbox(&["rm", "p", "busy"]).status.code(), Some(1));
    node.podbox_ok(&["rm", "-f", "p", "busy"]);
    assert!(container_state(&node, "p", "busy").is_null());
    // logs -f returns once the container has exited
    node.podbox_ok(&["run", "--pod", "p", "--name", "short", "-d", "--", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done"]);
    let followed = node.podbox_ok(&["logs", "-f", "p", "short"]);
    assert_eq!(followed.lines().collect::<Vec<_>>(), vec!["line1", "line2", "line3"]);
    // pod rm without -f refuses while something runs
    node.podbox_ok(&["run", "--pod", "p", "--name", "run2", "-d", "--", "sleep", "1000"]);
    assert_eq!(node.podbox(&["pod", "rm", "p"]).status.code(), Some(1));
    node.podbox_ok(&["pod", "stop", "p", "-t", "1"]);
    node.podbox_ok(&["pod", "rm", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pause_is_tiny_and_exits_0_on_sigterm() {
    require_root!();
    let node = Node::new("pause");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    let v = json(&node.podbox_ok(&["pod", "inspect", "p"]));
    let pid = v["pause"]["pid"].as_i64().unwrap();
    let rss: u64 = node.sh_ok(&format!("grep VmRSS /proc/{pid}/status | awk '{{print $2}}'")).trim().parse().unwrap();
    eprintln!("pause VmRSS: {rss} KiB");
    assert!(rss <= 100, "pause uses {rss} KiB");
    assert_eq!(node.sh_ok(&format!("cat /proc/{pid}/comm")).trim(), "pause");
    // one pause per pod
    node.podbox_ok(&["pod", "create", "q", "--network", "none"]);
    let pauses = node.sh_ok("for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = pause ] && echo $p; done; true");
    assert_eq!(pauses.lines().count(), 3, "node init + two pod pauses expected: {pauses}"); // the node's init is a pause too
    // SIGTERM ends it with status 0: run the pause as a child of a shell to see its status.
    let st = node.sh_ok(&format!("{} pause & p=$!; sleep 0.2; kill -TERM $p; wait $p; echo $?", common::PODBOX));
    assert_eq!(st.trim(), "0");
    node.podbox_ok(&["pod", "rm", "-f", "p", "q"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn gc_cleans_a_pod_whose_pause_was_killed() {
    require_root!();
    let node = Node::new("deadpause");
    node.podbox_ok(&["pod", "create", "p"]);
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "-d", "--", "sleep", "1000"]);
    let v = json(&node.podbox_ok(&["pod", "inspect", "p"]));
    node.sh_ok(&format!("kill -9 {}", v["pause"]["pid"]));
    assert!(wait_until(5, || node.podbox_ok(&["pod", "ls"]).contains("dead")));
    assert!(node.podbox(&["run", "--pod", "p", "--name", "d", "--", "true"]).status.code() == Some(1));
    let out = node.podbox_ok(&["gc"]);
    assert!(out.contains("removed pod p"), "{out}");
    node.assert_clean();
    assert!(wait_until(5, || node.sh_ok("ip -o link show | grep -c veth || true").trim() == "0"));
    assert_eq!(node.sh_ok(&format!("ls {}/network/ipam/*/ | grep -c '^10\\.' || true", node.root.display())).trim(), "0");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn gc_recovers_from_a_cli_killed_at_any_point_of_pod_create() {
    require_root!();
    let node = Node::new("crash");
    // Warm up once so the bridge and tables exist; then kill `pod create` at growing delays.
    node.podbox_ok(&["pod", "create", "warm"]);
    node.podbox_ok(&["pod", "rm", "-f", "warm"]);
    for (i, delay_ms) in [0u64, 1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64].iter().enumerate() {
        let mut child = node.podbox_spawn(&["pod", "create", &format!("c{i}")]);
        // nsenter forks podbox into the node: find that child (machine PID numbering).
        let mut cli = None;
        wait_until(5, || {
            cli = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).ok().and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<i32>().ok()));
            cli.is_some() || matches!(child.try_wait(), Ok(Some(_)))
        });
        std::thread::sleep(Duration::from_millis(*delay_ms));
        if let Some(pid) = cli {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = child.wait();
    }
    std::thread::sleep(Duration::from_millis(100));
    node.podbox_ok(&["gc"]);
    // Pods whose create had finished before the kill are legitimately there: remove them.
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    node.assert_clean();
    // The kernel removes a veth with its pod's network namespace, in the background.
    assert!(wait_until(5, || node.sh_ok("ip -o link show | grep -c veth || true").trim() == "0"), "{}", node.sh_ok("ip link"));
    assert_eq!(node.sh_ok(&format!("ls {}/network/ipam/*/ | grep -c '^10\\.' || true", node.root.display())).trim(), "0");
    assert_eq!(node.sh_ok("nft list map ip podbox hostports | grep -c elements || true").trim(), "0");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    require_root!();
    let node = Node::new("badinput");
    let err = |args: &[&str]| {
        let out = node.podbox(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, msg) = err(&["pod", "create", "Bad_Name"]);
    assert_eq!(code, 1);
    assert!(msg.contains("invalid pod name"), "{msg}");
    let (code, _) = err(&["pod", "create"]);
    assert_eq!(code, 2, "usage errors exit 2");
    let (_, msg) = err(&["pod", "create", "p", "-p", "99999:80"]);
    assert!(msg.contains("port mapping"), "{msg}");
    let (_, msg) = err(&["--rootfs", "/nonexistent", "pod", "create", "p"]);
    assert!(msg.contains("build-rootfs.sh"), "{msg}");
    let (_, msg) = err(&["run", "--pod", "ghost", "--name", "c", "--", "true"]);
    assert!(msg.contains("no pod named \"ghost\""), "{msg}");
    let manifest = node.dir.join("bad.yaml");
    std::fs::write(&manifest, "metadata: {name: m}\nspec:\n  containers:\n  - name: c\n    command: [sh]\n    imagePullPolicyy: Always\n").unwrap();
    let (_, msg) = err(&["pod", "apply", "-f", manifest.to_str().unwrap()]);
    assert!(msg.contains("spec.containers[0].imagePullPolicyy") && msg.contains("did you mean `imagePullPolicy`"), "{msg}");
    std::fs::write(&manifest, "{ not yaml: [").unwrap();
    err(&["pod", "apply", "-f", manifest.to_str().unwrap()]);
    // nothing was created by any of that
    assert!(node.podbox_ok(&["pod", "ls", "--json"]).trim() == "[]");
    node.assert_clean();
    // duplicates
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    let (_, msg) = err(&["pod", "create", "p", "--network", "none"]);
    assert!(msg.contains("already taken"), "{msg}");
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "-d", "--", "sleep", "100"]);
    let (_, msg) = err(&["run", "--pod", "p", "--name", "c", "--", "true"]);
    assert!(msg.contains("already exists"), "{msg}");
    let (_, msg) = err(&["run", "--pod", "p", "--name=-x", "--", "true"]);
    assert!(msg.contains("invalid container name"), "{msg}");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn apply_runs_a_manifests_containers_and_warns_about_shared_ports() {
    require_root!();
    let node = Node::new("apply");
    // `image: busybox` finds the rootfs imported as localhost/busybox (never pulled); the
    // sidecar has no image and runs from --rootfs.
    node.podbox_ok(&["image", "import", common::rootfs().to_str().unwrap(), "busybox"]);
    let manifest = node.dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  hostname: webby
  containers:
  - name: server
    image: busybox
    command: [httpd, -f, -p, "8000", -h, /var/www]
    ports: [{containerPort: 8000}]
  - name: sidecar
    command: [sh, -c]
    args: ["echo $ROLE; sleep 1000"]
    env: [{name: ROLE, value: sidecar}]
    ports: [{containerPort: 8000}]
"#,
    )
    .unwrap();
    let out = node.podbox(&["pod", "apply", "-f", manifest.to_str().unwrap(), "--network", "none"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning") && stderr.contains("8000"), "{stderr}");
    assert!(wait_until(5, || node.podbox_ok(&["logs", "web", "sidecar"]).contains("sidecar")));
    assert!(wait_until(5, || node.podbox(&["exec", "web", "sidecar", "--", "wget", "-qO-", "http://localhost:8000"]).status.success()));
    assert_eq!(node.podbox_ok(&["exec", "web", "server", "--", "hostname"]).trim(), "webby");
    node.podbox_ok(&["pod", "rm", "-f", "web"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_foreground_containers_signals_follow_its_restarts() {
    require_root!();
    let node = Node::new("fgrestart");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    // The first run fails and is restarted; the second traps SIGTERM and exits 0, which
    // on-failure does not restart: a SIGTERM to the foreground CLI must reach the second run.
    let script = "if [ -e /dev/shm/ran ]; then trap 'echo got-term; exit 0' TERM; echo second; while :; do sleep 0.1; done; fi; touch /dev/shm/ran; echo first; exit 1";
    let p = common::PODBOX;
    let out = node.sh_ok(&format!(
        "{p} run --pod p --name fg --restart on-failure -- sh -c \"{script}\" </dev/null >/dev/null 2>&1 & cli=$!
         i=0; until {p} logs p fg 2>/dev/null | grep -q second; do sleep 0.1; i=$((i+1)); [ $i -gt 100 ] && break; done
         kill -TERM $cli
         i=0; while kill -0 $cli 2>/dev/null; do sleep 0.1; i=$((i+1)); if [ $i -gt 100 ]; then echo HUNG; kill -9 $cli; break; fi; done
         wait $cli; echo code=$?"
    ));
    assert!(!out.contains("HUNG") && out.contains("code=0"), "the CLI did not pass SIGTERM to the restarted run: {out}");
    assert!(node.podbox_ok(&["logs", "p", "fg"]).contains("got-term"), "the second run did not get the signal");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn restart_policies_start_a_container_again_and_stop_ends_them() {
    require_root!();
    let node = Node::new("restart");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    // on-failure: a failing container is started again (back-off 1 s, then 2 s), each time from
    // the image, without what the last run wrote to its root ...
    let script = "echo started; [ -e /scribble ] && echo LEFTOVER; touch /scribble; exit 3";
    node.podbox_ok(&["run", "--pod", "p", "--name", "flaky", "-d", "--restart", "on-failure", "--", "sh", "-c", script]);
    assert!(wait_until(10, || node.podbox_ok(&["logs", "p", "flaky"]).matches("started").count() >= 3), "not restarted");
    assert!(!node.podbox_ok(&["logs", "p", "flaky"]).contains("LEFTOVER"), "a restart kept the last run's writable layer");
    let st = container_state(&node, "p", "flaky");
    assert!(st["restarts"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(st["last_exit"]["code"], 3);
    assert!(st["state"] == "restarting" || st["state"] == "running", "{st}");
    // ... and `stop` ends the loop for good, also during the back-off.
    node.podbox_ok(&["stop", "p", "flaky", "-t", "1"]);
    let st = container_state(&node, "p", "flaky");
    assert_eq!(st["state"], "exited", "{st}");
    let n = node.podbox_ok(&["logs", "p", "flaky"]).matches("started").count();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(node.podbox_ok(&["logs", "p", "flaky"]).matches("started").count(), n, "started again after stop");
    // on-failure does not restart a success; always does, and the PID changes, the pod stays.
    node.podbox_ok(&["run", "--pod", "p", "--name", "ok", "-d", "--restart", "on-failure", "--", "true"]);
    assert!(wait_until(5, || container_state(&node, "p", "ok")["state"] == "exited"));
    assert_eq!(container_state(&node, "p", "ok")["restarts"], 0);
    node.podbox_ok(&["run", "--pod", "p", "--name", "always", "-d", "--restart", "always", "--", "sleep", "1000"]);
    let pid1 = container_state(&node, "p", "always")["pid"]["pid"].as_i64().unwrap();
    node.sh_ok(&format!("kill -9 {pid1}"));
    assert!(wait_until(10, || {
        let st = container_state(&node, "p", "always");
        st["state"] == "running" && st["restarts"] == 1
    }));
    let pid2 = container_state(&node, "p", "always")["pid"]["pid"].as_i64().unwrap();
    assert_ne!(pid1, pid2);
    assert_eq!(container_state(&node, "p", "always")["last_exit"]["code"], 137);
    // pod rm -f ends restarting containers too, and nothing is left.
    node.podbox_ok(&["run", "--pod", "p", "--name", "loop", "-d", "--restart", "always", "--", "sh", "-c", "exit 1"]);
    std::thread::sleep(Duration::from_millis(300));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    std::thread::sleep(Duration::from_millis(1500));
    node.assert_clean();
}
