//! Pod volumes end to end (issue 14), as root, each test in its own throwaway node: an emptyDir
//! shared by a writer and an HTTP server and fetched from another pod, the Memory medium and its
//! size limit, hostPath types, subPath escapes, read-only mounts, ConfigMap and Secret files,
//! and bad input that must change nothing.
mod common;

use common::{Node, json, wait_until};
use std::path::PathBuf;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_manifest(node: &Node, name: &str, text: &str) -> PathBuf {
    let p = node.dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn apply(node: &Node, path: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["pod", "apply", "-f", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    node.podbox(&args)
}

fn assert_no_pods(node: &Node) {
    assert_eq!(node.podbox_ok(&["pod", "ls", "--json"]).trim(), "[]");
    let pods = node.root.join("pods");
    assert!(!pods.exists() || std::fs::read_dir(&pods).unwrap().count() == 0, "pod state left");
}

const SIDECAR: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes:
  - name: html
    emptyDir: {}
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, 'echo "written by the sidecar" > /out/index.html; sleep 1000']
    volumeMounts: [{name: html, mountPath: /out}]
  - name: server
    image: busybox
    command: [httpd, -f, -p, "80", -h, /www]
    volumeMounts: [{name: html, mountPath: /www, readOnly: true}]
"#;

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn sidecar_writes_into_an_emptydir_another_container_serves_it_and_pod_rm_removes_it() {
    require_root!();
    let node = Node::new("v-sidecar");
    // `image: busybox`: the rootfs imported on the node (made here, never pulled).
    node.podbox_ok(&["image", "import", common::rootfs().to_str().unwrap(), "busybox"]);
    let m = write_manifest(&node, "web.yaml", SIDECAR);
    let out = apply(&node, &m, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pod = json(&node.podbox_ok(&["pod", "inspect", "web"]));
    let ip = pod["attachment"]["ip"].as_str().unwrap().to_string();
    let id = pod["id"].as_str().unwrap().to_string();
    // The disk emptyDir lives in the pod's state directory.
    let dir = node.root.join("pods").join(&id).join("volumes/html");
    assert!(wait_until(5, || dir.join("index.html").exists()), "the writer's file is not in {}", dir.display());
    // A client in another pod fetches it by the pod's IP.
    node.podbox_ok(&["pod", "create", "client"]);
    let mut got = String::new();
    assert!(
        wait_until(10, || {
            let out = node.podbox(&["run", "--pod", "client", "--name", &format!("get{}", got.len()), "--", "wget", "-qO-", &format!("http://{ip}/index.html")]);
            got.push('x');
            String::from_utf8_lossy(&out.stdout).contains("written by the sidecar")
        }),
        "the server did not serve the sidecar's file"
    );
    // The server's mount is read-only, the writer's is not.
    let out = node.podbox(&["exec", "web", "server", "--", "touch", "/www/x"]);
    assert!(!out.status.success() && stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    node.podbox_ok(&["exec", "web", "writer", "--", "touch", "/out/x"]);
    node.podbox_ok(&["pod", "rm", "-f", "web", "client"]);
    assert!(!dir.exists(), "{} outlived the pod", dir.display());
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn memory_emptydir_is_a_tmpfs_and_a_writer_past_its_size_limit_gets_enospc() {
    require_root!();
    let node = Node::new("v-memory");
    node.podbox_ok(&["pod", "create", "p", "--network", "none", "--volume", "cache:tmpfs:1Mi"]);
    let fs = node.podbox_ok(&["run", "--pod", "p", "--name", "fs", "-v", "cache:/cache", "--", "stat", "-f", "-c", "%T", "/cache"]);
    assert_eq!(fs.trim(), "tmpfs");
    let out = node.podbox(&["run", "--pod", "p", "--name", "big", "-v", "cache:/cache", "--", "dd", "if=/dev/zero", "of=/cache/f", "bs=64k", "count=32"]);
    assert!(!out.status.success(), "2 MiB fit into a 1 MiB volume");
    assert!(String::from_utf8_lossy(&out.stdout).contains("No space left on device") || stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    // Shared: the next container sees what the last one wrote.
    let size = node.podbox_ok(&["run", "--pod", "p", "--name", "size", "-v", "cache:/c", "--", "sh", "-c", "wc -c < /c/f"]);
    assert!(size.trim().parse::<u64>().unwrap() <= 1 << 20, "{size}");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn host_path_types_are_checked_before_anything_is_made() {
    require_root!();
    let node = Node::new("v-hostpath");
    let base = node.dir.join("host");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("file"), "node file\n").unwrap();
    let created = base.join("made/by/podbox");
    let pod = |vols: &str| format!("metadata: {{name: h}}\nspec:\n  volumes:\n{vols}  containers:\n  - name: c\n    command: [sleep, '1000']\n    volumeMounts: [{{name: a, mountPath: /a}}]\n");
    // A DirectoryOrCreate volume, then one of the wrong type: refused, and the first is not made.
    for (bad, want) in [
        (format!("  - {{name: b, hostPath: {{path: {}, type: Directory}}}}\n", base.join("file").display()), "is not a directory"),
        (format!("  - {{name: b, hostPath: {{path: {}, type: File}}}}\n", base.display()), "is not a file"),
        (format!("  - {{name: b, hostPath: {{path: {}, type: Socket}}}}\n", base.join("file").display()), "is not a socket"),
        ("  - {name: b, hostPath: {path: /dev/null, type: BlockDevice}}\n".to_string(), "is not a block device"),
        (format!("  - {{name: b, hostPath: {{path: {}, type: Directory}}}}\n", base.join("missing").display()), "No such file"),
    ] {
        let vols = format!("  - {{name: a, hostPath: {{path: {}, type: DirectoryOrCreate}}}}\n{bad}", created.display());
        let m = write_manifest(&node, "h.yaml", &pod(&vols));
        let out = apply(&node, &m, &["--network", "none"]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(stderr(&out).contains(want) && stderr(&out).contains("spec.volumes[1].hostPath"), "{bad}: {}", stderr(&out));
        assert!(!created.exists(), "{bad}: the DirectoryOrCreate path was made");
        assert_no_pods(&node);
    }
    // The right types: DirectoryOrCreate makes the directory, File and CharDevice mount.
    let vols = format!(
        "  - {{name: a, hostPath: {{path: {}, type: DirectoryOrCreate}}}}\n  - {{name: f, hostPath: {{path: {}, type: File}}}}\n  - {{name: n, hostPath: {{path: /dev/null, type: CharDevice}}}}\n",
        created.display(),
        base.join("file").display()
    );
    let m = write_manifest(&node, "h.yaml", &pod(&vols).replace("volumeMounts: [", "volumeMounts: [{name: f, mountPath: /etc/from-node, readOnly: true}, "));
    let out = apply(&node, &m, &["--network", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(created.is_dir());
    assert!(wait_until(5, || node.podbox(&["exec", "h", "c", "--", "true"]).status.success()));
    assert_eq!(node.podbox_ok(&["exec", "h", "c", "--", "cat", "/etc/from-node"]), "node file\n");
    node.podbox_ok(&["exec", "h", "c", "--", "sh", "-c", "echo from-container > /a/x"]);
    assert_eq!(std::fs::read_to_string(created.join("x")).unwrap(), "from-container\n");
    node.podbox_ok(&["pod", "rm", "-f", "h"]);
    // A hostPath is the node's: it stays.
    assert!(created.join("x").exists());
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn subpath_cannot_escape_through_a_planted_symlink_or_dotdot() {
    require_root!();
    let node = Node::new("v-subpath");
    node.podbox_ok(&["pod", "create", "p", "--network", "none", "--volume", "data"]);
    // A container plants symlinks to the node's /etc into the shared volume.
    node.podbox_ok(&["run", "--pod", "p", "--name", "plant", "-v", "data:/data", "--", "sh", "-c", "ln -s /etc /data/evil && mkdir -p /data/ok && ln -s ../evil /data/ok/up && echo inside > /data/ok/f"]);
    for (sub, want) in [("evil", "symbolic link"), ("evil/passwd", "symbolic link"), ("ok/up", "symbolic link"), ("ok/up/shadow", "symbolic link"), ("../../etc", "'..'"), ("ok/../..", "'..'")] {
        let out = node.podbox(&["run", "--pod", "p", "--name", "esc", "--mount", &format!("type=volume,src=data,dst=/x,subpath={sub}"), "--", "cat", "/x/hostname"]);
        assert_eq!(out.status.code(), Some(1), "subPath {sub}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "subPath {sub}: {}", stderr(&out));
        // Nothing was made: no container, no staging mount.
        assert!(!node.podbox_ok(&["ps", "--pod", "p"]).contains("esc"), "subPath {sub}");
        assert!(!node.sh_ok("cat /proc/self/mountinfo").contains("subpaths"), "subPath {sub}: staging mount left");
    }
    // A subPath inside the volume mounts just that directory.
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "good", "--mount", "type=volume,src=data,dst=/x,subpath=ok", "--", "sh", "-c", "cat /x/f; ls /x"]);
    assert_eq!(out, "inside\nf\nup\n");
    // A missing subPath is made as a directory, as the kubelet does.
    node.podbox_ok(&["run", "--pod", "p", "--name", "fresh", "--mount", "type=volume,src=data,dst=/x,subpath=new/dir", "--", "touch", "/x/y"]);
    // ... and a read-only mount is read-only.
    let out = node.podbox(&["run", "--pod", "p", "--name", "look", "-v", "data:/d:ro", "--", "sh", "-c", "ls /d/new/dir; touch /d/z"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "y\n");
    assert!(!out.status.success() && stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    // Removing a container unmounts its staging points.
    node.podbox_ok(&["rm", "p", "good"]);
    assert!(!node.sh_ok("cat /proc/self/mountinfo").contains("/containers/good/subpaths/"));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn configmap_and_secret_documents_become_read_only_files_the_secret_on_a_tmpfs() {
    require_root!();
    let node = Node::new("v-files");
    let m = write_manifest(&node, "files.yaml", r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  app.conf: "listen 80\n"
  other: ignored-by-items
binaryData:
  blob: AP8K
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
type: Opaque
data: {password: aHVudGVyMg==}
stringData: {user: admin}
---
apiVersion: v1
kind: Pod
metadata: {name: f}
spec:
  volumes:
  - name: cfg
    configMap:
      name: app-config
      defaultMode: 0640
      items: [{key: app.conf, path: conf/app.conf}, {key: blob, path: blob, mode: 0600}]
  - name: sec
    secret: {secretName: creds, defaultMode: 0400}
  containers:
  - name: c
    command: [sleep, "1000"]
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: sec, mountPath: /run/secrets/creds}
"#);
    let out = apply(&node, &m, &["--network", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(5, || node.podbox(&["exec", "f", "c", "--", "true"]).status.success()));
    let ex = |cmd: &str| node.podbox_ok(&["exec", "f", "c", "--", "sh", "-c", cmd]);
    assert_eq!(ex("cat /etc/app/conf/app.conf"), "listen 80\n");
    assert_eq!(ex("od -An -tx1 /etc/app/blob").split_whitespace().collect::<Vec<_>>(), ["00", "ff", "0a"]);
    assert_eq!(ex("ls /etc/app"), "blob\nconf\n");
    assert_eq!(ex("stat -c %a /etc/app/conf/app.conf /etc/app/blob"), "640\n600\n");
    assert_eq!(ex("cat /run/secrets/creds/password; echo; cat /run/secrets/creds/user"), "hunter2\nadmin");
    assert_eq!(ex("stat -c %a /run/secrets/creds/password"), "400\n");
    assert_eq!(ex("stat -f -c %T /run/secrets/creds"), "tmpfs\n");
    // Read-only, even without readOnly: true.
    for f in ["/etc/app/blob", "/run/secrets/creds/user"] {
        let out = node.podbox(&["exec", "f", "c", "--", "sh", "-c", &format!("echo x > {f}")]);
        assert!(!out.status.success() && stderr(&out).contains("Read-only file system"), "{f}: {}", stderr(&out));
    }
    // On the node: the secret's volume is a tmpfs, and no record holds its data.
    let id = json(&node.podbox_ok(&["pod", "inspect", "f"]))["id"].as_str().unwrap().to_string();
    let secret_dir = node.root.join("pods").join(&id).join("volumes/sec");
    let mounts = node.sh_ok("cat /proc/self/mountinfo");
    assert!(mounts.lines().any(|l| l.contains(&format!(" {} ", secret_dir.display())) && l.contains(" - tmpfs ")), "{mounts}");
    let records = node.sh_ok(&format!("cat {}/pods/{id}/pod.json {}/pods/{id}/containers/c/container.json {}/pods/{id}/containers/c/config.json", node.root.display(), node.root.display(), node.root.display()));
    assert!(!records.contains("hunter2") && !records.contains("aHVudGVyMg"), "secret data in a record");
    node.podbox_ok(&["pod", "rm", "-f", "f"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn bad_volume_input_names_the_field_and_creates_nothing() {
    require_root!();
    let node = Node::new("v-bad");
    let pod = |vols: &str, mounts: &str| format!("metadata: {{name: b}}\nspec:\n  volumes:\n{vols}  containers:\n  - name: c\n    command: [sleep, '1000']\n    volumeMounts: {mounts}\n");
    for (text, want) in [
        (pod("  - {name: a, emptyDir: {}}\n", "[{name: nope, mountPath: /x}]"), "field spec.containers[0].volumeMounts[0].name"),
        (pod("  - {name: a, emptyDir: {}}\n  - {name: a, emptyDir: {medium: Memory}}\n", "[]"), "field spec.volumes[1].name"),
        (pod("  - {name: a, persistentVolumeClaim: {claimName: data}}\n", "[]"), "field spec.volumes[0].persistentVolumeClaim"),
        (pod("  - {name: a, emptyDir: {}}\n", "[{name: a, mountPath: /x, subPath: ../../etc}]"), "field spec.containers[0].volumeMounts[0].subPath"),
        (pod("  - {name: a, secret: {secretName: missing}}\n", "[]"), "field spec.volumes[0].secret.secretName"),
    ] {
        let m = write_manifest(&node, "b.yaml", &text);
        let out = apply(&node, &m, &["--network", "none"]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(stderr(&out).contains(want), "want {want}: {}", stderr(&out));
        assert_no_pods(&node);
    }
    // The CLI: an unknown volume, a bad kind.
    let out = node.podbox(&["pod", "create", "p", "--network", "none", "--volume", "x:nfs"]);
    assert!(!out.status.success() && stderr(&out).contains("unknown volume kind"), "{}", stderr(&out));
    assert_no_pods(&node);
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    let out = node.podbox(&["run", "--pod", "p", "--name", "c", "-v", "nope:/x", "--", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("no volume of the pod"), "{}", stderr(&out));
    assert!(!node.podbox_ok(&["ps"]).contains(" c "));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

const INIT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: i}
spec:
  restartPolicy: RESTART
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: first
    command: [sh, -c, 'echo first >> /work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    command: [sh, -c, 'SECOND']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    command: [sh, -c, 'echo app >> /work/order; sleep 1000']
    volumeMounts: [{name: work, mountPath: /work}]
"#;

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn init_containers_run_in_order_before_the_app_and_a_failing_one_blocks_it() {
    require_root!();
    let node = Node::new("v-init");
    let order = |node: &Node| node.podbox_ok(&["exec", "i", "app", "--", "cat", "/work/order"]);
    // In order, each to completion, then the app.
    let m = write_manifest(&node, "i.yaml", &INIT.replace("RESTART", "Never").replace("SECOND", "sleep 1; echo second >> /work/order"));
    let out = apply(&node, &m, &["--network", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(5, || order(&node).contains("app")));
    assert_eq!(order(&node), "first\nsecond\napp\n");
    let ps = node.podbox_ok(&["ps", "--pod", "i"]);
    assert!(ps.lines().any(|l| l.contains("first (init)") && l.contains("exited (0)")), "{ps}");
    let v = json(&node.podbox_ok(&["pod", "inspect", "i"]));
    let states: Vec<(String, bool, String)> = v["containers"].as_array().unwrap().iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["spec"]["init"].as_bool().unwrap_or(false), c["state"].as_str().unwrap().to_string())).collect();
    assert_eq!(states, [("app".to_string(), false, "running".to_string()), ("first".into(), true, "exited".into()), ("second".into(), true, "exited".into())]);
    node.podbox_ok(&["pod", "rm", "-f", "i"]);

    // restartPolicy Never: a failing init container fails the apply; the app never starts.
    let m = write_manifest(&node, "i.yaml", &INIT.replace("RESTART", "Never").replace("SECOND", "echo failing >&2; exit 3"));
    let out = apply(&node, &m, &["--network", "none"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("init container second failed (exit 3)"), "{}", stderr(&out));
    let ps = node.podbox_ok(&["ps", "--pod", "i"]);
    assert!(!ps.contains("app"), "the app container was started: {ps}");
    assert!(ps.lines().any(|l| l.contains("second (init)") && l.contains("exited (3)")), "{ps}");
    assert_eq!(node.podbox_ok(&["logs", "i", "second"]), "failing\n");
    node.podbox_ok(&["pod", "rm", "-f", "i"]);

    // restartPolicy OnFailure: the failed init container is tried again (after a back-off) and
    // the app starts once it succeeds.
    let m = write_manifest(&node, "i.yaml", &INIT.replace("RESTART", "OnFailure").replace("SECOND", "echo try >> /work/tries; [ $(wc -l < /work/tries) -ge 2 ]"));
    let out = apply(&node, &m, &["--network", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("init container second failed (exit 1); trying again"), "{}", stderr(&out));
    assert!(wait_until(5, || order(&node).contains("app")));
    assert_eq!(order(&node), "first\napp\n");
    let ps = node.podbox_ok(&["ps", "--pod", "i"]);
    assert!(ps.lines().any(|l| l.contains("second (init)") && l.contains("exited (0)") && l.contains("[1 restarts]")), "{ps}");
    node.podbox_ok(&["pod", "rm", "-f", "i"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn security_context_shows_in_proc_status_and_volume_ownership() {
    require_root!();
    let node = Node::new("v-secctx");
    let m = write_manifest(&node, "s.yaml", r#"
metadata: {name: s}
spec:
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
    supplementalGroups: [4000]
    sysctls: [{name: kernel.shm_rmid_forced, value: "1"}, {name: net.ipv4.ip_unprivileged_port_start, value: "80"}]
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: c
    command: [sh, -c, 'touch /data/mine; sleep 1000']
    volumeMounts: [{name: data, mountPath: /data}]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true}
  - name: esc
    command: [sleep, "1000"]
    securityContext: {allowPrivilegeEscalation: true}
"#);
    let out = apply(&node, &m, &["--network", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(5, || node.podbox(&["exec", "s", "c", "--", "test", "-e", "/data/mine"]).status.success()));
    let status = node.podbox_ok(&["exec", "s", "c", "--", "cat", "/proc/self/status"]);
    let field = |name: &str| status.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or("").split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    assert_eq!(field("Uid"), "1000 1000 1000 1000");
    assert_eq!(field("Gid"), "3000 3000 3000 3000");
    assert_eq!(field("Groups"), "2000 4000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");
    let esc = node.podbox_ok(&["exec", "s", "esc", "--", "grep", "NoNewPrivs", "/proc/self/status"]);
    assert!(esc.contains("0"), "{esc}");
    // The emptyDir belongs to the fsGroup and is set-gid: what the container made is the group's.
    assert_eq!(node.podbox_ok(&["exec", "s", "c", "--", "stat", "-c", "%a %g", "/data", "/data/mine"]), "2777 2000\n644 2000\n");
    // A read-only root file system, namespaced sysctls set in the pod's namespaces.
    let out = node.podbox(&["exec", "s", "c", "--", "touch", "/x"]);
    assert!(!out.status.success() && stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    assert_eq!(node.podbox_ok(&["exec", "s", "c", "--", "cat", "/proc/sys/kernel/shm_rmid_forced", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]), "1\n80\n");
    node.podbox_ok(&["pod", "rm", "-f", "s"]);
    // A sysctl of the whole node, and root under runAsNonRoot, are refused naming the field.
    for (from, to, want) in [
        ("kernel.shm_rmid_forced", "kernel.panic", "field spec.securityContext.sysctls[0].name"),
        ("runAsUser: 1000", "runAsUser: 0", "field spec.containers[0].securityContext.runAsNonRoot"),
    ] {
        let m = write_manifest(&node, "s.yaml", &std::fs::read_to_string(&m).unwrap().replace(from, to));
        let out = apply(&node, &m, &["--network", "none"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
        assert_no_pods(&node);
        std::fs::write(&m, std::fs::read_to_string(&m).unwrap().replace(to, from)).unwrap();
    }
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn gc_removes_the_volumes_and_staging_mounts_of_a_pod_whose_pause_died() {
    require_root!();
    let node = Node::new("v-gc");
    // A node directory mounted by subPath: its staging mount lies inside the pod's directory,
    // and removing that directory must never reach through it.
    let keep = node.dir.join("keep");
    std::fs::create_dir_all(keep.join("sub")).unwrap();
    std::fs::write(keep.join("sub/precious"), "node data\n").unwrap();
    let host = format!("host:hostPath={}:Directory", keep.display());
    node.podbox_ok(&["pod", "create", "p", "--network", "none", "--volume", "disk", "--volume", &host]);
    node.podbox_ok(&["pod", "create", "q", "--network", "none", "--volume", "mem:tmpfs:1Mi"]);
    node.podbox_ok(&["run", "--pod", "q", "--name", "c", "-d", "-v", "mem:/m", "--", "sleep", "1000"]);
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "-d", "--mount", "type=volume,src=disk,dst=/d,subpath=a/b", "--mount", "type=volume,src=host,dst=/h,subpath=sub", "--", "sleep", "1000"]);
    let v = json(&node.podbox_ok(&["pod", "inspect", "p"]));
    let dir = node.root.join("pods").join(v["id"].as_str().unwrap());
    let mounts = node.sh_ok("cat /proc/self/mountinfo");
    let q = json(&node.podbox_ok(&["pod", "inspect", "q"]));
    let qdir = node.root.join("pods").join(q["id"].as_str().unwrap());
    assert!(mounts.contains(&format!("{}/containers/c/subpaths/1 ", dir.display())), "{mounts}");
    assert!(mounts.contains(&format!("{}/volumes/mem ", qdir.display())), "{mounts}");
    // The node "crashes" for these pods: their pauses are killed, nothing of podbox runs.
    for pause in [&v["pause"]["pid"], &q["pause"]["pid"]] {
        node.sh_ok(&format!("kill -9 {pause}"));
        assert!(wait_until(5, || !node.sh(&format!("test -e /proc/{pause}")).status.success()));
    }
    let gc = node.podbox_ok(&["gc"]);
    assert!(gc.contains("removed pod p") && gc.contains("removed pod q"), "{gc}");
    assert!(!dir.exists() && !qdir.exists());
    assert_eq!(std::fs::read_to_string(keep.join("sub/precious")).unwrap(), "node data\n", "the removal reached into the node's directory");
    // The same for a container that ended and is removed with `rm`.
    node.podbox_ok(&["pod", "create", "p", "--network", "none", "--volume", &host]);
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--mount", "type=volume,src=host,dst=/h,subpath=sub", "--", "cat", "/h/precious"]);
    node.podbox_ok(&["rm", "p", "c"]);
    assert_eq!(std::fs::read_to_string(keep.join("sub/precious")).unwrap(), "node data\n", "rm reached into the node's directory");
    node.podbox_ok(&["pod", "rm", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn seccomp_localhost_profile_is_loaded_from_the_seccomp_root() {
    require_root!();
    let node = Node::new("v-seccomp");
    let root = node.dir.join("seccomp");
    std::fs::create_dir_all(root.join("profiles")).unwrap();
    std::fs::write(root.join("profiles/no-mkdir.json"), r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#).unwrap();
    let m = write_manifest(&node, "sc.yaml", r#"
metadata: {name: sc}
spec:
  securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/no-mkdir.json}}
  containers:
  - {name: local, command: [sleep, "1000"]}
  - {name: free, command: [sleep, "1000"], securityContext: {seccompProfile: {type: Unconfined}}}
"#);
    let seccomp_root = root.to_str().unwrap();
    let out = apply(&node, &m, &["--network", "none", "--seccomp-root", seccomp_root]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(5, || node.podbox(&["exec", "sc", "local", "--", "true"]).status.success()));
    let out = node.podbox(&["exec", "sc", "local", "--", "mkdir", "/tmp/d"]);
    assert!(!out.status.success() && stderr(&out).contains("Operation not permitted"), "{}", stderr(&out));
    assert!(node.podbox_ok(&["exec", "sc", "local", "--", "grep", "Seccomp:", "/proc/self/status"]).contains('2'));
    node.podbox_ok(&["exec", "sc", "free", "--", "mkdir", "/tmp/d"]);
    node.podbox_ok(&["pod", "rm", "-f", "sc"]);
    // A profile that is not there: an error naming the field, nothing created.
    let out = apply(&node, &m, &["--network", "none", "--seccomp-root", node.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("spec.containers[0].securityContext.seccompProfile.localhostProfile") && stderr(&out).contains("No such file"), "{}", stderr(&out));
    assert_no_pods(&node);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn host_to_container_propagation_shows_later_node_mounts_and_none_does_not() {
    require_root!();
    let node = Node::new("v-propagation");
    let shared = node.dir.join("shared");
    // A shared mount on the node, as /mnt or /media usually are (the node namespace itself is
    // private): what is mounted below it later propagates to its peers and slaves.
    node.sh_ok(&format!("mkdir -p {0} && mount --bind {0} {0} && mount --make-shared {0}", shared.display()));
    let m = write_manifest(&node, "p.yaml", &format!(r#"
metadata: {{name: p}}
spec:
  volumes: [{{name: h, hostPath: {{path: {}, type: Directory}}}}]
  containers:
  - name: follows
    command: [sleep, "1000"]
    volumeMounts: [{{name: h, mountPath: /h, mountPropagation: HostToContainer}}]
  - name: fixed
    command: [sleep, "1000"]
    volumeMounts: [{{name: h, mountPath: /h}}]
"#, shared.display()));
    let out = apply(&node, &m, &["--network", "none"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(wait_until(5, || node.podbox(&["exec", "p", "fixed", "--", "true"]).status.success()));
    node.sh_ok(&format!("mkdir -p {0}/later && mount -t tmpfs later {0}/later && echo mounted-later > {0}/later/f", shared.display()));
    assert_eq!(node.podbox_ok(&["exec", "p", "follows", "--", "cat", "/h/later/f"]), "mounted-later\n");
    let out = node.podbox(&["exec", "p", "fixed", "--", "cat", "/h/later/f"]);
    assert!(!out.status.success(), "a mount made on the node after the start reached a mountPropagation: None volume");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.sh_ok(&format!("umount {0}/later; umount {0}", shared.display()));
    node.assert_clean();
}
