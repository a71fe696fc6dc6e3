//! Building blocks of the scenarios of /work/shared/scenarios.md, shared by tests/scenarios.rs
//! (built-in bridge) and tests/cni.rs (the same figures over CNI plugins): addresses of the
//! article's topologies, pods serving and asking the rootfs' whoami CGI, the outside host, the
//! F5 LAN of a router and two nodes.

use super::{Node, json, rootfs, wait_until, wire};

/// The router's LAN and the outside network of F5–F7 (and F1's outside host).
pub const ROUTER: &str = "10.100.0.1";
pub const NODE_A: &str = "10.100.0.2";
pub const NODE_B: &str = "10.100.0.3";
pub const OUTSIDE_GW: &str = "192.168.100.1";
pub const OUTSIDE: &str = "192.168.100.2";

pub fn pod_ip(node: &Node, pod: &str) -> String {
    json(&node.podbox_ok(&["pod", "inspect", pod]))["attachment"]["ip"].as_str().expect("pod has an IP").to_string()
}

/// `podbox exec` in a running container; its stdout.
pub fn exec(node: &Node, pod: &str, c: &str, cmd: &str) -> String {
    node.podbox_ok(&["exec", pod, c, "--", "sh", "-c", cmd])
}

/// A container `name` in `pod` running the rootfs' web server (index page and the whoami CGI) on
/// `port`; returns once it listens.
pub fn serve(node: &Node, pod: &str, name: &str, port: u16) {
    let p = port.to_string();
    node.podbox_ok(&["run", "--pod", pod, "--name", name, "-d", "--", "httpd", "-f", "-p", &p, "-h", "/var/www"]);
    let listening = format!("netstat -ltn | grep -q ':{port} '");
    assert!(wait_until(5, || node.podbox(&["exec", pod, name, "--", "sh", "-c", &listening]).status.success()), "httpd on {port} in {pod} did not listen");
}

/// The same web server run directly in a non-podbox namespace (router or test host).
pub fn serve_on_host(host: &Node) {
    host.sh_ok(&format!("busybox httpd -p 80 -h {}/var/www", rootfs().display()));
    assert!(wait_until(5, || host.sh("busybox netstat -ltn | grep -q ':80 '").status.success()));
}

/// Ask the whoami CGI at `ip` from a container: the source address the server saw, or None when
/// the server cannot be reached (5 s timeout; busybox 1.35 wget crashes with -T).
pub fn whoami(node: &Node, pod: &str, c: &str, ip: &str) -> Option<String> {
    let out = node.podbox(&["exec", pod, c, "--", "timeout", "5", "wget", "-qO-", &format!("http://{ip}/cgi-bin/whoami")]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The node side of F1: `eth0` = 192.168.100.1 cabled to an outside test host 192.168.100.2 that
/// serves whoami and has no route to the pods (so their traffic must be masqueraded to come back).
pub fn node_with_outside_host(name: &str) -> (Node, Node) {
    let (node, host) = (Node::new(name), Node::new(&format!("{name}-host")));
    wire(&node, "eth0", &host, "eth0");
    node.sh_ok(&format!("ip addr add {OUTSIDE_GW}/24 dev eth0"));
    host.sh_ok(&format!("ip addr add {OUTSIDE}/24 dev eth0"));
    serve_on_host(&host);
    (node, host)
}

/// F5's topology: a router (a bridge with 10.100.0.1 and forwarding on, in its own namespace) and
/// nodes A 10.100.0.2 and B 10.100.0.3 cabled to it on their eth0, default route via the router.
pub struct Lan {
    pub router: Node,
    pub a: Node,
    pub b: Node,
}

pub fn lan(prefix: &str) -> Lan {
    let router = Node::new(&format!("{prefix}-router"));
    router.sh_ok(&format!(
        "ip link add br0 type bridge && ip addr add {ROUTER}/24 dev br0 && ip link set br0 up && echo 1 > /proc/sys/net/ipv4/ip_forward"
    ));
    let (a, b) = (Node::new(&format!("{prefix}-a")), Node::new(&format!("{prefix}-b")));
    for (node, port, ip) in [(&a, "to-a", NODE_A), (&b, "to-b", NODE_B)] {
        wire(&router, port, node, "eth0");
        router.sh_ok(&format!("ip link set {port} master br0"));
        node.sh_ok(&format!("ip addr add {ip}/24 dev eth0 && ip route add default via {ROUTER}"));
    }
    Lan { router, a, b }
}

pub fn ping(node: &Node, ip: &str) -> bool {
    node.sh(&format!("busybox ping -c 1 -W 2 {ip}")).status.success()
}

/// A pod (`pod create` with `extra` arguments) with one long-running container `app`.
pub fn pod_with_app(node: &Node, pod: &str, extra: &[&str]) {
    node.podbox_ok(&[&["pod", "create", pod][..], extra].concat());
    node.podbox_ok(&["run", "--pod", pod, "--name", "app", "-d", "--", "sleep", "100000"]);
}

/// F7 once each node owns a slice (10.0.1.0/24 on `a`, 10.0.2.0/24 on `b`) and the router
/// routes them: pod to pod across nodes keeps pod IPs both ways, traffic to the outside host is
/// masqueraded to the node's address; then the pods are removed and nothing is left.
pub fn assert_f7_pod_network(a: &Node, b: &Node) {
    pod_with_app(a, "pa", &[]);
    pod_with_app(b, "pb", &[]);
    let (ipa, ipb) = (pod_ip(a, "pa"), pod_ip(b, "pb"));
    assert_eq!((ipa.as_str(), ipb.as_str()), ("10.0.1.2", "10.0.2.2"));
    serve(a, "pa", "web", 80);
    serve(b, "pb", "web", 80);
    // Each server sees the other pod's own IP.
    assert_eq!(whoami(a, "pa", "app", &ipb).as_deref(), Some(ipa.as_str()), "A's pod → B's pod, no NAT");
    assert_eq!(whoami(b, "pb", "app", &ipa).as_deref(), Some(ipb.as_str()), "B's pod → A's pod, no NAT");
    // The outside host has no route to the pods: it sees the nodes.
    assert_eq!(whoami(a, "pa", "app", OUTSIDE).as_deref(), Some(NODE_A));
    assert_eq!(whoami(b, "pb", "app", OUTSIDE).as_deref(), Some(NODE_B));
    a.podbox_ok(&["pod", "rm", "-f", "pa"]);
    b.podbox_ok(&["pod", "rm", "-f", "pb"]);
    a.assert_clean();
    b.assert_clean();
}
