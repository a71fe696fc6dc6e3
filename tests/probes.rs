//! Probes and lifecycle hooks (issue 14), as root, each test in its own throwaway node: a liveness
//! probe that starts failing restarts the container (count and reason in `ps`/`inspect`),
//! readiness flips `pod ls` READY, a startup probe holds liveness back, preStop runs before
//! SIGTERM reaches the process, a failing postStart hook stops the container.
mod common;

use common::{Node, json, wait_until};
use std::path::PathBuf;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn apply(node: &Node, text: &str) -> std::process::Output {
    let p: PathBuf = node.dir.join("pod.yaml");
    std::fs::write(&p, text).unwrap();
    node.podbox(&["pod", "apply", "-f", p.to_str().unwrap(), "--network", "none"])
}

fn container(node: &Node, pod: &str, name: &str) -> serde_json::Value {
    let v = json(&node.podbox_ok(&["pod", "inspect", pod]));
    v["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_else(|| panic!("no container {name}: {v}"))
}

fn ready_column(node: &Node, pod: &str) -> String {
    let ls = node.podbox_ok(&["pod", "ls"]);
    let header: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "READY").expect("a READY column");
    ls.lines().find(|l| l.starts_with(&format!("{pod} "))).unwrap().split_whitespace().nth(col).unwrap().to_string()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_liveness_probe_that_starts_failing_restarts_the_container() {
    require_root!();
    let node = Node::new("p-liveness");
    let out = apply(&node, r#"
metadata: {name: l}
spec:
  containers:
  - name: app
    command: [sh, -c, 'touch /tmp/healthy; exec sleep 1000']
    livenessProbe: {exec: {command: [cat, /tmp/healthy]}, periodSeconds: 1, failureThreshold: 2}
"#);
    assert!(out.status.success(), "{}", stderr(&out));
    // Healthy for a while: no restart.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(container(&node, "l", "app")["restarts"], 0);
    node.podbox_ok(&["exec", "l", "app", "--", "rm", "/tmp/healthy"]);
    assert!(wait_until(15, || container(&node, "l", "app")["restarts"] == 1), "not restarted: {}", node.podbox_ok(&["ps"]));
    let c = container(&node, "l", "app");
    let why = c["last_exit"]["diagnosis"].as_str().unwrap_or("");
    assert!(why.contains("liveness probe failed: cat /tmp/healthy exited 1"), "{c}");
    assert_eq!(c["last_exit"]["code"], 137, "{c}");
    // The new run is a fresh container: healthy again, and ps says why it was restarted.
    assert!(wait_until(10, || container(&node, "l", "app")["state"] == "running"));
    let ps = node.podbox_ok(&["ps"]);
    assert!(ps.contains("[1 restarts]") && ps.contains("liveness probe failed"), "{ps}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(container(&node, "l", "app")["restarts"], 1);
    node.podbox_ok(&["pod", "rm", "-f", "l"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn readiness_flips_pod_ls_ready_and_http_and_tcp_probes_work() {
    require_root!();
    let node = Node::new("p-ready");
    let out = apply(&node, r#"
metadata: {name: r}
spec:
  containers:
  - name: web
    command: [httpd, -f, -p, "80", -h, /var/www]
    readinessProbe: {httpGet: {path: /index.html, port: 80}, periodSeconds: 1}
    livenessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
  - name: worker
    command: [sleep, "1000"]
    readinessProbe: {exec: {command: [test, -e, /tmp/ready]}, periodSeconds: 1}
"#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(10, || ready_column(&node, "r") == "1/2"), "{}", node.podbox_ok(&["pod", "ls"]));
    // Its first check may still be under way: wait for its verdict.
    let failing = |ps: &str| ps.lines().any(|l| l.contains("worker") && l.contains("running, not ready (readiness probe failed: test -e /tmp/ready exited 1)"));
    assert!(wait_until(10, || failing(&node.podbox_ok(&["ps"]))), "{}", node.podbox_ok(&["ps"]));
    assert!(node.podbox_ok(&["ps"]).lines().any(|l| l.contains("web") && l.contains("running, ready")));
    node.podbox_ok(&["exec", "r", "worker", "--", "touch", "/tmp/ready"]);
    assert!(wait_until(10, || ready_column(&node, "r") == "2/2"), "{}", node.podbox_ok(&["pod", "ls"]));
    node.podbox_ok(&["exec", "r", "worker", "--", "rm", "/tmp/ready"]);
    assert!(wait_until(10, || ready_column(&node, "r") == "1/2"), "{}", node.podbox_ok(&["pod", "ls"]));
    // An HTTP answer outside 200-399 is a failure.
    node.podbox_ok(&["exec", "r", "web", "--", "mv", "/var/www/index.html", "/var/www/gone.html"]);
    assert!(wait_until(10, || ready_column(&node, "r") == "0/2"), "{}", node.podbox_ok(&["pod", "ls"]));
    assert_eq!(container(&node, "r", "web")["restarts"], 0, "the TCP liveness probe failed although httpd listens");
    node.podbox_ok(&["pod", "rm", "-f", "r"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_startup_probe_holds_liveness_back_until_it_succeeds() {
    require_root!();
    let node = Node::new("p-startup");
    let out = apply(&node, r#"
metadata: {name: s}
spec:
  restartPolicy: Never
  containers:
  - name: slow
    command: [sleep, "1000"]
    startupProbe: {exec: {command: [test, -e, /tmp/started]}, periodSeconds: 1, failureThreshold: 60}
    livenessProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 1}
"#);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let c = container(&node, "s", "slow");
    assert_eq!(c["state"], "running", "liveness ran before the startup probe succeeded: {c}");
    assert!(node.podbox_ok(&["ps"]).contains("running, starting"));
    node.podbox_ok(&["exec", "s", "slow", "--", "touch", "/tmp/started"]);
    // Started: now the (always failing) liveness probe counts, and kills it; Never: it stays dead.
    assert!(wait_until(10, || container(&node, "s", "slow")["exit"].is_object()));
    let c = container(&node, "s", "slow");
    assert!(c["exit"]["diagnosis"].as_str().unwrap_or("").contains("liveness probe failed"), "{c}");
    node.podbox_ok(&["pod", "rm", "-f", "s"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn prestop_runs_before_sigterm_and_a_failing_poststart_stops_the_container() {
    require_root!();
    let node = Node::new("p-hooks");
    let out = apply(&node, r#"
metadata: {name: h}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: app
    command: [sh, -c, 'trap "echo TERM >> /data/log; exit 0" TERM; while true; do sleep 0.1; done']
    volumeMounts: [{name: data, mountPath: /data}]
    lifecycle:
      postStart: {exec: {command: [sh, -c, 'echo poststart >> /data/log']}}
      preStop: {exec: {command: [sh, -c, 'echo prestop >> /data/log; sleep 0.5']}}
"#);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json(&node.podbox_ok(&["pod", "inspect", "h"]))["id"].as_str().unwrap().to_string();
    let log = node.root.join("pods").join(&id).join("volumes/data/log");
    node.podbox_ok(&["stop", "h", "app"]);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "poststart\nprestop\nTERM\n");
    assert_eq!(container(&node, "h", "app")["exit"]["code"], 0, "it ended on its own after SIGTERM");
    node.podbox_ok(&["pod", "rm", "-f", "h"]);

    // A postStart hook that fails: the container is stopped and the apply says why.
    let out = apply(&node, r#"
metadata: {name: f}
spec:
  containers:
  - name: app
    command: [sleep, "1000"]
    lifecycle: {postStart: {exec: {command: ["false"]}}}
"#);
    assert!(stderr(&out).contains("postStart hook failed: false exited 1"), "{}", stderr(&out));
    assert!(wait_until(5, || container(&node, "f", "app")["state"] == "exited"));
    node.podbox_ok(&["pod", "rm", "-f", "f"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_probe_that_times_out_fails_and_leaves_nothing_running_in_the_container() {
    require_root!();
    let node = Node::new("p-timeout");
    let out = apply(&node, r#"
metadata: {name: t}
spec:
  containers:
  - name: app
    command: [sleep, "1000"]
    readinessProbe: {exec: {command: [sleep, "30"]}, periodSeconds: 1, timeoutSeconds: 1}
"#);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(10, || node.podbox_ok(&["ps"]).contains("timed out after 1s")), "{}", node.podbox_ok(&["ps"]));
    std::thread::sleep(std::time::Duration::from_secs(4));
    // Each timed-out check was killed with its command: at most the one in flight is left.
    let ps = node.podbox_ok(&["exec", "t", "app", "--", "ps", "-o", "args"]);
    assert!(ps.matches("sleep 30").count() <= 1, "{ps}");
    assert_eq!(ready_column(&node, "t"), "0/1");
    node.podbox_ok(&["pod", "rm", "-f", "t"]);
    node.assert_clean();
}
