//! Test harness: a throwaway *node* — new network, PID, mount, UTS and IPC namespaces whose init is podbox's
//! pause (so orphans are reaped even where the machine's PID 1 does not) — and helpers to run
//! podbox and shell commands inside it. Dropping a `Node` removes every pod through podbox, then
//! kills the node's init by PID, which makes the kernel end everything left in it.
#![allow(dead_code)]

pub mod oci;

pub mod scenario;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PODBOX: &str = env!("CARGO_BIN_EXE_podbox");

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Fail a root-only test that was run (--include-ignored) without root.
#[macro_export]
macro_rules! require_root {
    () => {
        // Root-only tests are #[ignore]d, so that `cargo test` as another user reports them as
        // ignored, not passed; run with --include-ignored without root, they fail here.
        assert!(common::is_root(), "this test needs root: run it as root (scripts/test.sh)");
    };
}

pub struct Node {
    pub name: String,
    /// PID (in the machine's PID namespace) of the node's init.
    pub init_pid: i32,
    /// The node's podbox state root.
    pub root: PathBuf,
    pub dir: PathBuf,
    unshare: Child,
}

pub fn tempdir(prefix: &str) -> PathBuf {
    let base = std::env::var("PODBOX_TEST_TMP").unwrap_or_else(|_| "/tmp".into());
    let n: u64 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let p = PathBuf::from(base).join(format!("{prefix}-{}-{:x}", std::process::id(), n & 0xffffff));
    std::fs::create_dir_all(&p).unwrap();
    p
}

impl Node {
    pub fn new(name: &str) -> Node {
        let dir = tempdir(&format!("podbox-node-{name}"));
        let root = dir.join("root");
        let unshare = Command::new("unshare")
            .args(["--fork", "--pid", "--mount", "--mount-proc", "--net", "--uts", "--ipc", "--propagation", "private", "--"])
            .arg(PODBOX)
            .arg("pause")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        // The init is the only child of unshare.
        let deadline = Instant::now() + Duration::from_secs(5);
        let init_pid = loop {
            let children = std::fs::read_to_string(format!("/proc/{}/task/{}/children", unshare.id(), unshare.id())).unwrap_or_default();
            if let Some(p) = children.split_whitespace().next() {
                let p: i32 = p.parse().unwrap();
                // wait until it has exec'd the pause (its ns are then final)
                let exe = std::fs::read_link(format!("/proc/{p}/exe")).map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
                if exe.contains("pause") { break p; }
            }
            assert!(Instant::now() < deadline, "node {name}: init did not start");
            std::thread::sleep(Duration::from_millis(5));
        };
        let node = Node { name: name.into(), init_pid, root, dir, unshare };
        node.sh_ok("ip link set lo up");
        node
    }

    /// The node's network namespace as a path others can enter.
    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.init_pid)
    }

    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(self.init_pid.to_string()).args(["--net", "--pid", "--mount", "--uts", "--ipc", "--"]);
        c.env("PODBOX_ROOT", &self.root);
        // Containers without an image run from the source tree's busybox rootfs; images live in
        // the node's temp dir and go with it.
        c.env("PODBOX_ROOTFS", rootfs());
        c.env("PODBOX_IMAGES", self.dir.join("images"));
        c
    }

    /// Run `c` to completion and collect its output, but never for longer than
    /// `PODBOX_TEST_CMD_TIMEOUT` seconds (default 240): past that a watchdog kills every process
    /// in the node except its init — which also closes any pipe a stray daemon held — and the
    /// test fails naming the command, instead of hanging the whole suite.
    fn output_within_deadline(&self, mut c: Command, what: &str) -> Output {
        let secs = std::env::var("PODBOX_TEST_CMD_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(240);
        let (done, watch) = std::sync::mpsc::channel::<()>();
        let init_pid = self.init_pid;
        let fired = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fired2 = fired.clone();
        let watchdog = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(Duration::from_secs(secs)) {
                fired2.store(true, std::sync::atomic::Ordering::SeqCst);
                // Processes may fork while we kill: sweep until only the init is left.
                for _ in 0..50 {
                    let left = node_processes(init_pid);
                    thaw(&left);
                    if left.is_empty() { break; }
                    for pid in left { unsafe { libc::kill(pid, libc::SIGKILL) }; }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        let out = c.stdout(Stdio::piped()).stderr(Stdio::piped()).output();
        let _ = done.send(());
        let _ = watchdog.join();
        let out = out.unwrap_or_else(|e| panic!("[{}] cannot run {what}: {e}", self.name));
        log_output(&format!("[{}] {what}", self.name), &out);
        assert!(!fired.load(std::sync::atomic::Ordering::SeqCst), "[{}] {what}: did not finish within {secs} s; killed everything in the node", self.name);
        out
    }

    /// Run podbox inside the node with this node's state root.
    pub fn podbox(&self, args: &[&str]) -> Output {
        let mut c = self.enter();
        c.arg(PODBOX).arg("--root").arg(&self.root).args(args).stdin(Stdio::null());
        self.output_within_deadline(c, &format!("podbox {}", args.join(" ")))
    }

    /// Like `podbox` but panics unless it exits 0; returns stdout.
    pub fn podbox_ok(&self, args: &[&str]) -> String {
        let out = self.podbox(args);
        assert!(out.status.success(), "podbox {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Spawn podbox inside the node without waiting.
    pub fn podbox_spawn(&self, args: &[&str]) -> Child {
        let mut c = self.enter();
        c.arg(PODBOX).arg("--root").arg(&self.root).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("spawn podbox")
    }

    /// Run a shell command inside the node's namespaces.
    pub fn sh(&self, script: &str) -> Output {
        let mut c = self.enter();
        c.args(["sh", "-c", script]).stdin(Stdio::null());
        self.output_within_deadline(c, &format!("$ {script}"))
    }

    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "`{script}` failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every process left in the node: the descendants of its init (orphans are reparented to
    /// it), as "PID(machine numbering) STATE cmdline". Read from the machine's /proc, so the
    /// listing itself adds no process.
    pub fn processes(&self) -> Vec<String> {
        let mut out: Vec<String> = descendants(&[self.init_pid])
            .into_iter()
            .map(|(pid, state)| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!("{pid} {state} {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        out.sort();
        out
    }

    /// Assert podbox left nothing in the node: no processes, no mounts under the root, no state.
    pub fn assert_clean(&self) {
        // podbox-cni's DEL leaves the kernel's slow veth unregister to a detached child that ends
        // by itself (src/network/cni/plugin/retire.rs); give such children a bounded time to end,
        // nothing else. One caught while it exits has no command line any more ("PID D "): its
        // memory is gone, the kernel is finishing its exit (closing its netlink socket, say).
        let ending = |p: &String| p.contains("podbox-cni") || p.split(' ').nth(2).is_some_and(str::is_empty);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut procs = self.processes();
        while !procs.is_empty() && procs.iter().all(ending) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            procs = self.processes();
        }
        assert!(procs.is_empty(), "processes left in node {}: {procs:?}", self.name);
        let mounts = self.sh_ok("cat /proc/self/mountinfo");
        let root = self.root.to_string_lossy();
        let left: Vec<_> = mounts.lines().filter(|l| l.contains(&*root)).collect();
        assert!(left.is_empty(), "mounts left under {root}: {left:?}");
        let pods = self.root.join("pods");
        if pods.exists() {
            let n = std::fs::read_dir(&pods).unwrap().count();
            assert_eq!(n, 0, "pod state left under {}", pods.display());
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Remove pods through podbox first (that is what is under test) ...
        let _ = self.enter().arg(PODBOX).arg("--root").arg(&self.root).args(["pod", "rm", "-f", "--all"])
            .stdout(Stdio::null()).stderr(Stdio::null()).status();
        // ... then end the node: SIGKILL to its init ends every process in its PID namespace, and
        // with them the node's network and mount namespaces. A frozen process (a paused
        // container of a failed test) would hold that up forever: thaw it first.
        thaw(&node_processes(self.init_pid));
        unsafe { libc::kill(self.init_pid, libc::SIGKILL) };
        let _ = self.unshare.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every process of the node but its `init`: the members of its PID namespace (the commands
/// entered with nsenter have parents outside the node) and all their descendants, which
/// includes containers in PID namespaces of their own.
fn node_processes(init: i32) -> Vec<i32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else { return vec![] };
    let pids: Vec<i32> = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok()).collect();
    let mut out: Vec<i32> = pids.iter().copied().filter(|&p| p != init && std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns)).collect();
    let mut roots = out.clone();
    roots.push(init);
    for (pid, _) in descendants(&roots) {
        if !out.contains(&pid) { out.push(pid); }
    }
    out
}

/// Thaw the freezer cgroups (v1 `freezer.state`, v2 `cgroup.freeze`) of `pids`, so that they
/// can die: a frozen process acts on SIGKILL only once thawed.
fn thaw(pids: &[i32]) {
    for pid in pids {
        for line in std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default().lines() {
            let mut it = line.splitn(3, ':');
            let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or("").trim_start_matches('/'));
            let (file, value) = match ctrls {
                c if c.split(',').any(|c| c == "freezer") => (Path::new("/sys/fs/cgroup/freezer").join(path).join("freezer.state"), "THAWED"),
                // The unified hierarchy: beside v1 on a hybrid machine, else at the top.
                "" => {
                    let unified = if Path::new("/sys/fs/cgroup/unified").is_dir() { "/sys/fs/cgroup/unified" } else { "/sys/fs/cgroup" };
                    (Path::new(unified).join(path).join("cgroup.freeze"), "0")
                }
                _ => continue,
            };
            if std::fs::read_to_string(&file).is_ok_and(|s| s.trim() == "FROZEN" || s.trim() == "1") {
                let _ = std::fs::write(&file, value);
            }
        }
    }
}

/// The descendants of any of `roots` (PID and state letter), read from the machine's /proc, so the
/// listing itself adds no process.
fn descendants(roots: &[i32]) -> Vec<(i32, String)> {
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { continue };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("?").to_string();
        let ppid: i32 = f.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        parent.insert(pid, (ppid, state));
    }
    let mut out = Vec::new();
    for (&pid, (_, state)) in &parent {
        let mut p = pid;
        for _ in 0..64 {
            match parent.get(&p) {
                Some((pp, _)) if roots.contains(pp) => {
                    out.push((pid, state.clone()));
                    break;
                }
                Some((pp, _)) if *pp > 1 => p = *pp,
                _ => break,
            }
        }
    }
    out
}

fn log_output(what: &str, out: &Output) {
    eprintln!("{what} -> {}", out.status);
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    if !so.trim().is_empty() { eprintln!("  stdout: {}", so.trim_end().replace('\n', "\n          ")); }
    if !se.trim().is_empty() { eprintln!("  stderr: {}", se.trim_end().replace('\n', "\n          ")); }
}

/// Poll `f` until it returns true or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() { return true; }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A cable between two nodes: a veth pair with end `a_if` in `a`'s network namespace and `b_if`
/// in `b`'s, both up. Made from inside `a` (the /proc paths of both inits resolve in the test's
/// mount namespace), so nothing touches the machine's own network namespace.
pub fn wire(a: &Node, a_if: &str, b: &Node, b_if: &str) {
    let ok = Command::new("nsenter")
        .arg(format!("--net={}", a.netns()))
        .args(["ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns"])
        .arg(b.netns())
        .status()
        .expect("run nsenter ip link add");
    assert!(ok.success(), "wiring {}:{a_if} to {}:{b_if} failed", a.name, b.name);
    a.sh_ok(&format!("ip link set {a_if} up"));
    b.sh_ok(&format!("ip link set {b_if} up"));
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

pub fn rootfs() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rootfs"))
}

/// A cgroup parent of the test's own (`--cgroup-parent` for podman, containerd's runtime root),
/// removed with everything under it in every hierarchy when dropped — after the node, so its
/// processes are gone by then. podman leaves its pod and conmon cgroups behind otherwise, and a
/// killed run leaves the containers' too.
pub struct CgroupParent(pub String);

impl CgroupParent {
    /// Every directory of `rel` below the parent that still exists, in any hierarchy.
    pub fn left(&self, rel: &str) -> Vec<PathBuf> {
        let hier = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path());
        hier.chain(std::iter::once(PathBuf::from("/sys/fs/cgroup"))).map(|h| h.join(&self.0).join(rel)).filter(|p| p.is_dir()).collect()
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        fn rmdir_tree(d: &Path) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
            let _ = std::fs::remove_dir(d);
        }
        for d in self.left("") {
            rmdir_tree(&d);
        }
    }
}
