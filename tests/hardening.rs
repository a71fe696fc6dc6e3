//! Hardening against hostile containers and pods (issue 12): what a container may open and call,
//! and what a pod may put on the wire — loopback-addressed frames to the node, IPv6 router
//! advertisements, spoofed ARP and source addresses — and two state roots sharing one node.
//! Everything runs in throwaway nodes; the hostile frames are crafted with python3 run from the
//! node inside the pod's network namespace (`nsenter --net`), as a pod with CAP_NET_RAW could.
mod common;

use std::path::Path;

use common::Node;

/// A pod without network in `node`; returns its id.
fn pod_without_network(node: &Node, name: &str) -> String {
    node.podbox_ok(&["pod", "create", name, "--network", "none"]).trim().to_string()
}

/// Run `script` in a foreground container; returns (exit code, stdout).
fn run(node: &Node, args_before: &[&str], pod: &str, name: &str, script: &str) -> (i32, String) {
    let mut args = args_before.to_vec();
    args.extend(["run", "--pod", pod, "--name", name, "--", "sh", "-c", script]);
    let out = node.podbox(&args);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_machine_console_cannot_be_opened() {
    require_root!();
    let node = Node::new("console");
    pod_without_network(&node, "p");
    // CAP_MKNOD is in the default set and the device cgroup lets any node be created ("c *:* m",
    // as runc does); opening it is what the cgroup must refuse. /dev/tty (5:0) stays usable
    // as a control: the open reaches the driver (ENXIO without a controlling terminal).
    let script = r#"
        mknod /tmp/console c 5 1 && echo MKNOD=ok
        echo x 2>&1 > /tmp/console | sed 's/^/CONSOLE /'
        mknod /tmp/tty c 5 0
        echo x 2>&1 > /tmp/tty | sed 's/^/TTY /'
        mknod /tmp/null c 1 3 && echo x > /tmp/null && echo NULL=ok
    "#;
    let (code, out) = run(&node, &[], "p", "c", script);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l == "MKNOD=ok"), "{out}");
    assert!(out.lines().any(|l| l == "NULL=ok"), "{out}");
    let console = out.lines().find(|l| l.starts_with("CONSOLE")).unwrap_or_else(|| panic!("the console was opened:\n{out}"));
    assert!(console.contains("Operation not permitted"), "the device cgroup must refuse the console: {console}");
    assert!(!out.lines().any(|l| l.starts_with("TTY") && l.contains("Operation not permitted")), "/dev/tty must stay allowed:\n{out}");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

/// A static program that calls io_uring_setup and prints the outcome ("ok" or the errno).
const URING_PROBE: &str = r#"
#include <errno.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(__NR_io_uring_setup, 4, &p);
    if (fd >= 0) { puts("IO_URING=ok"); return 0; }
    printf("IO_URING=%s\n", errno == EPERM ? "EPERM" : errno == ENOSYS ? "ENOSYS" : strerror(errno));
    return 0;
}
"#;

/// A copy of the test rootfs with `/bin/uring-probe` in it.
fn rootfs_with_uring_probe(dir: &Path) -> std::path::PathBuf {
    let rootfs = dir.join("rootfs");
    let ok = std::process::Command::new("cp").arg("-a").arg(common::rootfs()).arg(&rootfs).status().unwrap();
    assert!(ok.success(), "copying the rootfs");
    let src = dir.join("uring.c");
    std::fs::write(&src, URING_PROBE).unwrap();
    let out = std::process::Command::new("cc").args(["-static", "-O1", "-o"]).arg(rootfs.join("bin/uring-probe")).arg(&src).output().expect("run cc");
    assert!(out.status.success(), "cc: {}", String::from_utf8_lossy(&out.stderr));
    rootfs
}

#[test]
fn io_uring_is_denied_by_the_default_seccomp_profile() {
    require_root!();
    let node = Node::new("uring");
    let rootfs = rootfs_with_uring_probe(&node.dir);
    let rootfs = rootfs.to_str().unwrap();
    // The probe works where the kernel offers io_uring (unconfined), so the denial is the filter's.
    let unconfined = node.sh_ok(&format!("{rootfs}/bin/uring-probe"));
    pod_without_network(&node, "p");
    let (code, out) = run(&node, &["--rootfs", rootfs], "p", "c", "/bin/uring-probe");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "IO_URING=EPERM", "default profile");
    if unconfined.trim() == "IO_URING=ok" {
        let out = node.podbox_ok(&["--rootfs", rootfs, "run", "--pod", "p", "--name", "u", "--security-opt", "seccomp=unconfined", "--", "/bin/uring-probe"]);
        assert_eq!(out.trim(), "IO_URING=ok", "unconfined");
    } else {
        eprintln!("note: io_uring is unavailable on this kernel even unconfined ({})", unconfined.trim());
    }
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}
