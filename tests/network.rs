//! The network layer end to end, with real packets, everything inside throwaway nodes: pod netns
//! are bind-mount pins that live only in the node's mount namespace; an "outside" test host is one
//! more netns joined to the node by a veth (192.168.100.0/24). Uses `podbox network add/del`.
mod common;

use common::{Node, PODBOX};

const NODE_IP: &str = "192.168.100.1";
const EXT_IP: &str = "192.168.100.2";

/// Pod id number `n`: the number leads, so host veth names (first 11 hex chars) differ.
fn id(n: u32) -> String {
    format!("{n:08x}{:024x}", std::process::id())
}

/// Create a network namespace pinned at `<node.dir>/pins/<name>`; returns the pin path.
fn pin(node: &Node, name: &str) -> String {
    let p = node.dir.join("pins").join(name);
    let p = p.to_string_lossy();
    node.sh_ok(&format!(
        "mkdir -p \"$(dirname {p})\" && touch {p} && unshare --net sh -c 'mount --bind /proc/self/ns/net {p}'"
    ));
    p.into_owned()
}

fn in_ns(node: &Node, pin: &str, cmd: &str) -> String {
    node.sh_ok(&format!("nsenter --net={pin} {cmd}"))
}

fn add(node: &Node, n: u32, pin: &str, ports: &[&str]) -> serde_json::Value {
    let id = id(n);
    let mut args = vec!["network", "add", "--id", &id, "--netns", pin];
    for p in ports {
        args.extend(["-p", p]);
    }
    serde_json::from_str(node.podbox_ok(&args).trim()).unwrap()
}

fn ip_of(a: &serde_json::Value) -> String {
    a["ip"].as_str().unwrap().to_string()
}

/// A whoami web server (busybox httpd + a CGI printing REMOTE_ADDR) on `port` inside `pin`.
fn serve(node: &Node, pin: &str, port: u16) {
    let www = node.dir.join(format!("www-{port}"));
    std::fs::create_dir_all(www.join("cgi-bin")).unwrap();
    let cgi = www.join("cgi-bin/ip");
    std::fs::write(&cgi, "#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n").unwrap();
    node.sh_ok(&format!("chmod +x {}", cgi.display()));
    // httpd daemonizes; it lives in the node's PID namespace and ends with the node.
    in_ns(node, pin, &format!("busybox httpd -p {port} -h {}", www.display()));
}

/// Ask the whoami server at ip:port, from `pin` (or from the node itself); returns the source
/// address the server saw, or None if it could not be reached.
fn whoami(node: &Node, pin: Option<&str>, ip: &str, port: u16) -> Option<String> {
    let req = format!("printf 'GET /cgi-bin/ip HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {ip} {port}");
    let cmd = match pin {
        Some(p) => format!("nsenter --net={p} sh -c \"{req}\""),
        None => req,
    };
    let out = node.sh(&cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    // httpd listens on IPv6 too and reports IPv4 peers as [::ffff:a.b.c.d].
    let addr = |l: &str| l.trim().trim_start_matches("[::ffff:").trim_end_matches(']').to_string();
    text.contains("200 OK").then(|| addr(text.lines().rev().find(|l| !l.trim().is_empty()).unwrap()))
}

/// The test host outside the pod range: a netns with eth0 = 192.168.100.2, joined to the node's
/// eth0 = 192.168.100.1, with a route to the pod subnet via the node (like the F7 router).
fn outside_host(node: &Node) -> String {
    let ext = pin(node, "ext");
    node.sh_ok(&format!(
        "ip link add eth0 type veth peer name eth0 netns {ext} && ip addr add {NODE_IP}/24 dev eth0 && ip link set eth0 up"
    ));
    in_ns(node, &ext, &format!("sh -c 'ip link set lo up && ip addr add {EXT_IP}/24 dev eth0 && ip link set eth0 up && ip route add 10.244.0.0/16 via {NODE_IP}'"));
    ext
}

fn veth_count(node: &Node) -> usize {
    node.sh_ok("ip -o link show type veth").lines().filter(|l| l.contains(": veth")).count()
}

fn ipam_files(node: &Node) -> Vec<String> {
    node.sh_ok(&format!("ls {}/network/ipam/*/ 2>/dev/null || true", node.root.display()))
        .lines()
        .filter(|l| l.starts_with("10."))
        .map(String::from)
        .collect()
}

fn host_port_elements(node: &Node) -> usize {
    node.sh_ok("nft list map ip podbox hostports 2>/dev/null || true").matches("comment").count()
}

fn unpin_all(node: &Node) {
    node.sh(&format!("for p in {}/pins/*; do umount $p; done 2>/dev/null", node.dir.display()));
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn pods_talk_directly_masquerade_outside_and_host_ports() {
    require_root!();
    let node = Node::new("net-e2e");
    let ext = outside_host(&node);
    let (p1, p2) = (pin(&node, "p1"), pin(&node, "p2"));
    let a1 = add(&node, 1, &p1, &[]);
    let a2 = add(&node, 2, &p2, &["8080:80"]);
    let (ip1, ip2) = (ip_of(&a1), ip_of(&a2));
    assert_ne!(ip1, ip2);
    assert_eq!(a1["gateway"], "10.244.0.1");

    // Inside a pod: only lo and eth0, default route via the gateway.
    let links: Vec<String> = in_ns(&node, &p1, "ip -o link")
        .lines()
        .map(|l| l.split(':').nth(1).unwrap().trim().split('@').next().unwrap().to_string())
        .collect();
    assert_eq!(links, ["lo", "eth0"]);
    assert!(in_ns(&node, &p1, "ip route show default").contains("default via 10.244.0.1 dev eth0"));

    // Pod to pod through the bridge, no NAT: the receiver sees the sender's pod IP.
    serve(&node, &p2, 80);
    assert_eq!(whoami(&node, Some(&p1), &ip2, 80).as_deref(), Some(ip1.as_str()));

    // Pod to outside (not in 10.0.0.0/8): masqueraded to the node's address.
    serve(&node, &ext, 9000);
    assert_eq!(whoami(&node, Some(&p1), EXT_IP, 9000).as_deref(), Some(NODE_IP));

    // Host port 8080 → pod2:80 from the outside host (its own address is kept), from the node
    // (its own address and loopback), and from pod2 itself (hairpin).
    assert_eq!(whoami(&node, Some(&ext), NODE_IP, 8080).as_deref(), Some(EXT_IP));
    assert!(whoami(&node, None, NODE_IP, 8080).is_some());
    assert!(whoami(&node, None, "127.0.0.1", 8080).is_some());
    assert!(whoami(&node, Some(&p2), NODE_IP, 8080).is_some(), "hairpin: a pod through its own host port");

    // Masquerade off: the outside host sees the pod IP (it routes the pod subnet via the node).
    node.podbox_ok(&["network", "config", "--masquerade", "false"]);
    assert_eq!(whoami(&node, Some(&p1), EXT_IP, 9000).as_deref(), Some(ip1.as_str()));

    let show = node.podbox_ok(&["network", "show"]);
    assert!(show.contains(&id(1)) && show.contains(&ip2) && show.contains("10.244.0.1/24"), "{show}");

    node.podbox_ok(&["network", "del", "--id", &id(1)]);
    node.podbox_ok(&["network", "del", "--id", &id(2)]);
    node.podbox_ok(&["network", "del", "--id", &id(2)]); // idempotent
    assert_eq!(veth_count(&node), 0, "pod veths left");
    assert!(ipam_files(&node).is_empty());
    assert_eq!(host_port_elements(&node), 0);
    assert!(whoami(&node, Some(&ext), NODE_IP, 8080).is_none());
    unpin_all(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_taken_host_port_is_refused_before_anything_changes() {
    require_root!();
    let node = Node::new("net-port");
    let (p1, p2) = (pin(&node, "p1"), pin(&node, "p2"));
    add(&node, 1, &p1, &["8080:80"]);
    let out = node.podbox(&["network", "add", "--id", &id(2), "--netns", &p2, "-p", "8081:81", "-p", "8080:80"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("host port 8080/tcp is already used by pod {}", id(1))), "{err}");
    assert_eq!(veth_count(&node), 1);
    assert_eq!(ipam_files(&node).len(), 1);
    assert_eq!(host_port_elements(&node), 1);
    node.podbox_ok(&["network", "del", "--id", &id(1)]);
    unpin_all(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn failures_after_the_veth_exists_leave_nothing_behind() {
    require_root!();
    let node = Node::new("net-fail");
    let p = pin(&node, "p1");
    for step in ["veth", "nat"] {
        let out = node.sh(&format!(
            "PODBOX_NET_FAIL_AFTER={step} {PODBOX} --root {} network add --id {} --netns {p} -p 8080:80",
            node.root.display(),
            id(1)
        ));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("rolled back") && err.contains(&format!("injected failure after {step}")), "{err}");
        assert_eq!(veth_count(&node), 0, "veth left after failing at {step}");
        assert!(ipam_files(&node).is_empty(), "address left after failing at {step}");
        assert_eq!(host_port_elements(&node), 0, "host port left after failing at {step}");
        assert!(!in_ns(&node, &p, "ip -o link").contains("eth0"), "pod eth0 left after failing at {step}");
    }
    // The same pod then attaches fine.
    add(&node, 1, &p, &["8080:80"]);
    node.podbox_ok(&["network", "del", "--id", &id(1)]);
    unpin_all(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn bridge_name_taken_by_a_non_bridge_or_conflicting_address_is_refused() {
    require_root!();
    let node = Node::new("net-conflict");
    let p = pin(&node, "p1");
    node.sh_ok("ip link add cbr0 type veth peer name cbr0peer");
    let out = node.podbox(&["network", "add", "--id", &id(1), "--netns", &p]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists but is not a bridge"));
    node.sh_ok("ip link del cbr0 && ip link add cbr0 type bridge && ip addr add 172.17.0.1/16 dev cbr0");
    let out = node.podbox(&["network", "add", "--id", &id(1), "--netns", &p]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("bridge cbr0 has address 172.17.0.1/16"));
    assert!(ipam_files(&node).is_empty());
    // Without the address, the bridge (made with the kernel's defaults) is claimed: podbox turns
    // its multicast snooping off, as on the bridges it makes.
    node.sh_ok("ip addr flush dev cbr0");
    assert_eq!(node.sh_ok("ip -d link show cbr0 | grep -o 'mcast_snooping [01]'").trim(), "mcast_snooping 1");
    node.podbox_ok(&["network", "add", "--id", &id(1), "--netns", &p]);
    assert_eq!(node.sh_ok("ip -d link show cbr0 | grep -o 'mcast_snooping [01]'").trim(), "mcast_snooping 0");
    node.podbox_ok(&["network", "del", "--id", &id(1)]);
    unpin_all(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn concurrent_adds_never_share_an_address() {
    require_root!();
    let node = Node::new("net-conc");
    let pins: Vec<String> = (0..20).map(|n| pin(&node, &format!("p{n}"))).collect();
    let children: Vec<_> = (0..20u32)
        .map(|n| node.podbox_spawn(&["network", "add", "--id", &id(n), "--netns", &pins[n as usize]]))
        .collect();
    let mut ips: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            ip_of(&serde_json::from_slice(&out.stdout).unwrap())
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20);
    assert_eq!(veth_count(&node), 20);
    node.podbox_ok(&["network", "gc"]); // no pod is live
    assert_eq!(veth_count(&node), 0);
    assert!(ipam_files(&node).is_empty());
    unpin_all(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn racing_pods_never_share_a_host_port() {
    require_root!();
    let node = Node::new("net-race");
    let pins: Vec<String> = (0..6).map(|n| pin(&node, &format!("p{n}"))).collect();
    let children: Vec<_> = (0..6u32)
        .map(|n| node.podbox_spawn(&["network", "add", "--id", &id(n), "--netns", &pins[n as usize], "-p", "7000:80"]))
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    assert_eq!(outs.iter().filter(|o| o.status.success()).count(), 1);
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("host port 7000/tcp is already used by pod"), "{err}");
    }
    assert_eq!(veth_count(&node), 1);
    assert_eq!(ipam_files(&node).len(), 1);
    assert_eq!(host_port_elements(&node), 1);
    node.podbox_ok(&["network", "gc"]);
    assert_eq!((veth_count(&node), ipam_files(&node).len(), host_port_elements(&node)), (0, 0, 0));
    unpin_all(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_full_subnet_is_refused_and_everything_is_removed() {
    require_root!();
    let node = Node::new("net-full");
    let root = node.root.display().to_string();
    let pins = node.dir.join("pins").display().to_string();
    // One shell loop inside the node: 253 pins and adds without 500 nsenter round trips.
    let ids: Vec<String> = (0..254).map(id).collect();
    std::fs::write(node.dir.join("ids"), ids.join("\n") + "\n").unwrap();
    let out = node.sh_ok(&format!(
        "mkdir -p {pins}; n=0; head -n 253 {d}/ids | while read id; do n=$((n+1)); touch {pins}/$n; \
           unshare --net sh -c \"mount --bind /proc/self/ns/net {pins}/$n\"; \
           {PODBOX} --root {root} network add --id $id --netns {pins}/$n || exit 1; done",
        d = node.dir.display()
    ));
    let mut ips: Vec<&str> = out.lines().map(|l| l.split("\"ip\":\"").nth(1).unwrap().split('"').next().unwrap()).collect();
    assert_eq!(ips.len(), 253);
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 253);
    assert!(!ips.contains(&"10.244.0.1") && !ips.contains(&"10.244.0.0") && !ips.contains(&"10.244.0.255"));

    let last = pin(&node, "last");
    let out = node.podbox(&["network", "add", "--id", &ids[253], "--netns", &last]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no free address in 10.244.0.0/24"));
    assert_eq!(veth_count(&node), 253);

    node.sh_ok(&format!("while read id; do {PODBOX} --root {root} network del --id $id || exit 1; done < {}/ids", node.dir.display()));
    assert_eq!(veth_count(&node), 0);
    assert!(ipam_files(&node).is_empty());
    assert_eq!(host_port_elements(&node), 0);
    unpin_all(&node);
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn node_subnets_from_a_cluster_range() {
    require_root!();
    let node = Node::new("net-cfg");
    let cfg = node.podbox_ok(&["network", "config", "--cluster-cidr", "10.0.0.0/14", "--node-index", "2"]);
    assert!(cfg.contains("10.0.2.0/24") && cfg.contains("10.0.2.1"), "{cfg}");
    let out = node.podbox(&["network", "config", "--cluster-cidr", "10.0.0.0/14", "--node-index", "1024"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));
    let p = pin(&node, "p1");
    let a = add(&node, 1, &p, &[]);
    assert_eq!(ip_of(&a), "10.0.2.2");
    let out = node.podbox(&["network", "config", "--subnet", "10.0.3.0/24"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("while 1 pod address(es) are allocated"));
    node.podbox_ok(&["network", "del", "--id", &id(1)]);
    node.podbox_ok(&["network", "config", "--subnet", "10.0.3.0/24"]);
    unpin_all(&node);
}

/// F6 and F7: two nodes on 10.100.0.0/24. With default configs their pods collide (same subnet);
/// with slices of a cluster range plus routes "slice via node", pods reach each other by pod IP
/// with no NAT in between.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn two_nodes_collide_by_default_and_route_with_a_cluster_range() {
    require_root!();
    let (a, b) = (Node::new("net-node-a"), Node::new("net-node-b"));
    common::wire(&a, "eth0", &b, "eth0");
    a.sh_ok("ip addr add 10.100.0.2/24 dev eth0");
    b.sh_ok("ip addr add 10.100.0.3/24 dev eth0");

    // F6: the same default subnet on both nodes hands out the same address.
    let (pa, pb) = (pin(&a, "pa"), pin(&b, "pb"));
    assert_eq!(ip_of(&add(&a, 1, &pa, &[])), ip_of(&add(&b, 2, &pb, &[])));
    a.podbox_ok(&["network", "del", "--id", &id(1)]);
    b.podbox_ok(&["network", "del", "--id", &id(2)]);

    // F7: node A gets 10.0.1.0/24, node B 10.0.2.0/24, and each routes the other's slice.
    // (The config change also takes the old 10.244.0.1 off the bridges.)
    a.podbox_ok(&["network", "config", "--cluster-cidr", "10.0.0.0/14", "--node-index", "1"]);
    b.podbox_ok(&["network", "config", "--cluster-cidr", "10.0.0.0/14", "--node-index", "2"]);
    a.sh_ok("ip route add 10.0.2.0/24 via 10.100.0.3");
    b.sh_ok("ip route add 10.0.1.0/24 via 10.100.0.2");
    let ipa = ip_of(&add(&a, 1, &pa, &[]));
    let ipb = ip_of(&add(&b, 2, &pb, &[]));
    assert!(ipa.starts_with("10.0.1.") && ipb.starts_with("10.0.2."), "{ipa} {ipb}");
    serve(&b, &pb, 80);
    assert_eq!(whoami(&a, Some(&pa), &ipb, 80).as_deref(), Some(ipa.as_str()), "pod to pod across nodes, no NAT");
    unpin_all(&a);
    unpin_all(&b);
}
