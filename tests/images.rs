//! Images end to end: a real registry (Debian's docker-registry) on 127.0.0.1 inside each test's
//! node, images built here from the busybox rootfs as OCI layouts and pushed with skopeo, then
//! pulled, inspected, run, pruned by podbox. Everything lives in the node's temp dir.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Node, json, wait_until};
use serde_json::json as j;
use sha2::Digest as _;

const PORT: u16 = 5000;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// docker-registry running in a node.
struct Registry {
    storage: PathBuf,
    log: PathBuf,
    /// Its PID in the node's PID namespace.
    pid: String,
}

impl Registry {
    /// End it (by its PID) so that the node can be checked for leftovers.
    fn stop(&self, node: &Node) {
        node.sh_ok(&format!("kill {0}; while kill -0 {0} 2>/dev/null; do sleep 0.05; done", self.pid));
    }

    /// How often the blob `digest` was fetched (GET answered 200).
    fn blob_gets(&self, digest: &str) -> usize {
        std::fs::read_to_string(&self.log).unwrap().lines().filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest}")) && l.contains("\" 200 ")).count()
    }
}

/// Start docker-registry on 127.0.0.1:PORT in the node.
fn registry(node: &Node) -> Registry {
    registry_with(node, "")
}

/// ... with extra top-level config (e.g. an `auth:` section).
fn registry_with(node: &Node, extra: &str) -> Registry {
    registry_at(node, &format!("127.0.0.1:{PORT}"), extra)
}

fn registry_at(node: &Node, addr: &str, extra: &str) -> Registry {
    let storage = node.dir.join("registry");
    let log = node.dir.join("registry.log");
    let cfg = node.dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}", storage.display()),
    )
    .unwrap();
    let pid = node.sh_ok(&format!("docker-registry serve {} >{} 2>&1 & echo $!", cfg.display(), log.display())).trim().to_string();
    assert!(wait_until(20, || node.sh(&format!("curl -s -o /dev/null http://127.0.0.1:{PORT}/v2/")).status.success()), "registry did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    Registry { storage, log, pid }
}

/// An entry of a test layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    /// A file owned by uid/gid.
    Owned(&'a str, u32, u32, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// Raw name written into the header as is (escapes the tar crate's own checks).
    Raw(&'a [u8], &'a [u8]),
    /// A file (or with no data a directory) carrying an xattr in a PAX header.
    Xattr(&'a str, Option<&'a [u8]>, &'a str, &'a [u8]),
}

/// A PAX extended header record: "<len> key=value\n", len counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len += 1;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// An OCI image layout written by the test.
struct Layout {
    dir: PathBuf,
    refs: Vec<serde_json::Value>,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir, refs: vec![] }
    }

    fn blob(&self, b: &[u8]) -> (String, usize) {
        let d = sha(b);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        (d, b.len())
    }

    /// A layer from `entries` (and the tree `base`, if given): (descriptor JSON, diff ID).
    fn layer(&self, base: Option<&Path>, entries: &[E], compression: &str) -> (serde_json::Value, String) {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        if let Some(base) = base {
            b.append_dir_all(".", base).unwrap();
        }
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match e {
                E::Dir(p, mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, p, std::io::empty()).unwrap();
                }
                E::File(p, mode, data) | E::Owned(p, mode, _, _, data) => {
                    if let E::Owned(_, _, uid, gid, _) = e {
                        h.set_uid(*uid as u64);
                        h.set_gid(*gid as u64);
                    }
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, p, *data).unwrap();
                }
                E::Symlink(p, t) | E::Hardlink(p, t) => {
                    h.set_entry_type(if matches!(e, E::Symlink(..)) { tar::EntryType::Symlink } else { tar::EntryType::Link });
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, p, t).unwrap();
                }
                E::Xattr(p, data, name, value) => {
                    let rec = pax_record(&format!("SCHILY.xattr.{name}"), value);
                    let mut x = tar::Header::new_ustar();
                    x.set_entry_type(tar::EntryType::XHeader);
                    x.set_path("PaxHeader").unwrap();
                    x.set_mode(0o644);
                    x.set_size(rec.len() as u64);
                    x.set_cksum();
                    b.append(&x, &rec[..]).unwrap();
                    match data {
                        Some(d) => {
                            h.set_entry_type(tar::EntryType::Regular);
                            h.set_mode(0o644);
                            h.set_size(d.len() as u64);
                            b.append_data(&mut h, p, *d).unwrap();
                        }
                        None => {
                            h.set_entry_type(tar::EntryType::Directory);
                            h.set_mode(0o755);
                            h.set_size(0);
                            b.append_data(&mut h, p, std::io::empty()).unwrap();
                        }
                    }
                }
                E::Raw(name, data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_size(data.len() as u64);
                    h.as_old_mut().name[..name.len()].copy_from_slice(name);
                    h.set_cksum();
                    b.append(&h, *data).unwrap();
                }
            }
        }
        let tar = b.into_inner().unwrap();
        let diff = sha(&tar);
        let (blob, mt) = match compression {
            "gzip" => {
                let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(&tar).unwrap();
                (z.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
            }
            "zstd" => (zstd::encode_all(&tar[..], 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd"),
            _ => (tar, "application/vnd.oci.image.layer.v1.tar"),
        };
        let (d, size) = self.blob(&blob);
        (j!({"mediaType": mt, "digest": d, "size": size}), diff)
    }

    /// An image manifest over `layers`; returns its descriptor.
    fn image(&self, layers: &[(serde_json::Value, String)], config: serde_json::Value, arch: &str) -> serde_json::Value {
        let cfg = j!({
            "architecture": arch, "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
        });
        let (cd, cs) = self.blob(&serde_json::to_vec(&cfg).unwrap());
        let m = j!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
        });
        let (md, ms) = self.blob(&serde_json::to_vec(&m).unwrap());
        j!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms, "platform": {"architecture": arch, "os": "linux"}})
    }

    /// A multi-platform image index over `manifests`; returns its descriptor.
    fn index(&self, manifests: &[serde_json::Value]) -> serde_json::Value {
        let i = j!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let (d, s) = self.blob(&serde_json::to_vec(&i).unwrap());
        j!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d, "size": s})
    }

    fn tag(&mut self, desc: &serde_json::Value, tag: &str) {
        let mut d = desc.clone();
        d["annotations"] = j!({"org.opencontainers.image.ref.name": tag});
        self.refs.push(d);
        let idx = j!({"schemaVersion": 2, "manifests": self.refs});
        std::fs::write(self.dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    }
}

fn rootfs() -> &'static Path {
    common::rootfs()
}

const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
const GROUP: &[u8] = b"root:x:0:\napp:x:1000:\nstaff:x:50:app\n";

/// The test image: the busybox rootfs, then a layer with a user, files to be deleted, a setuid
/// file, a hard link, a symlink; then a zstd layer deleting a file and making a dir opaque.
fn app_layers(l: &Layout) -> Vec<(serde_json::Value, String)> {
    let base = l.layer(Some(rootfs()), &[], "gzip");
    let mid = l.layer(
        None,
        &[
            E::Dir("etc", 0o755),
            E::File("etc/passwd", 0o644, PASSWD),
            E::File("etc/group", 0o644, GROUP),
            E::Dir("opt", 0o755),
            E::File("opt/doomed", 0o644, b"delete me"),
            E::File("opt/keep", 0o644, b"kept"),
            E::File("opt/suid", 0o4755, b"#!/bin/sh\n"),
            E::File("opt/hl1", 0o644, b"linked"),
            E::Hardlink("opt/hl2", "opt/hl1"),
            E::Symlink("opt/link", "/opt/keep"),
            E::Dir("data", 0o755),
            E::Dir("data/old", 0o755),
            E::File("data/old/hidden", 0o644, b"from below"),
            E::Dir("work", 0o755),
            E::Owned("work/mine", 0o600, 1000, 1000, b"owned by app"),
        ],
        "gzip",
    );
    let top = l.layer(None, &[E::Dir("opt", 0o755), E::File("opt/.wh.doomed", 0o644, b""), E::Dir("data/old", 0o755), E::File("data/old/.wh..wh..opq", 0o644, b""), E::File("data/old/new", 0o644, b"on top")], "zstd");
    vec![base, mid, top]
}

fn app_config() -> serde_json::Value {
    j!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo cmd-ran; id -u; id -g; id -G; pwd; echo $GREETING"],
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"],
        "WorkingDir": "/work",
        "User": "app",
        "StopSignal": "SIGUSR1",
    })
}

fn push(node: &Node, layout: &Path, tag: &str, dest: &str, all: bool) {
    node.sh_ok(&format!(
        "skopeo copy -q --insecure-policy {} --dest-tls-verify=false oci:{}:{tag} docker://127.0.0.1:{PORT}/{dest}",
        if all { "--all" } else { "" },
        layout.display()
    ));
}

fn images_dir(node: &Node) -> PathBuf {
    node.dir.join("images")
}

fn entries(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn reg(path: &str) -> String {
    format!("127.0.0.1:{PORT}/{path}")
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pull_by_tag_and_digest_runs_with_the_image_config_layers_and_platform() {
    require_root!();
    let node = Node::new("img-pull");
    let registry = registry(&node);
    let mut l = Layout::new(node.dir.join("layout"));
    let layers = app_layers(&l);
    let app = l.image(&layers, app_config(), "amd64");
    l.tag(&app, "v1");
    // A multi-arch index: the arm64 image has a different top layer.
    let arm_top = l.layer(None, &[E::File("arch", 0o644, b"arm64\n")], "gzip");
    let amd_top = l.layer(None, &[E::File("arch", 0o644, b"amd64\n")], "gzip");
    let cfg = j!({"Cmd": ["cat", "/arch"]});
    let arm_top_digest = arm_top.0["digest"].as_str().unwrap().to_string();
    let arm = l.image(&[layers[0].clone(), arm_top], cfg.clone(), "arm64");
    let amd = l.image(&[layers[0].clone(), amd_top], cfg, "amd64");
    let idx = l.index(&[arm, amd.clone()]);
    l.tag(&idx, "multi");
    push(&node, &l.dir, "v1", "app:v1", false);
    push(&node, &l.dir, "multi", "multi:v1", true);

    // pull by tag: a line per layer, then the digest
    let out = node.podbox(&["image", "pull", &reg("app:v1")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let progress = String::from_utf8_lossy(&out.stderr);
    assert_eq!(progress.matches(": fetching").count(), 3, "{progress}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), app["digest"].as_str().unwrap());
    let ls = json(&node.podbox_ok(&["image", "ls", "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(ls[0]["names"][0], reg("app:v1"));
    assert_eq!(ls[0]["layers"], 3);
    let inspect = json(&node.podbox_ok(&["image", "inspect", &reg("app:v1")]));
    assert_eq!(inspect["digest"], app["digest"]);
    assert_eq!(inspect["layers"].as_array().unwrap().iter().map(|x| x["diff_id"].as_str().unwrap().to_string()).collect::<Vec<_>>(), layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>());
    assert_eq!(inspect["config"]["config"]["User"], "app");
    assert!(inspect["size"].as_u64().unwrap() > 500_000, "{inspect}");

    // run with the image's Entrypoint, Cmd, Env, WorkingDir and User (app = 1000:1000, + staff)
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "a", "--image", &reg("app:v1")]);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["cmd-ran", "1000", "1000", "1000 50", "/work", "hello"], "{out}");
    // the user's env wins; trailing args replace Cmd, keeping the Entrypoint (sh -c)
    let script = "echo $GREETING; ls /opt; stat -c '%a %U' /opt/suid; stat -c %h /opt/hl1; readlink /opt/link; ls /data/old; cat /work/mine; echo; test -c /opt/doomed || echo no-whiteout-device";
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "b", "--image", &reg("app:v1"), "-e", "GREETING=bye", "--", script]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["bye", "hl1", "hl2", "keep", "link", "suid", "4755 root", "2", "/opt/keep", "new", "owned by app", "no-whiteout-device"],
        "{out}"
    );
    // --entrypoint replaces the Entrypoint and drops the image's Cmd
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--image", &reg("app:v1"), "--entrypoint", "pwd"]);
    assert_eq!(out.trim(), "/work");
    // The container wrote nothing into the store.
    node.podbox_ok(&["run", "--pod", "p", "--name", "w", "--image", &reg("app:v1"), "-u", "0", "--", "echo x > /work/new-file; id -u"]);
    let layer_dirs = entries(&images_dir(&node).join("layers"));
    assert!(layer_dirs.iter().all(|d| !images_dir(&node).join("layers").join(d).join("work/new-file").exists()));
    // StopSignal is recorded for stop
    node.podbox_ok(&["run", "--pod", "p", "--name", "s", "-d", "--image", &reg("app:v1"), "--", "trap 'echo got-usr1; exit 0' USR1; while :; do sleep 0.1; done"]);
    std::thread::sleep(Duration::from_millis(500));
    node.podbox_ok(&["stop", "p", "s", "-t", "5"]);
    assert!(node.podbox_ok(&["logs", "p", "s"]).contains("got-usr1"));

    // pull by digest: nothing is fetched again (same blobs), the name carries the digest
    let by_digest = format!("{}@{}", reg("app"), app["digest"].as_str().unwrap());
    let out = node.podbox(&["image", "pull", &by_digest]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).matches(": already present").count(), 3, "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "d", "--image", &by_digest, "--", "cat /opt/keep"]);
    assert_eq!(out.trim(), "kept");

    // the multi-arch index resolves to this machine's amd64 image
    let out = node.podbox(&["image", "pull", "--json", &reg("multi:v1")]);
    assert!(out.status.success());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(json).collect();
    assert_eq!(events[0]["event"], "index");
    assert_eq!(events[0]["manifest"], amd["digest"]);
    assert_eq!(events.last().unwrap()["event"], "done");
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "m", "--image", &reg("multi:v1")]);
    assert_eq!(out.trim(), "amd64");
    // the base layer is stored once for all three images; arm64's own layer was never fetched
    assert_eq!(entries(&images_dir(&node).join("layers")).len(), 4);
    assert!(!entries(&images_dir(&node).join("blobs/sha256")).contains(&arm_top_digest[7..].to_string()));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    registry.stop(&node);
    node.assert_clean();
}

/// Slow the node's loopback down (inside the node's own network namespace only).
fn throttle(node: &Node, rate: Option<&str>) {
    match rate {
        // tbf: a burst above loopback's 64 KiB MTU, or large packets are never sent.
        Some(r) => node.sh_ok(&format!("tc qdisc replace dev lo root tbf rate {r} burst 256kb latency 2s")),
        None => node.sh_ok("tc qdisc del dev lo root"),
    };
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn concurrent_pulls_fetch_shared_blobs_once_and_a_killed_pull_leaves_only_what_gc_removes() {
    require_root!();
    let node = Node::new("img-conc");
    let registry = registry(&node);
    let mut l = Layout::new(node.dir.join("layout"));
    let base = l.layer(Some(rootfs()), &[], "gzip");
    let shared = l.layer(None, &[E::File("shared", 0o644, b"shared\n")], "gzip");
    let one_top = l.layer(None, &[E::File("who", 0o644, b"one\n")], "gzip");
    let two_top = l.layer(None, &[E::File("who", 0o644, b"two\n")], "zstd");
    let one = l.image(&[base.clone(), shared.clone(), one_top.clone()], j!({"Cmd": ["cat", "/who", "/shared"]}), "amd64");
    let two = l.image(&[base.clone(), shared.clone(), two_top.clone()], j!({"Cmd": ["cat", "/who", "/shared"]}), "amd64");
    l.tag(&one, "one");
    l.tag(&two, "two");
    // A big incompressible layer for the pull that gets killed.
    let mut noise = vec![0u8; 6 << 20];
    std::fs::File::open("/dev/urandom").unwrap().read_exact_into(&mut noise);
    let big_layer = l.layer(None, &[E::File("noise", 0o644, &noise)], "tar");
    let big = l.image(&[base.clone(), big_layer.clone()], j!({"Cmd": ["true"]}), "amd64");
    l.tag(&big, "big");
    push(&node, &l.dir, "one", "one:v1", false);
    push(&node, &l.dir, "two", "two:v1", false);
    push(&node, &l.dir, "big", "big:v1", false);

    // Two pulls at once (loopback slowed so that they overlap on the shared blobs).
    throttle(&node, Some("40mbit"));
    let a = node.podbox_spawn(&["image", "pull", "-q", &reg("one:v1")]);
    let b = node.podbox_spawn(&["image", "pull", "-q", &reg("two:v1")]);
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for (what, d) in [("base", &base), ("shared", &shared), ("one", &one_top), ("two", &two_top)] {
        assert_eq!(registry.blob_gets(d.0["digest"].as_str().unwrap()), 1, "blob {what} fetched more or less than once");
    }
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "one", "--image", &reg("one:v1")]), "one\nshared\n");
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "two", "--image", &reg("two:v1")]), "two\nshared\n");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);

    // A pull SIGKILLed in the middle of a layer leaves temporary files only; gc removes them.
    throttle(&node, Some("8mbit"));
    let store = images_dir(&node);
    let before_blobs = entries(&store.join("blobs/sha256"));
    let before_layers = entries(&store.join("layers"));
    let child = node.podbox_spawn(&["image", "pull", "-q", &reg("big:v1")]);
    let partial = || entries(&store.join("tmp")).iter().any(|f| f.starts_with("blob-") && std::fs::metadata(store.join("tmp").join(f)).is_ok_and(|m| m.len() > 256 << 10));
    assert!(wait_until(30, partial), "no partial download seen");
    let nsenter = child.id() as i32;
    let podbox: i32 = std::fs::read_to_string(format!("/proc/{nsenter}/task/{nsenter}/children")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill takes no pointers; podbox is the PID of the pull we spawned.
    unsafe { libc::kill(podbox, libc::SIGKILL) };
    let _ = child.wait_with_output();
    assert!(!entries(&store.join("tmp")).is_empty(), "the killed pull left nothing to clean (was it killed mid-layer?)");
    let gc = json(&node.podbox_ok(&["gc", "--json"]));
    assert!(gc["image_temporaries_removed"].as_u64().unwrap() >= 1, "{gc}");
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
    assert_eq!(entries(&store.join("locks")), vec!["index.lock", "store.lock"]);
    assert_eq!(entries(&store.join("blobs/sha256")), before_blobs, "a partial blob was stored");
    assert_eq!(entries(&store.join("layers")), before_layers);
    assert!(!node.podbox_ok(&["image", "ls"]).contains("big"));
    // ... and the pull can be done again.
    throttle(&node, None);
    node.podbox_ok(&["image", "pull", "-q", &reg("big:v1")]);
    registry.stop(&node);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_corrupted_blob_is_a_digest_mismatch_and_stores_nothing() {
    require_root!();
    let node = Node::new("img-corrupt");
    let registry = registry(&node);
    let mut l = Layout::new(node.dir.join("layout"));
    let base = l.layer(None, &[E::File("hello", 0o644, b"hello\n")], "gzip");
    let bad = l.layer(None, &[E::File("payload", 0o644, &[7u8; 4096])], "gzip");
    let img = l.image(&[base, bad.clone()], j!({"Cmd": ["true"]}), "amd64");
    l.tag(&img, "v1");
    push(&node, &l.dir, "v1", "bad:v1", false);
    let d = bad.0["digest"].as_str().unwrap();
    let data = registry.storage.join(format!("docker/registry/v2/blobs/sha256/{}/{}/data", &d[7..9], &d[7..]));
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let out = node.podbox(&["image", "pull", "-q", &reg("bad:v1")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("digest mismatch") && err.contains(d), "{err}");
    let store = images_dir(&node);
    assert!(!entries(&store.join("blobs/sha256")).contains(&d[7..].to_string()), "the corrupt blob was stored");
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
    assert_eq!(node.podbox_ok(&["image", "ls", "--json"]).trim(), "[]");
    registry.stop(&node);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn layers_that_escape_are_refused() {
    require_root!();
    let node = Node::new("img-escape");
    let registry = registry(&node);
    let mut l = Layout::new(node.dir.join("layout"));
    let outside = node.dir.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let abs = format!("{}/abs-escape", outside.display());
    let target = outside.display().to_string();
    let cases: Vec<(&str, Vec<E>, &str)> = vec![
        ("dotdot", vec![E::Raw(b"../../../outside/dotdot-escape", b"x")], "'..'"),
        ("abs", vec![E::Raw(abs.as_bytes(), b"x")], "absolute path"),
        ("symlink", vec![E::Symlink("evil", &target), E::File("evil/planted", 0o644, b"x")], "symlink"),
    ];
    for (tag, layer_entries, _) in &cases {
        let base = l.layer(None, &[E::File("ok", 0o644, b"ok")], "gzip");
        let evil = l.layer(None, layer_entries, "gzip");
        let img = l.image(&[base, evil], j!({"Cmd": ["true"]}), "amd64");
        l.tag(&img, tag);
        push(&node, &l.dir, tag, &format!("evil:{tag}"), false);
    }
    for (tag, _, why) in &cases {
        let out = node.podbox(&["image", "pull", "-q", &reg(&format!("evil:{tag}"))]);
        assert!(!out.status.success(), "{tag} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refused") && err.contains(why), "{tag}: {err}");
    }
    assert_eq!(entries(&outside), Vec::<String>::new(), "something was written outside the layer");
    let store = images_dir(&node);
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
    assert_eq!(entries(&store.join("layers")).len(), 1, "only the harmless base layer is unpacked");
    assert_eq!(node.podbox_ok(&["image", "ls", "--json"]).trim(), "[]");
    registry.stop(&node);
    node.assert_clean();
}

trait ReadExact {
    fn read_exact_into(&mut self, buf: &mut [u8]);
}

impl ReadExact for std::fs::File {
    fn read_exact_into(&mut self, buf: &mut [u8]) {
        std::io::Read::read_exact(self, buf).unwrap();
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn image_rm_refuses_an_image_in_use_and_prune_frees_exactly_unreferenced_layers() {
    require_root!();
    let node = Node::new("img-prune");
    let other = node.dir.join("other");
    node.sh_ok(&format!("cp -a {} {} && echo other > {}/other", rootfs().display(), other.display(), other.display()));
    node.podbox_ok(&["image", "import", rootfs().to_str().unwrap(), "busybox"]);
    node.podbox_ok(&["image", "import", other.to_str().unwrap(), "other:v2"]);
    let layer = |name: &str| json(&node.podbox_ok(&["image", "inspect", name]))["layers"][0]["diff_id"].as_str().unwrap().to_string();
    let (bb, ot) = (layer("busybox"), layer("localhost/other:v2"));
    assert_ne!(bb, ot);
    let layers = || entries(&images_dir(&node).join("layers")).into_iter().map(|h| format!("sha256:{h}")).collect::<Vec<_>>();
    let mut both = vec![bb.clone(), ot.clone()];
    both.sort();
    assert_eq!(layers(), both);

    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "-d", "--image", "busybox", "--", "sleep", "1000"]);
    let out = node.podbox(&["image", "rm", "busybox"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("used by container(s) p/c"), "{}", String::from_utf8_lossy(&out.stderr));
    // Nothing to prune while both are named.
    assert_eq!(json(&node.podbox_ok(&["image", "prune", "--json"]))["layers"], j!([]));
    node.podbox_ok(&["image", "rm", "other:v2"]);
    let r = json(&node.podbox_ok(&["image", "prune", "--json"]));
    assert_eq!(r["layers"], j!([ot]), "{r}");
    assert_eq!(r["blobs"].as_array().unwrap().len(), 3, "layer, config and manifest of other: {r}");
    assert_eq!(layers(), vec![bb.clone()]);
    // -f untags an image in use; its layers stay while the container exists.
    node.podbox_ok(&["image", "rm", "-f", "busybox"]);
    assert_eq!(node.podbox_ok(&["image", "ls", "--json"]).trim(), "[]");
    assert_eq!(json(&node.podbox_ok(&["image", "prune", "--json"]))["layers"], j!([]));
    assert_eq!(node.podbox_ok(&["exec", "p", "c", "--", "cat", "/etc/podbox-release"]).lines().count(), 1);
    node.podbox_ok(&["rm", "-f", "p", "c"]);
    let r = json(&node.podbox_ok(&["image", "prune", "--json"]));
    assert_eq!(r["layers"], j!([bb]), "{r}");
    assert_eq!(layers(), Vec::<String>::new());
    assert_eq!(entries(&images_dir(&node).join("blobs/sha256")), Vec::<String>::new());
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pod_apply_runs_images_with_each_pull_policy() {
    require_root!();
    let node = Node::new("img-apply");
    let registry = registry(&node);
    let mut l = Layout::new(node.dir.join("layout"));
    let base = l.layer(Some(rootfs()), &[], "gzip");
    let a = l.image(&[base.clone(), l.layer(None, &[E::File("v", 0o644, b"A\n")], "gzip")], j!({"Entrypoint": ["cat"], "Cmd": ["/v"]}), "amd64");
    let b = l.image(&[base.clone(), l.layer(None, &[E::File("v", 0o644, b"B\n")], "gzip")], j!({"Entrypoint": ["cat"], "Cmd": ["/v"]}), "amd64");
    l.tag(&a, "a");
    l.tag(&b, "b");
    push(&node, &l.dir, "a", "app:v1", false);
    let apply_code = |pod: &str, image: &str, policy: Option<&str>, code: i32| {
        let m = node.dir.join(format!("{pod}.yaml"));
        let policy = policy.map(|p| format!("\n    imagePullPolicy: {p}")).unwrap_or_default();
        std::fs::write(&m, format!("metadata: {{name: {pod}}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: {image}{policy}\n")).unwrap();
        let out = node.podbox(&["pod", "apply", "-f", m.to_str().unwrap(), "--network", "none"]);
        assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let apply = |pod: &str, image: &str, policy: Option<&str>| apply_code(pod, image, policy, 0);
    let output = |pod: &str| {
        assert!(wait_until(10, || !node.podbox_ok(&["logs", pod, "c"]).is_empty()), "no output from {pod}");
        node.podbox_ok(&["logs", pod, "c"]).trim().to_string()
    };
    let manifest_gets = || std::fs::read_to_string(&registry.log).unwrap().lines().filter(|l| l.contains("\"GET /v2/app/manifests/")).count();

    // Never: not in the store -> the container is not created (the pod stays, as in Kubernetes;
    // apply says so with exit 1)
    let err = apply_code("never", &reg("app:v1"), Some("Never"), 1);
    assert!(err.contains("imagePullPolicy is Never"), "{err}");
    assert!(!node.podbox_ok(&["ps", "--pod", "never"]).contains(" c "));
    assert_eq!(manifest_gets(), 0);
    // IfNotPresent: pulled once
    apply("ifnp", &reg("app:v1"), Some("IfNotPresent"));
    assert_eq!(output("ifnp"), "A");
    // the tag moves to B in the registry
    push(&node, &l.dir, "b", "app:v1", false);
    let gets = manifest_gets();
    apply("ifnp2", &reg("app:v1"), Some("IfNotPresent"));
    assert_eq!(output("ifnp2"), "A", "IfNotPresent pulled again");
    apply("never2", &reg("app:v1"), Some("Never"));
    assert_eq!(output("never2"), "A");
    assert_eq!(manifest_gets(), gets, "the registry was asked although the image is present");
    // Always: pulled again, the new content runs
    apply("always", &reg("app:v1"), Some("Always"));
    assert_eq!(output("always"), "B");
    // default policy: `:latest` (or no tag) means Always, another tag IfNotPresent
    push(&node, &l.dir, "a", "app:latest", false);
    apply("dflt", &reg("app"), None);
    assert_eq!(output("dflt"), "A");
    push(&node, &l.dir, "b", "app:latest", false);
    apply("dflt2", &reg("app"), None);
    assert_eq!(output("dflt2"), "B", ":latest was not pulled again");
    let gets = manifest_gets();
    apply("dflt3", &reg("app:v1"), None);
    assert_eq!(manifest_gets(), gets, "a non-latest tag present in the store was pulled");
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    registry.stop(&node);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn load_reads_oci_layouts_and_docker_archives() {
    require_root!();
    let node = Node::new("img-load");
    let mut l = Layout::new(node.dir.join("layout"));
    let base = l.layer(Some(rootfs()), &[], "gzip");
    let top = l.layer(None, &[E::File("hello", 0o644, b"loaded\n")], "gzip");
    let img = l.image(&[base, top.clone()], j!({"Cmd": ["cat", "/hello"], "Env": ["PATH=/bin"]}), "amd64");
    l.tag(&img, "v1");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    // an OCI layout directory: a bare tag names localhost/<dir>:<tag>
    let out = node.podbox_ok(&["image", "load", "-i", l.dir.to_str().unwrap()]);
    assert!(out.contains("localhost/layout:v1"), "{out}");
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "a", "--image", "localhost/layout:v1"]), "loaded\n");
    // the same layout as a tar
    let tar = node.dir.join("layout.tar");
    node.sh_ok(&format!("tar -C {} -cf {} .", l.dir.display(), tar.display()));
    node.podbox_ok(&["image", "load", "-i", tar.to_str().unwrap(), "--name", "fromtar:v1"]);
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "b", "--image", "fromtar:v1"]), "loaded\n");
    // a docker-archive (docker save format) written by skopeo
    let archive = node.dir.join("docker.tar");
    node.sh_ok(&format!("skopeo copy -q --insecure-policy oci:{}:v1 docker-archive:{}:localhost/dockerapp:v1", l.dir.display(), archive.display()));
    let out = node.podbox_ok(&["image", "load", "-i", archive.to_str().unwrap(), "--json"]);
    assert_eq!(json(out.trim())["name"], "localhost/dockerapp:v1");
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--image", "dockerapp:v1"]), "loaded\n");
    // every layer is stored once, whatever the source
    assert_eq!(entries(&images_dir(&node).join("layers")).len(), 2);
    // a layout with a corrupt layer blob loads nothing
    let d = top.0["digest"].as_str().unwrap();
    let blob = l.dir.join("blobs/sha256").join(&d[7..]);
    let mut b = std::fs::read(&blob).unwrap();
    b[10] ^= 0xff;
    std::fs::write(&blob, b).unwrap();
    node.podbox_ok(&["image", "rm", "-f", "localhost/layout:v1", "fromtar:v1", "dockerapp:v1"]);
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.podbox_ok(&["image", "prune"]);
    let out = node.podbox(&["image", "load", "-i", l.dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("digest mismatch"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.podbox_ok(&["image", "ls", "--json"]).trim(), "[]");
    assert!(!entries(&images_dir(&node).join("blobs/sha256")).contains(&d[7..].to_string()));
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pull_with_bearer_token_auth_needs_the_credentials() {
    require_root!();
    let node = Node::new("img-auth");
    // The registry challenges with Bearer (its "silly" auth); the token endpoint is busybox httpd
    // on 127.0.0.1:5001 that wants basic auth user:secret.
    let www = node.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("token"), r#"{"token":"t0k3n"}"#).unwrap();
    std::fs::write(node.dir.join("httpd.conf"), "/token:user:secret\n").unwrap();
    let httpd = node.sh_ok(&format!("{}/bin/busybox httpd -f -p 127.0.0.1:5001 -h {} -c {}/httpd.conf >/dev/null 2>&1 & echo $!", rootfs().display(), www.display(), node.dir.display())).trim().to_string();
    let registry = registry_with(&node, "auth:\n  silly:\n    realm: http://127.0.0.1:5001/token\n    service: test\n");
    let mut l = Layout::new(node.dir.join("layout"));
    let img = l.image(&[l.layer(Some(rootfs()), &[], "gzip")], j!({"Cmd": ["echo", "authorized"]}), "amd64");
    l.tag(&img, "v1");
    node.sh_ok(&format!("skopeo copy -q --insecure-policy --dest-creds user:secret --dest-tls-verify=false oci:{}:v1 docker://127.0.0.1:{PORT}/private:v1", l.dir.display()));

    let out = node.podbox(&["image", "pull", "-q", &reg("private:v1")]);
    assert!(!out.status.success(), "pulled without credentials");
    assert!(String::from_utf8_lossy(&out.stderr).contains("token from http://127.0.0.1:5001/token: HTTP 401"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.podbox(&["image", "pull", "-q", "--creds", "user:wrong", &reg("private:v1")]);
    assert!(!out.status.success(), "pulled with wrong credentials");
    node.podbox_ok(&["image", "pull", "-q", "--creds", "user:secret", &reg("private:v1")]);
    // the same from a docker-style auth.json
    node.podbox_ok(&["image", "rm", &reg("private:v1")]);
    node.podbox_ok(&["image", "prune"]);
    let authfile = node.dir.join("auth.json");
    std::fs::write(&authfile, format!(r#"{{"auths": {{"127.0.0.1:{PORT}": {{"auth": "dXNlcjpzZWNyZXQ="}}}}}}"#)).unwrap();
    node.podbox_ok(&["image", "pull", "-q", "--authfile", authfile.to_str().unwrap(), &reg("private:v1")]);
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--image", &reg("private:v1")]), "authorized\n");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.sh_ok(&format!("kill {httpd}"));
    registry.stop(&node);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn mirrors_and_insecure_registries_come_from_registries_conf() {
    require_root!();
    let node = Node::new("img-mirror");
    // A non-loopback address of the node (on a veth pair inside it); the registry listens on
    // every address of the node.
    node.sh_ok("ip link add v0 type veth peer name v1 && ip addr add 10.99.0.1/32 dev v0 && ip link set v1 up && ip link set v0 up");
    let registry = registry_at(&node, &format!(":{PORT}"), "");
    let mut l = Layout::new(node.dir.join("layout"));
    let img = l.image(&[l.layer(Some(rootfs()), &[], "gzip")], j!({"Cmd": ["echo", "from-the-mirror"]}), "amd64");
    l.tag(&img, "v1");
    push(&node, &l.dir, "v1", "hub/library/busybox:latest", false);
    push(&node, &l.dir, "v1", "app:v1", false);
    let conf = node.dir.join("registries.conf");
    let pull = |args: &[&str]| {
        let mut a = vec!["image", "pull", "-q", "--registries-conf", conf.to_str().unwrap()];
        a.extend_from_slice(args);
        node.podbox(&a)
    };
    // Without configuration a non-loopback registry is spoken to over TLS only, and a Docker Hub
    // name goes to Docker Hub (whose name does not even resolve in the node).
    std::fs::write(&conf, "").unwrap();
    let out = pull(&["10.99.0.1:5000/app:v1"]);
    assert!(!out.status.success(), "plain HTTP to a registry not named insecure");
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://10.99.0.1:5000"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!pull(&["busybox"]).status.success());
    // insecure = true allows plain HTTP; a mirror serves docker.io (the air-gapped node's case).
    std::fs::write(
        &conf,
        format!("[[registry]]\nlocation = \"10.99.0.1:{PORT}\"\ninsecure = true\n\n[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"127.0.0.1:{PORT}/hub\"\n"),
    )
    .unwrap();
    assert!(pull(&["10.99.0.1:5000/app:v1"]).status.success());
    assert!(pull(&["busybox"]).status.success());
    let ls = node.podbox_ok(&["image", "ls"]);
    assert!(ls.contains("docker.io/library/busybox:latest") && ls.contains("10.99.0.1:5000/app:v1"), "{ls}");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--image", "busybox", "--pull", "Never"]), "from-the-mirror\n");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    registry.stop(&node);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn an_image_with_more_layers_than_a_page_of_mount_options_runs() {
    require_root!();
    let node = Node::new("img-many");
    let mut l = Layout::new(node.dir.join("many"));
    // 50 layers: their absolute paths (~110 bytes each here) overflow the kernel's one page of
    // overlay mount options; every layer leaves a file, and each overwrites /top.
    let mut layers = vec![l.layer(Some(rootfs()), &[], "gzip")];
    for i in 1..50 {
        let name = format!("f{i}");
        let body = format!("{i}\n");
        layers.push(l.layer(None, &[E::File(&name, 0o644, body.as_bytes()), E::File("top", 0o644, body.as_bytes())], "gzip"));
    }
    let img = l.image(&layers, j!({"Cmd": ["sh", "-c", "cat /top; ls / | grep -c '^f'"]}), "amd64");
    l.tag(&img, "v1");
    node.podbox_ok(&["image", "load", "-i", l.dir.to_str().unwrap()]);
    let store_layers = images_dir(&node).join("layers");
    let total: usize = entries(&store_layers).iter().map(|e| store_layers.join(e).to_string_lossy().len() + 1).sum();
    assert!(total > 4096, "the test needs more than a page of lowerdirs ({total} bytes)");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--image", "localhost/many:v1"]), "49\n49\n");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pull_with_basic_auth_needs_the_credentials() {
    require_root!();
    let node = Node::new("img-basic");
    // bcrypt of "secret" (docker-registry's htpasswd auth answers with a Basic challenge)
    let htpasswd = node.dir.join("htpasswd");
    std::fs::write(&htpasswd, "user:$2b$05$4BH99NSekU8QOtfI9k4Ltu4YysNlyvkU0qD8i9CHWbKEyAr1iMCDm\n").unwrap();
    let registry = registry_with(&node, &format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", htpasswd.display()));
    let mut l = Layout::new(node.dir.join("layout"));
    let img = l.image(&[l.layer(Some(rootfs()), &[], "gzip")], j!({"Cmd": ["echo", "basic"]}), "amd64");
    l.tag(&img, "v1");
    node.sh_ok(&format!("skopeo copy -q --insecure-policy --dest-creds user:secret --dest-tls-verify=false oci:{}:v1 docker://127.0.0.1:{PORT}/private:v1", l.dir.display()));
    let out = node.podbox(&["image", "pull", "-q", &reg("private:v1")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs credentials (basic auth)"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = node.podbox(&["image", "pull", "-q", "--creds", "user:wrong", &reg("private:v1")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("access denied"), "{}", String::from_utf8_lossy(&out.stderr));
    node.podbox_ok(&["image", "pull", "-q", "--creds", "user:secret", &reg("private:v1")]);
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--image", &reg("private:v1")]), "basic\n");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    registry.stop(&node);
    node.assert_clean();
}

/// An xattr of a file, not following symlinks.
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: p and n are NUL-terminated; buf is a live buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn layer_xattrs_are_kept_but_not_overlayfs_own() {
    require_root!();
    let node = Node::new("img-xattr");
    let mut l = Layout::new(node.dir.join("xattr"));
    let base = l.layer(Some(rootfs()), &[E::Dir("d", 0o755), E::File("d/from-below", 0o644, b"below")], "gzip");
    let top = l.layer(None, &[E::Xattr("x", Some(b"data"), "user.podbox", b"kept"), E::Xattr("d", None, "trusted.overlay.opaque", b"y")], "gzip");
    let img = l.image(&[base, top.clone()], j!({"Cmd": ["ls", "/d"]}), "amd64");
    l.tag(&img, "v1");
    node.podbox_ok(&["image", "load", "-i", l.dir.to_str().unwrap()]);
    let dir = images_dir(&node).join("layers").join(&top.1[7..]);
    assert_eq!(xattr(&dir.join("x"), "user.podbox").as_deref(), Some(&b"kept"[..]));
    assert_eq!(xattr(&dir.join("d"), "trusted.overlay.opaque"), None, "a layer set overlayfs' own xattr");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--image", "localhost/xattr:v1"]), "from-below\n");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}
