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
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn the_machine_console_cannot_be_opened() {
    require_root!();
    // With the v1 devices controller (this machine) and with the eBPF program of a node that
    // has only the unified hierarchy: both come from the same standard allow list.
    for v2 in [false, true] {
        let node = Node::new(if v2 { "console-v2" } else { "console" });
        if v2 {
            node.sh_ok("umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup");
        }
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
        let console = out.lines().find(|l| l.starts_with("CONSOLE")).unwrap_or_else(|| panic!("the console was opened (v2: {v2}):\n{out}"));
        assert!(console.contains("Operation not permitted"), "the device rules must refuse the console (v2: {v2}): {console}");
        assert!(!out.lines().any(|l| l.starts_with("TTY") && l.contains("Operation not permitted")), "/dev/tty must stay allowed:\n{out}");
        node.podbox_ok(&["pod", "rm", "-f", "p"]);
        node.assert_clean();
    }
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
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
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
    // The second container's programs come from the cache of compiled programs, and deny as much.
    let cache: Vec<_> = std::fs::read_dir(node.root.join("cache/seccomp")).expect("the seccomp cache").flatten().collect();
    assert_eq!(cache.len(), 1, "one profile, one entry: {cache:?}");
    let (code, out) = run(&node, &["--rootfs", rootfs], "p", "c2", "/bin/uring-probe");
    assert_eq!((code, out.trim()), (0, "IO_URING=EPERM"), "default profile, from the cache");
    if unconfined.trim() == "IO_URING=ok" {
        let out = node.podbox_ok(&["--rootfs", rootfs, "run", "--pod", "p", "--name", "u", "--security-opt", "seccomp=unconfined", "--", "/bin/uring-probe"]);
        assert_eq!(out.trim(), "IO_URING=ok", "unconfined");
    } else {
        eprintln!("note: io_uring is unavailable on this kernel even unconfined ({})", unconfined.trim());
    }
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// The pod network: hostile frames from a pod.

/// The hostile pod's toolbox, run with the machine's python3 inside a pod's network namespace
/// (the rootfs has no python): raw Ethernet frames on eth0 (AF_PACKET, as CAP_NET_RAW allows),
/// and a UDP listener that prints what it receives within a deadline.
const CRAFT_PY: &str = r#"
import socket, struct, sys

def mac(s): return bytes(int(x, 16) for x in s.split(':'))
def ip4(s): return socket.inet_aton(s)
def ip6(s): return socket.inet_pton(socket.AF_INET6, s)
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def send(frame):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(('eth0', 0))
    for _ in range(3): s.send(frame)

def udp(dst_mac, src_mac, src_ip, dst_ip, port, payload):
    data = payload.encode()
    u = struct.pack('!HHHH', 40000, int(port), 8 + len(data), 0) + data
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(u), 1, 0, 64, 17, 0, ip4(src_ip), ip4(dst_ip))
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    send(mac(dst_mac) + mac(src_mac) + b'\x08\x00' + h + u)

def garp(src_mac, claimed_ip):
    # A gratuitous ARP reply, broadcast: "claimed_ip is at src_mac".
    a = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 2, mac(src_mac), ip4(claimed_ip), b'\xff' * 6, ip4(claimed_ip))
    send(b'\xff' * 6 + mac(src_mac) + b'\x08\x06' + a)

def ra(src_mac, prefix):
    # A router advertisement to all nodes: "I am your default router; take an address in prefix/64".
    src, dst = ip6('fe80::bad'), ip6('ff02::1')
    body = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 1800, 0, 0)
    body += struct.pack('!BB6s', 1, 1, mac(src_mac))
    body += struct.pack('!BBBBIII16s', 3, 4, 64, 0xc0, 86400, 14400, 0, ip6(prefix))
    pseudo = src + dst + struct.pack('!I3xB', len(body), 58)
    body = body[:2] + struct.pack('!H', csum(pseudo + body)) + body[4:]
    h = struct.pack('!IHBB16s16s', 6 << 28, len(body), 58, 255, src, dst)
    send(mac('33:33:00:00:00:01') + mac(src_mac) + b'\x86\xdd' + h + body)

def listen(ip, port, secs):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, int(port)))
    s.settimeout(float(secs))
    print('READY', flush=True)
    got = []
    try:
        while True:
            got.append(s.recvfrom(100)[0].decode())
    except socket.timeout:
        pass
    print('GOT ' + ' '.join(got) if got else 'NOTHING', flush=True)

globals()[sys.argv[1]](*sys.argv[2:])
"#;

/// A pod of `node` on the bridge, as the tests need it: id, address, MAC, network namespace pin.
struct Pod {
    ip: String,
    mac: String,
    netns: String,
}

fn bridge_pod(node: &Node, name: &str) -> Pod {
    node.podbox_ok(&["pod", "create", name]);
    let p = common::json(&node.podbox_ok(&["pod", "inspect", name]));
    let id = p["id"].as_str().unwrap();
    Pod {
        ip: p["attachment"]["ip"].as_str().unwrap().into(),
        mac: p["attachment"]["mac"].as_str().unwrap().into(),
        netns: node.root.join("pods").join(id).join("ns/net").display().to_string(),
    }
}

fn craft_tool(node: &Node) -> String {
    let path = node.dir.join("craft.py");
    std::fs::write(&path, CRAFT_PY).unwrap();
    path.display().to_string()
}

/// Listen for UDP on `listen_ip:port` in `listener_ns` (None: the node) while `sender` runs
/// `craft.py ARGS` in its namespace; returns the listener's verdict ("GOT …" or "NOTHING").
fn udp_through(node: &Node, tool: &str, listener_ns: Option<&str>, listen_ip: &str, port: u16, sender: &Pod, args: &str) -> String {
    let enter = |ns: Option<&str>| ns.map(|n| format!("nsenter --net={n} ")).unwrap_or_default();
    let out_file = node.dir.join(format!("listen-{port}.out")).display().to_string();
    node.sh_ok(&format!(
        "{l}python3 {tool} listen {listen_ip} {port} 1.5 > {out_file} & \
         for i in $(seq 50); do grep -q READY {out_file} 2>/dev/null && break; sleep 0.05; done; \
         {s}python3 {tool} {args}; wait",
        l = enter(listener_ns),
        s = enter(Some(&sender.netns)),
    ));
    std::fs::read_to_string(&out_file).unwrap().lines().last().unwrap_or_default().to_string()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_pod_cannot_reach_the_nodes_loopback() {
    require_root!();
    let node = Node::new("localnet");
    let tool = craft_tool(&node);
    let pod = bridge_pod(&node, "evil");
    // (The node's /sys is the machine's; ip asks the node's network namespace.)
    let cbr0_mac = node.sh_ok("ip -o link show cbr0 | sed 's/.*link\\/ether \\([0-9a-f:]*\\).*/\\1/'").trim().to_string();
    // The crafted frame works: sent to the bridge's own address, the node gets it.
    let to_gw = udp_through(&node, &tool, None, "10.244.0.1", 5301, &pod, &format!("udp {cbr0_mac} {} {} 10.244.0.1 5301 hello", pod.mac, pod.ip));
    assert_eq!(to_gw, "GOT hello hello hello");
    // The same frame for 127.0.0.1 must not reach a service listening on the node's loopback.
    let to_lo = udp_through(&node, &tool, None, "127.0.0.1", 5302, &pod, &format!("udp {cbr0_mac} {} {} 127.0.0.1 5302 secret", pod.mac, pod.ip));
    assert_eq!(to_lo, "NOTHING", "a pod reached the node's 127.0.0.1");
    // Host ports used from the node's own loopback still work (they need route_localnet).
    node.podbox_ok(&["pod", "create", "web", "-p", "8080:80"]);
    node.podbox_ok(&["run", "--pod", "web", "--name", "srv", "-d", "--", "httpd", "-f", "-p", "80", "-h", "/var/www"]);
    assert!(common::wait_until(5, || node.sh("wget -qO- http://127.0.0.1:8080").status.success()), "host port from 127.0.0.1");
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn router_advertisements_from_a_pod_are_ignored() {
    require_root!();
    let node = Node::new("ra");
    let tool = craft_tool(&node);
    // Not the node's first pod: that one's elements come with the table from an nft script, the
    // later ones' over netlink (nfset.rs), and it is the latter the attacker should be.
    bridge_pod(&node, "first");
    let evil = bridge_pod(&node, "evil");
    let victim = bridge_pod(&node, "victim");
    node.sh_ok(&format!("nsenter --net={} python3 {tool} ra {} 2001:db8:bad::", evil.netns, evil.mac));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let seen = |ns: Option<&str>| {
        let enter = ns.map(|n| format!("nsenter --net={n} ")).unwrap_or_default();
        node.sh_ok(&format!("{enter}ip -6 addr; {enter}ip -6 route show default"))
    };
    for (who, ns) in [("the node", None), ("another pod", Some(victim.netns.as_str()))] {
        let s = seen(ns);
        assert!(!s.contains("2001:db8:bad"), "{who} took an address from the pod's RA:\n{s}");
        assert!(!s.contains("default"), "{who} took a default route from the pod's RA:\n{s}");
    }
    // Each layer on its own: the bridge drops the RA as it enters from the pod's port, so
    // neither the node's stack nor the other pod's ever received one (the kernel's own count),
    // and the node's bridge would refuse one anyway.
    let ras_received = |ns: Option<&str>| {
        let enter = ns.map(|n| format!("nsenter --net={n} ")).unwrap_or_default();
        let snmp = node.sh_ok(&format!("{enter}cat /proc/net/snmp6"));
        snmp.lines().find_map(|l| l.strip_prefix("Icmp6InRouterAdvertisements")).map(|n| n.trim().to_string())
    };
    assert_eq!(ras_received(None).as_deref(), Some("0"), "the node received the pod's RA");
    assert_eq!(ras_received(Some(victim.netns.as_str())).as_deref(), Some("0"), "another pod received the pod's RA");
    assert_eq!(node.sh_ok("cat /proc/sys/net/ipv6/conf/cbr0/accept_ra").trim(), "0");
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_pod_can_send_only_from_its_own_addresses() {
    require_root!();
    let node = Node::new("spoof");
    let tool = craft_tool(&node);
    // (a is the node's first pod: its elements come from the nft script that makes the table;
    // b's and c's over netlink. Both kinds are checked below: a attacks, then b.)
    let a = bridge_pod(&node, "a");
    let b = bridge_pod(&node, "b");
    let c = bridge_pod(&node, "c");
    // The node and pod b know c's MAC; wait out the kernel's ARP locktime (1 s), after which a
    // gratuitous ARP would be believed.
    node.sh_ok(&format!("ping -c1 -W2 {}", c.ip));
    node.sh_ok(&format!("nsenter --net={} ping -c1 -W2 {}", b.netns, c.ip));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // Pod a claims c's address, once with its own MAC and once with c's.
    node.sh_ok(&format!("nsenter --net={} python3 {tool} garp {} {}", a.netns, a.mac, c.ip));
    node.sh_ok(&format!("nsenter --net={} python3 {tool} garp {} {}", a.netns, c.mac, c.ip));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let node_neigh = node.sh_ok(&format!("ip neigh show {}", c.ip));
    assert!(node_neigh.contains(&c.mac), "the node's neighbour entry for c was changed: {node_neigh}");
    let b_neigh = node.sh_ok(&format!("nsenter --net={} ip neigh show {}", b.netns, c.ip));
    assert!(b_neigh.contains(&c.mac), "pod b's neighbour entry for c was changed: {b_neigh}");
    // The bridge did not learn c's MAC on a's port.
    let fdb = node.sh_ok(&format!("bridge fdb show br cbr0 | grep -i '^{} '", c.mac));
    // c's eth0 is "N: eth0@ifM:", M the index of its veth on the node.
    let c_eth0 = node.sh_ok(&format!("nsenter --net={} ip -o link show eth0", c.netns));
    let c_port = c_eth0.split("eth0@if").nth(1).unwrap().split(':').next().unwrap();
    let c_veth = node.sh_ok(&format!("ip -o link | awk -F': ' '$1 == {c_port} {{print $2}}'"));
    assert!(fdb.contains(&format!("dev {} ", c_veth.trim().split('@').next().unwrap())), "c's MAC moved: {fdb}");

    // UDP to c: with a's own source it arrives, with b's it does not.
    let own = udp_through(&node, &tool, Some(&c.netns), "0.0.0.0", 5401, &a, &format!("udp {} {} {} {} 5401 own", c.mac, a.mac, a.ip, c.ip));
    assert_eq!(own, "GOT own own own");
    let spoofed = udp_through(&node, &tool, Some(&c.netns), "0.0.0.0", 5402, &a, &format!("udp {} {} {} {} 5402 forged", c.mac, a.mac, b.ip, c.ip));
    assert_eq!(spoofed, "NOTHING", "a datagram with another pod's source address was delivered");
    let spoofed = udp_through(&node, &tool, Some(&c.netns), "0.0.0.0", 5403, &b, &format!("udp {} {} {} {} 5403 forged", c.mac, b.mac, a.ip, c.ip));
    assert_eq!(spoofed, "NOTHING", "a datagram with another pod's source address was delivered (b)");
    let spoofed = udp_through(&node, &tool, Some(&c.netns), "0.0.0.0", 5404, &b, &format!("udp {} {} {} {} 5404 forged", c.mac, a.mac, b.ip, c.ip));
    assert_eq!(spoofed, "NOTHING", "a frame with another pod's MAC address was delivered (b)");
    let own = udp_through(&node, &tool, Some(&c.netns), "0.0.0.0", 5405, &b, &format!("udp {} {} {} {} 5405 own", c.mac, b.mac, b.ip, c.ip));
    assert_eq!(own, "GOT own own own");
    // Ordinary traffic still flows.
    node.sh_ok(&format!("nsenter --net={} ping -c1 -W2 {}", b.netns, c.ip));
    node.sh_ok(&format!("nsenter --net={} ping -c1 -W2 {}", a.netns, b.ip));
    assert_eq!(a.mac, "0a:58:0a:f4:00:02", "a pod's MAC follows its address");
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    node.assert_clean();
}

/// Run podbox in `node` with the state root `root` instead of the node's own.
fn with_root(node: &Node, root: &str, args: &[&str]) -> std::process::Output {
    node.sh(&format!("{} --root {root} {}", common::PODBOX, args.join(" ")))
}

fn with_root_ok(node: &Node, root: &str, args: &[&str]) -> String {
    let out = with_root(node, root, args);
    assert!(out.status.success(), "podbox --root {root} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_second_state_root_cannot_take_a_nodes_network() {
    require_root!();
    let node = Node::new("tworoots");
    node.podbox_ok(&["pod", "create", "web", "-p", "8080:80"]);
    let veths = || node.sh_ok("ip -o link show type veth | wc -l").trim().to_string();
    assert_eq!(veths(), "1");
    let other = node.dir.join("other-root");
    let other = other.to_str().unwrap();
    let owner = std::fs::canonicalize(&node.root).unwrap().display().to_string();

    // A pod with a network is refused, naming the owner; nothing of it is left.
    let out = with_root(&node, other, &["pod", "create", "second"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("belongs to podbox state root {owner}")), "{err}");
    assert_eq!(veths(), "1");
    let ls = common::json(&with_root_ok(&node, other, &["pod", "ls", "--json"]));
    assert_eq!(ls.as_array().unwrap().len(), 0, "the refused pod left a record");
    let ipam = node.sh_ok(&format!("ls {other}/network/ipam/*/ 2>/dev/null | grep -c '^10\\.' || true"));
    assert_eq!(ipam.trim(), "0", "the refused pod kept an address");
    // Nor may it reconfigure the node network.
    let out = with_root(&node, other, &["network", "config", "--masquerade", "false"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to podbox state root"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!Path::new(other).join("network/config.json").exists(), "the refused config was saved");
    // Its gc leaves the owner's veth and host port alone.
    with_root_ok(&node, other, &["gc"]);
    assert_eq!(veths(), "1", "gc of the other root removed the owner's veth");
    assert!(node.sh_ok("nft list map ip podbox hostports").contains("8080"), "gc of the other root removed the owner's host port");
    // A pod without network is no business of the bridge.
    with_root_ok(&node, other, &["pod", "create", "quiet", "--network", "none"]);
    with_root_ok(&node, other, &["pod", "rm", "-f", "quiet"]);

    // Once the owning root is gone, another may take the node's network over.
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    node.sh_ok(&format!("rm -rf {}", node.root.display()));
    with_root_ok(&node, other, &["pod", "create", "second"]);
    let alias = node.sh_ok("ip -o link show cbr0");
    assert!(alias.contains(&format!("alias podbox root {}", std::fs::canonicalize(other).unwrap().display())), "{alias}");
    with_root_ok(&node, other, &["pod", "rm", "-f", "second"]);
    node.assert_clean();
}

/// Elements in the anti-spoofing sets (each pod has one in each of the three).
fn antispoof_elements(node: &Node) -> usize {
    node.sh_ok("nft list table bridge podbox").matches("comment").count()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn anti_spoofing_elements_of_removed_pods_are_pruned() {
    require_root!();
    let node = Node::new("prune");
    node.podbox_ok(&["pod", "create", "keep"]);
    assert_eq!(antispoof_elements(&node), 3);
    // `pod rm` leaves the elements of its veth (they match nothing once the veth is gone) ...
    for i in 0..3 {
        node.podbox_ok(&["pod", "create", &format!("p{i}")]);
        node.podbox_ok(&["pod", "rm", "-f", &format!("p{i}")]);
    }
    assert_eq!(antispoof_elements(&node), 12);
    // ... until `gc`, which keeps the live pod's.
    assert!(common::wait_until(5, || node.sh_ok("ip -o link show type veth | wc -l").trim() == "1"));
    node.podbox_ok(&["gc"]);
    assert_eq!(antispoof_elements(&node), 3);
    // Without a gc, every 32 removals the next create prunes.
    for i in 0..32 {
        node.podbox_ok(&["pod", "create", &format!("q{i}")]);
        node.podbox_ok(&["pod", "rm", "-f", &format!("q{i}")]);
    }
    assert!(common::wait_until(5, || node.sh_ok("ip -o link show type veth | wc -l").trim() == "1"));
    node.podbox_ok(&["pod", "create", "last"]);
    assert_eq!(antispoof_elements(&node), 6, "the keep and last pods' elements only");
    // That prune deleted the noted ports by their kept keys; only live pods' keys remain.
    let kept = || std::fs::read_dir(node.root.join("network/nft-ports")).unwrap().count();
    assert_eq!(kept(), 2);
    assert!(!node.root.join("network/nft-stale").exists());
    // A pod whose keys were not kept (created by an older podbox): its note has none, and the
    // prune falls back to listing the sets.
    let old_id = node.podbox_ok(&["pod", "create", "old"]).trim().to_string();
    std::fs::remove_file(node.root.join("network/nft-ports").join(&old_id)).unwrap();
    node.podbox_ok(&["pod", "rm", "-f", "old"]);
    for i in 0..31 {
        node.podbox_ok(&["pod", "create", &format!("r{i}")]);
        node.podbox_ok(&["pod", "rm", "-f", &format!("r{i}")]);
    }
    assert!(common::wait_until(5, || node.sh_ok("ip -o link show type veth | wc -l").trim() == "2"));
    node.podbox_ok(&["pod", "create", "latest"]);
    assert_eq!(antispoof_elements(&node), 9, "the keep, last and latest pods' elements only");
    assert_eq!(kept(), 3);
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    node.assert_clean();
}
