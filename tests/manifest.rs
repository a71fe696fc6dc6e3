//! Pod manifests as people already have them (issue 18), end to end as root in throwaway nodes:
//! the output of `kubectl run --dry-run=client -o yaml`, a `kubectl get pod -o yaml` dump and
//! `podman kube generate` (a fixture, and produced live with Debian's podman) either run or are
//! refused naming the field; `pod generate` round-trips through `pod apply`; bad input (typos,
//! /dev/zero, deep nesting, a bad second document) changes nothing.
mod common;

use common::{Node, json, wait_until};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The busybox rootfs as the images the manifests name (images made on the node are never pulled;
/// the node has no way out anyway).
fn import_as(node: &Node, names: &[&str]) {
    for name in names {
        node.podbox_ok(&["image", "import", common::rootfs().to_str().unwrap(), name]);
    }
}

fn assert_no_pods(node: &Node) {
    assert_eq!(node.podbox_ok(&["pod", "ls", "--json"]).trim(), "[]");
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn kubectl_fixtures_run_or_are_refused_naming_the_field() {
    require_root!();
    let node = Node::new("m-kubectl");
    import_as(&node, &["busybox", "docker.io/library/busybox:1.36"]);
    // `kubectl run web --image=busybox --dry-run=client -o yaml`: no command, so the image's Cmd
    // (`sh`, as busybox's) runs.
    node.podbox_ok(&["pod", "apply", "-f", fixture("kubectl-run.yaml").to_str().unwrap(), "--network", "none"]);
    let v = json(&node.podbox_ok(&["pod", "inspect", "web"]));
    assert_eq!(v["containers"][0]["args"], serde_json::json!(["sh"]), "{v}");
    node.podbox_ok(&["pod", "rm", "-f", "web"]);
    assert_no_pods(&node);

    // ... and with `-- httpd ...` it runs: args, env and the container port.
    node.podbox_ok(&["pod", "apply", "-f", fixture("kubectl-run-args.yaml").to_str().unwrap(), "--network", "none"]);
    assert!(wait_until(5, || node.podbox(&["exec", "web", "web", "--", "wget", "-qO/dev/null", "http://localhost:8080/"]).status.success()), "httpd from kubectl run is not serving");
    assert_eq!(node.podbox_ok(&["exec", "web", "web", "--", "sh", "-c", "echo $GREETING"]).trim(), "hello");
    node.podbox_ok(&["pod", "rm", "-f", "web"]);

    // A dump of a real pod: status, managedFields, uid, nodeName, tolerations, the projected
    // service-account volume and its mount. Runs; the control-plane fields are listed once.
    let out = node.podbox(&["pod", "apply", "-f", fixture("kubectl-get-pod.yaml").to_str().unwrap(), "--network", "none", "--verbose"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for f in ["ignored: metadata.managedFields:", "ignored: status:", "ignored: spec.tolerations:", "ignored: spec.volumes[kube-api-access-*] and its volumeMounts:"] {
        assert_eq!(err.matches(f).count(), 1, "{f} not listed once: {err}");
    }
    assert!(wait_until(5, || node.podbox_ok(&["logs", "web", "web"]).contains("hello from web")));
    assert!(wait_until(5, || node.podbox(&["exec", "web", "web", "--", "wget", "-qO/dev/null", "http://localhost:8080/"]).status.success()));
    // Nothing of the service-account volume is mounted.
    assert!(!node.podbox(&["exec", "web", "web", "--", "test", "-e", "/var/run/secrets/kubernetes.io/serviceaccount"]).status.success());
    let v = json(&node.podbox_ok(&["pod", "inspect", "web"]));
    assert_eq!(v["labels"]["app"], "web");
    assert!(v["ignored_fields"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().starts_with("spec.nodeName:")), "{v}");
    assert_eq!(v["containers"][0]["spec"]["image"], "busybox:1.36");
    node.podbox_ok(&["pod", "rm", "-f", "web"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn podman_kube_generate_fixture_runs_with_its_host_port() {
    require_root!();
    let node = Node::new("m-podman");
    import_as(&node, &["podbox-rootfs"]);
    node.podbox_ok(&["pod", "apply", "-f", fixture("podman-kube-generate.yaml").to_str().unwrap()]);
    // podman's pod: server (httpd on 80, GREETING, workdir /tmp) and sidecar, 8080 -> 80.
    assert_eq!(node.podbox_ok(&["exec", "web", "server", "--", "sh", "-c", "echo $GREETING $(pwd)"]).trim(), "hello /tmp");
    assert!(wait_until(5, || node.podbox(&["exec", "web", "sidecar", "--", "wget", "-qO/dev/null", "http://localhost:80/"]).status.success()));
    // The host port, from the node itself (its loopback).
    assert!(wait_until(5, || node.sh("wget -T 2 -qO/dev/null http://127.0.0.1:8080/").status.success()), "host port 8080 does not reach the server");
    node.podbox_ok(&["pod", "rm", "-f", "web"]);
    node.assert_clean();
}

/// Debian's podman writes the manifest live, in the node, and podbox runs it. Skips without
/// podman. Nothing runs under podman: `create` only, so no runtime and no cgroups are involved.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn podman_kube_generate_output_applies() {
    require_root!();
    if std::process::Command::new("podman").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("skipped: podman is not installed (apt-get install -y podman)");
        return;
    }
    let node = Node::new("m-podman-live");
    // podman keeps locks and state under /run: a tmpfs there, in the node's mount namespace.
    node.sh_ok("mount -t tmpfs -o mode=755 podbox-test-run /run");
    let d = node.dir.display().to_string();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let hard = |name: &str| limits.lines().find(|l| l.starts_with(name)).and_then(|l| l[name.len()..].split_whitespace().nth(1)).unwrap().to_string();
    let (nofile, nproc) = (hard("Max open files"), hard("Max processes"));
    std::fs::write(
        node.dir.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{d}/events.log\"\ntmp_dir = \"{d}/tmp\"\n"
        ),
    )
    .unwrap();
    std::fs::write(node.dir.join("storage.conf"), format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/run\"\n")).unwrap();
    let podman = format!("CONTAINERS_CONF={d}/containers.conf CONTAINERS_STORAGE_CONF={d}/storage.conf timeout 120 podman");
    node.sh_ok(&format!("tar -C {} -cf {d}/rootfs.tar . && {podman} import {d}/rootfs.tar podbox-rootfs", common::rootfs().display()));
    node.sh_ok(&format!("{podman} pod create --name shop -p 8081:80 --infra-image podbox-rootfs --infra-command /bin/true"));
    node.sh_ok(&format!("{podman} create --pod shop --name front -e ROLE=front --workdir /tmp podbox-rootfs httpd -f -p 80 -h /var/www"));
    node.sh_ok(&format!("{podman} create --pod shop --name back --memory 32m podbox-rootfs sh -c 'echo $ROLE-back; sleep 1000'"));
    let yaml = node.sh_ok(&format!("{podman} kube generate shop"));
    let file = node.dir.join("shop.yaml");
    std::fs::write(&file, &yaml).unwrap();
    import_as(&node, &["podbox-rootfs"]);
    node.podbox_ok(&["pod", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(node.podbox_ok(&["exec", "shop", "front", "--", "sh", "-c", "echo $ROLE $(pwd)"]).trim(), "front /tmp");
    assert!(wait_until(5, || node.podbox(&["exec", "shop", "back", "--", "wget", "-qO/dev/null", "http://localhost:80/"]).status.success()));
    assert!(wait_until(5, || node.sh("wget -T 2 -qO/dev/null http://127.0.0.1:8081/").status.success()), "host port 8081 does not reach front");
    node.podbox_ok(&["pod", "rm", "-f", "shop"]);
    node.sh_ok(&format!("{podman} pod rm -f shop && {podman} rmi -f podbox-rootfs"));
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn generate_round_trips_through_apply() {
    require_root!();
    let node = Node::new("m-generate");
    import_as(&node, &["busybox", "docker.io/library/busybox:1.36"]);
    let manifest = node.dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: duo
  labels: {app: duo, tier: web}
spec:
  hostname: duohost
  restartPolicy: OnFailure
  containers:
  - name: server
    image: docker.io/library/busybox:1.36
    command: [httpd, -f, -p, "8000", -h, /var/www]
    ports: [{containerPort: 8000, hostPort: 18000}]
    resources: {limits: {memory: 48Mi, cpu: 250m}}
  - name: client
    command: [sh, -c]
    args: ['echo "$ROLE $GREETING"; sleep 1000']
    env: [{name: ROLE, value: client}, {name: GREETING, value: "hi there"}]
    workingDir: /tmp
    ports: [{containerPort: 5353, protocol: UDP}]
    securityContext: {runAsUser: 1000, runAsGroup: 1000, capabilities: {drop: [NET_RAW]}}
"#,
    )
    .unwrap();
    node.podbox_ok(&["pod", "apply", "-f", manifest.to_str().unwrap()]);
    // A container started with `run` becomes part of the manifest too.
    node.podbox_ok(&["run", "--pod", "duo", "--name", "extra", "-d", "-e", "X=1", "--", "sleep", "1000"]);
    let first = node.podbox_ok(&["pod", "generate", "duo"]);
    for want in ["kind: Pod", "image: docker.io/library/busybox:1.36", "image: busybox", "hostPort: 18000", "protocol: UDP", "restartPolicy: OnFailure", "tier: web", "memory: 48Mi", "cpu: 250m", "runAsUser: 1000", "hostname: duohost"] {
        assert!(first.contains(want), "{want} missing from:\n{first}");
    }
    let generated = node.dir.join("generated.yaml");
    std::fs::write(&generated, &first).unwrap();
    node.podbox_ok(&["pod", "rm", "-f", "duo"]);
    node.podbox_ok(&["pod", "apply", "-f", generated.to_str().unwrap()]);
    assert_eq!(node.podbox_ok(&["pod", "generate", "duo"]), first, "a second round differs");
    // What the manifest says is what runs.
    assert!(wait_until(5, || node.podbox_ok(&["logs", "duo", "client"]).contains("client hi there")));
    assert_eq!(node.podbox_ok(&["exec", "duo", "client", "--", "sh", "-c", "echo $(id -u) $(pwd)"]).trim(), "1000 /tmp");
    assert!(wait_until(5, || node.podbox(&["exec", "duo", "client", "--", "wget", "-qO/dev/null", "http://localhost:8000/"]).status.success()));
    assert!(wait_until(5, || node.sh("wget -T 2 -qO/dev/null http://127.0.0.1:18000/").status.success()), "host port 18000 does not reach server");
    node.podbox_ok(&["pod", "rm", "-f", "duo"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn bad_manifests_fail_clearly_and_create_nothing() {
    require_root!();
    let node = Node::new("m-bad");
    let file = node.dir.join("bad.yaml");
    let apply = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = node.podbox(&["pod", "apply", "-f", file.to_str().unwrap(), "--network", "none"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stderr(&out)
    };
    let ok_pod = |name: &str| format!("metadata: {{name: {name}}}\nspec:\n  containers:\n  - name: c\n    command: [sleep, '1000']\n");
    let msg = apply(&ok_pod("a").replace("  containers:", "  contianers:"));
    assert!(msg.contains("spec.contianers") && msg.contains("did you mean `containers`"), "{msg}");
    // The second document is bad: the first pod is not created either.
    let msg = apply(&format!("{}---\n{}", ok_pod("a"), ok_pod("b").replace("command", "comand")));
    assert!(msg.contains("document 2 (b), field spec.containers[0].comand") && msg.contains("`command`"), "{msg}");
    let msg = apply(&format!("{}    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes:\n  - name: data\n    persistentVolumeClaim: {{claimName: data}}\n", ok_pod("a")));
    assert!(msg.contains("field spec.volumes[0].persistentVolumeClaim"), "{msg}");
    let msg = apply(&format!("{}---\n{}", ok_pod("a"), ok_pod("b").replace("- name: c", "- name: C")));
    assert!(msg.contains("invalid container name"), "{msg}");
    assert_no_pods(&node);
    // The second pod's create fails (its name is taken): the first one is removed again.
    node.podbox_ok(&["pod", "create", "b", "--network", "none"]);
    let msg = apply(&format!("{}---\n{}", ok_pod("a"), ok_pod("b")));
    assert!(msg.contains("pod b:") && msg.contains("already taken"), "{msg}");
    assert_eq!(json(&node.podbox_ok(&["pod", "ls", "--json"])).as_array().unwrap().len(), 1, "pod a was left behind");
    node.podbox_ok(&["pod", "rm", "-f", "b"]);
    // Endless input and hostile nesting fail fast.
    let t = Instant::now();
    let out = node.podbox(&["pod", "apply", "-f", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("at most 1048576 bytes"), "{}", stderr(&out));
    std::fs::write(&file, "[".repeat(900_000)).unwrap();
    let out = node.podbox(&["pod", "apply", "-f", file.to_str().unwrap()]);
    assert!(stderr(&out).contains("nested deeper than 100"), "{}", stderr(&out));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    // Two good documents make two pods.
    std::fs::write(&file, format!("{}---\n{}", ok_pod("a"), ok_pod("b"))).unwrap();
    // (`-f -`: standard input.)
    let ids = node.sh_ok(&format!("{} pod apply -f - --network none < {}", common::PODBOX, file.display()));
    assert_eq!(ids.lines().count(), 2);
    node.podbox_ok(&["pod", "rm", "-f", "a", "b"]);
    node.assert_clean();
}

/// hostNetwork, hostPID and hostIPC: the pod's container is in the node's network, UTS, PID and
/// IPC namespaces and sees the node's /dev/shm (a pod without them is not and does not), listens
/// on the node's loopback itself, and the pod goes without touching the node's namespaces.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn host_namespaces_of_a_manifest_are_the_nodes() {
    require_root!();
    let node = Node::new("m-hostns");
    let file = node.dir.join("hostns.yaml");
    let pod = |name: &str, host: bool| format!("metadata: {{name: {name}}}\nspec:\n  hostNetwork: {host}\n  hostPID: {host}\n  hostIPC: {host}\n  containers:\n  - name: c\n    command: [httpd, -f, -p, '127.0.0.1:7081', -h, /var/www]\n");
    std::fs::write(&file, pod("h", true) + "---\n" + &pod("own", false)).unwrap();
    // The node's POSIX shared memory (a tmpfs of the node's own mount namespace).
    node.sh_ok("mount -t tmpfs node-shm /dev/shm && echo from-the-node >/dev/shm/marker");
    node.podbox_ok(&["pod", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(node.podbox_ok(&["exec", "h", "c", "--", "cat", "/dev/shm/marker"]).trim(), "from-the-node");
    assert!(!node.podbox(&["exec", "own", "c", "--", "cat", "/dev/shm/marker"]).status.success());
    let ns_in = |p: &str, ns: &str| node.podbox_ok(&["exec", p, "c", "--", "readlink", &format!("/proc/self/ns/{ns}")]).trim().to_string();
    for ns in ["net", "uts", "pid", "ipc"] {
        let on_node = node.sh_ok(&format!("readlink /proc/self/ns/{ns}")).trim().to_string();
        assert_eq!(ns_in("h", ns), on_node, "{ns}");
        assert_ne!(ns_in("own", ns), on_node, "{ns}");
    }
    // The host-network pod's server is on the node's loopback.
    assert!(wait_until(5, || node.sh("wget -T 2 -qO/dev/null http://127.0.0.1:7081/").status.success()), "httpd of the hostNetwork pod is not on the node");
    let lo_before = node.sh_ok("ip -o link show lo");
    node.podbox_ok(&["pod", "rm", "-f", "h"]);
    node.podbox_ok(&["pod", "rm", "-f", "own"]);
    assert_eq!(node.sh_ok("ip -o link show lo"), lo_before);
    assert!(!node.sh("wget -T 2 -qO/dev/null http://127.0.0.1:7081/").status.success(), "httpd outlived its pod");
    node.assert_clean();
}
