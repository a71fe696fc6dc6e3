//! OCI runtime mode test harness: a `podbox-runc` symlink, bundles and a runtime root in a temp
//! dir, driven from inside a `Node` (the role conmon or containerd-shim plays), shared by
//! tests/oci.rs and tests/oci_spec.rs.
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Value, json};

use super::Node;

/// A temp dir with the `podbox-runc` symlink, bundles and the runtime root; dropped, it deletes
/// (--force) every container left in its root from inside `node`, also after a failed test.
pub struct Env {
    pub dir: PathBuf,
    pub runc: PathBuf,
    pub root: PathBuf,
    node_init: Option<i32>,
}

impl Env {
    pub fn new(name: &str) -> Env {
        let dir = super::tempdir(&format!("podbox-oci-{name}"));
        let runc = dir.join("podbox-runc");
        std::os::unix::fs::symlink(super::PODBOX, &runc).unwrap();
        Env { root: dir.join("state"), runc, dir, node_init: None }
    }

    /// An Env whose containers run in `node`.
    pub fn in_node(name: &str, node: &Node) -> Env {
        let mut env = Env::new(name);
        env.node_init = Some(node.init_pid);
        env
    }

    /// A bundle `name` whose process runs `sh -c script` from the test rootfs; `tweak` edits
    /// the config further.
    pub fn bundle(&self, name: &str, script: &str, tweak: impl FnOnce(&mut Value)) -> PathBuf {
        self.bundle_with_root(name, super::rootfs(), script, tweak)
    }

    /// `bundle` with another root file system.
    pub fn bundle_with_root(&self, name: &str, rootfs: &Path, script: &str, tweak: impl FnOnce(&mut Value)) -> PathBuf {
        let b = self.dir.join(name);
        std::fs::create_dir_all(&b).unwrap();
        let out = std::process::Command::new(&self.runc).arg("spec").arg("--bundle").arg(&b).output().unwrap();
        assert!(out.status.success(), "spec: {}", String::from_utf8_lossy(&out.stderr));
        std::os::unix::fs::symlink(rootfs, b.join("rootfs")).unwrap();
        let mut c: Value = serde_json::from_str(&std::fs::read_to_string(b.join("config.json")).unwrap()).unwrap();
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sh", "-c", script]);
        tweak(&mut c);
        std::fs::write(b.join("config.json"), c.to_string()).unwrap();
        b
    }

    /// The runtime command line, for `node.sh`.
    pub fn cmd(&self, args: &str) -> String {
        format!("{} --root {} {args}", self.runc.display(), self.root.display())
    }

    /// A command that leaves a container running: the container inherits the runtime's stdio
    /// (as conmon's pipes), so it goes to a file, or `node.sh` would wait for the pipes to close.
    pub fn bg(&self, args: &str) -> String {
        format!("{} </dev/null >>{}/container.out 2>&1", self.cmd(args), self.dir.display())
    }

    pub fn state(&self, node: &Node, id: &str) -> Value {
        serde_json::from_str(&node.sh_ok(&self.cmd(&format!("state {id}")))).unwrap()
    }

    pub fn status(&self, node: &Node, id: &str) -> String {
        self.state(node, id)["status"].as_str().unwrap().to_string()
    }

    /// Nothing left: no container state, no processes in the node.
    pub fn assert_clean(&self, node: &Node) {
        let left: Vec<_> = std::fs::read_dir(&self.root).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "state left: {left:?}");
        assert!(super::wait_until(5, || node.processes().is_empty()), "processes left: {:?}", node.processes());
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(init) = self.node_init {
            for id in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
                let _ = std::process::Command::new("nsenter")
                    .arg("-t").arg(init.to_string()).args(["--net", "--pid", "--mount", "--uts", "--"])
                    .arg(&self.runc).arg("--root").arg(&self.root).args(["delete", "--force"]).arg(id.file_name())
                    .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

