//! The seven figures of /work/shared/scenarios.md (F1–F7), built for real as root: nodes, a router
//! and an outside test host are throwaway `Node`s (namespaces) joined by veth cables; podbox runs
//! inside the nodes; every assertion is real traffic or real kernel state. Each test ends with
//! `assert_clean`; the nodes' Drop removes everything also when an assertion fails.
mod common;

use common::scenario::*;
use common::{Node, json, wait_until, wire};

fn container(node: &Node, pod: &str, name: &str) -> serde_json::Value {
    let v = json(&node.podbox_ok(&["pod", "inspect", pod]));
    v["containers"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or_default()
}

/// Interface names inside a container's network namespace.
fn links_inside(node: &Node, pod: &str, c: &str) -> Vec<String> {
    exec(node, pod, c, "ip -o link")
        .lines()
        .map(|l| l.split(':').nth(1).unwrap().trim().split('@').next().unwrap().to_string())
        .collect()
}

/// F1: one pod on a bridge configured like the article.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn f1_one_pod_on_a_bridge_reaches_the_outside_through_the_node() {
    require_root!();
    let (node, _host) = node_with_outside_host("f1");
    node.podbox_ok(&["network", "config", "--bridge", "docker0", "--subnet", "172.17.0.0/24"]);
    pod_with_app(&node, "p1", &[]);
    assert_eq!(pod_ip(&node, "p1"), "172.17.0.2");

    // Inside: only lo and eth0 with the pod IP, default route via the bridge.
    assert_eq!(links_inside(&node, "p1", "app"), ["lo", "eth0"]);
    assert!(exec(&node, "p1", "app", "ip -4 -o addr show eth0").contains("inet 172.17.0.2/24"));
    assert!(exec(&node, "p1", "app", "ip route show default").contains("default via 172.17.0.1 dev eth0"));
    // Node side, from the kernel: docker0 is a bridge holding 172.17.0.1/24, the pod's veth is its port.
    assert!(node.sh_ok("ip -d -o link show docker0").contains("bridge"));
    assert!(node.sh_ok("ip -4 -o addr show docker0").contains("inet 172.17.0.1/24"));
    let veth = json(&node.podbox_ok(&["pod", "inspect", "p1"]))["attachment"]["host_veth"].as_str().unwrap().to_string();
    assert!(node.sh_ok("ip -o link show master docker0").contains(&veth));

    // Out through the bridge and the node's eth0: the outside host sees the node's address.
    assert_eq!(whoami(&node, "p1", "app", OUTSIDE).as_deref(), Some(OUTSIDE_GW));

    node.podbox_ok(&["pod", "rm", "-f", "p1"]);
    // The kernel removes the veth with the pod's network namespace, in the background.
    assert!(common::wait_until(5, || node.sh_ok("ip -o link show master docker0").trim().is_empty()), "veth left on docker0");
    node.assert_clean();
}

/// F2: a second pod, its own network namespace, the same bridge; they reach each other by IP.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn f2_two_pods_on_one_bridge_reach_each_other_by_ip() {
    require_root!();
    let node = Node::new("f2");
    node.podbox_ok(&["network", "config", "--bridge", "docker0", "--subnet", "172.17.0.0/24"]);
    pod_with_app(&node, "p1", &[]);
    pod_with_app(&node, "p2", &[]);
    assert_eq!((pod_ip(&node, "p1"), pod_ip(&node, "p2")), ("172.17.0.2".into(), "172.17.0.3".into()));
    let netns = |p: &str| exec(&node, p, "app", "readlink /proc/self/ns/net");
    assert_ne!(netns("p1"), netns("p2"), "each pod has its own network namespace");
    assert_eq!(node.sh_ok("ip -o link show master docker0").lines().count(), 2, "one veth per pod on the bridge");

    // busybox httpd in p2, wget from p1 — and p2 sees p1's own address (bridged, no NAT).
    serve(&node, "p2", "web", 80);
    assert_eq!(whoami(&node, "p1", "app", "172.17.0.3").as_deref(), Some("172.17.0.2"));
    assert!(exec(&node, "p1", "app", "timeout 5 wget -qO- http://172.17.0.3/").contains("hello from podbox"));

    node.podbox_ok(&["pod", "rm", "-f", "p1", "p2"]);
    node.assert_clean();
}

/// F3: two containers in one network namespace (one pod): one IP, one localhost, one port space.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn f3_containers_of_a_pod_share_ip_localhost_and_ports() {
    require_root!();
    let node = Node::new("f3");
    node.podbox_ok(&["pod", "create", "p"]);
    serve(&node, "p", "web", 80);
    serve(&node, "p", "alt", 8080);
    let ip = pod_ip(&node, "p");
    let netns = |c: &str| exec(&node, "p", c, "readlink /proc/self/ns/net");
    assert_eq!(netns("web"), netns("alt"));

    // Both servers reachable from outside the pod (the node) at the one pod IP.
    for port in [80, 8080] {
        let page = node.sh_ok(&format!("timeout 5 busybox wget -qO- http://{ip}:{port}/"));
        assert!(page.contains("hello from podbox"), "port {port}: {page}");
    }
    // Over localhost from one container to the other, both ways.
    assert!(exec(&node, "p", "alt", "timeout 5 wget -qO- http://localhost:80/").contains("hello from podbox"));
    assert!(exec(&node, "p", "web", "timeout 5 wget -qO- http://127.0.0.1:8080/").contains("hello from podbox"));

    // A second bind of port 80 in the same namespace fails, and podbox records the failure.
    let out = node.podbox(&["run", "--pod", "p", "--name", "second", "--", "httpd", "-f", "-p", "80", "-h", "/var/www"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Address already in use"), "{}", String::from_utf8_lossy(&out.stderr));
    let second = container(&node, "p", "second");
    assert_eq!((second["state"].as_str(), second["exit"]["code"].as_i64()), (Some("exited"), Some(1)));
    let ps = node.podbox_ok(&["ps"]);
    assert!(ps.lines().any(|l| l.contains("second") && l.contains("exited (1)")), "{ps}");
    assert_eq!(container(&node, "p", "web")["state"], "running", "the first server is unaffected");

    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

/// Processes in `node` whose argv[0] is "pause" and whose parent is the node's init (the pods'
/// pauses; the init itself is not its own child). Machine PIDs.
fn pauses(node: &Node) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat.rfind(')').and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<i32>().ok());
        if argv0.split(|b| *b == 0).next() == Some(b"pause") && ppid == Some(node.init_pid) {
            out.push(pid);
        }
    }
    out
}

/// F4: one pause per pod holds the namespaces; app containers come and go, the pod IP stays.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn f4_one_pause_per_pod_keeps_the_ip_and_exits_0_on_sigterm() {
    require_root!();
    let node = Node::new("f4");
    pod_with_app(&node, "p1", &[]);
    pod_with_app(&node, "p2", &[]);
    assert_eq!(pauses(&node).len(), 2, "one pause per pod");
    for p in ["p1", "p2"] {
        let pid = json(&node.podbox_ok(&["pod", "inspect", p]))["pause"]["pid"].as_i64().unwrap();
        assert_eq!(node.sh_ok(&format!("tr '\\0' ' ' < /proc/{pid}/cmdline")).trim(), "pause", "pause of {p}");
    }

    // Kill the app container, remove it, run it again: same namespace, same IP.
    let ip = pod_ip(&node, "p1");
    let netns = exec(&node, "p1", "app", "readlink /proc/self/ns/net");
    let pid = container(&node, "p1", "app")["pid"]["pid"].as_i64().unwrap();
    node.sh_ok(&format!("kill -9 {pid}"));
    assert!(wait_until(5, || container(&node, "p1", "app")["state"] == "exited"));
    node.podbox_ok(&["rm", "p1", "app"]);
    node.podbox_ok(&["run", "--pod", "p1", "--name", "app", "-d", "--", "sleep", "100000"]);
    assert_eq!(pod_ip(&node, "p1"), ip);
    assert_eq!(exec(&node, "p1", "app", "readlink /proc/self/ns/net"), netns);
    assert!(exec(&node, "p1", "app", "ip -4 -o addr show eth0").contains(&format!("inet {ip}/")));

    // `pod stop` ends the pod's pause (SIGTERM); the other pod's pause stays.
    node.podbox_ok(&["pod", "stop", "p1", "-t", "2"]);
    assert_eq!(pauses(&node).len(), 1);
    assert_eq!(json(&node.podbox_ok(&["pod", "inspect", "p1"]))["pause_alive"], false);

    // The pause's own contract: exit status 0 on SIGTERM (run it as a shell's child to see it).
    let out = node.sh_ok(&format!(
        "{} pause & p=$!; \
         for i in $(seq 100); do [ \"$(tr '\\0' '\\n' < /proc/$p/cmdline 2>/dev/null | head -1)\" = pause ] && break; sleep 0.01; done; \
         sleep 0.1; kill -TERM $p; wait $p; echo rc=$?",
        common::PODBOX
    ));
    assert_eq!(out.trim(), "rc=0");

    node.podbox_ok(&["pod", "rm", "-f", "p1", "p2"]);
    assert!(pauses(&node).is_empty());
    node.assert_clean();
}

/// F5: two nodes on a private network talk over their eth0.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn f5_two_nodes_on_a_private_network() {
    require_root!();
    let lan = lan("f5");
    assert!(ping(&lan.a, NODE_B) && ping(&lan.b, NODE_A) && ping(&lan.a, ROUTER));
    assert!(lan.a.sh_ok(&format!("ip route get {NODE_B}")).contains("dev eth0"));
    assert!(lan.a.sh_ok("ip route show default").contains(&format!("via {ROUTER} dev eth0")));
    assert_eq!(lan.router.sh_ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    lan.a.assert_clean();
    lan.b.assert_clean();
}

/// F6: both nodes left at the default config hand out the same pod addresses; a pod on A cannot
/// reach B's pods — A's kernel delivers every address of the subnet to its own bridge.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn f6_default_bridges_collide_and_cross_node_traffic_fails() {
    require_root!();
    let Lan { a, b, .. } = lan("f6");
    pod_with_app(&a, "a1", &[]);
    pod_with_app(&b, "b1", &[]);
    pod_with_app(&b, "b2", &[]);
    assert_eq!(pod_ip(&a, "a1"), pod_ip(&b, "b1"), "the same address on both nodes");
    let target = pod_ip(&b, "b2");
    serve(&b, "b2", "web", 80);
    // The server works — from its own node ...
    assert!(b.sh_ok(&format!("timeout 5 busybox wget -qO- http://{target}/")).contains("hello from podbox"));
    // ... but from a pod on A it is unreachable: A routes the whole subnet to its own bridge.
    assert!(a.sh_ok(&format!("ip route get {target}")).contains("dev cbr0"));
    assert_eq!(whoami(&a, "a1", "app", &target), None, "a pod on A reached {target} on B");
    assert!(!a.podbox(&["exec", "a1", "app", "--", "ping", "-c", "1", "-W", "2", &target]).status.success());

    a.podbox_ok(&["pod", "rm", "-f", "a1"]);
    b.podbox_ok(&["pod", "rm", "-f", "b1", "b2"]);
    a.assert_clean();
    b.assert_clean();
}

/// F7: per-node slices of a cluster range plus routes on the router: pod to pod by pod IP without
/// NAT; to a host outside 10.0.0.0/8 pods appear as their node.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn f7_pod_network_routes_pod_ips_and_masquerades_to_the_outside() {
    require_root!();
    let Lan { router, a, b } = lan("f7");
    // The outside test host: on the router's second leg, with a route back to the node LAN only.
    let host = Node::new("f7-host");
    wire(&router, "to-host", &host, "eth0");
    router.sh_ok(&format!("ip addr add {OUTSIDE_GW}/24 dev to-host"));
    host.sh_ok(&format!("ip addr add {OUTSIDE}/24 dev eth0 && ip route add 10.100.0.0/24 via {OUTSIDE_GW}"));
    serve_on_host(&host);

    for (node, index, slice) in [(&a, "1", "10.0.1.0/24"), (&b, "2", "10.0.2.0/24")] {
        let cfg = json(&node.podbox_ok(&["network", "config", "--cluster-cidr", "10.0.0.0/14", "--node-index", index]));
        assert_eq!(cfg["subnet"], slice);
        // Each node says which route the router needs; the router installs it.
        let route = node.podbox_ok(&["network", "routes"]);
        assert_eq!(route.trim(), format!("{slice} via {}", if index == "1" { NODE_A } else { NODE_B }));
        router.sh_ok(&format!("ip route add {}", route.trim()));
    }
    let table = router.sh_ok("ip route");
    assert!(table.contains(&format!("10.0.1.0/24 via {NODE_A}")) && table.contains(&format!("10.0.2.0/24 via {NODE_B}")), "{table}");

    assert_f7_pod_network(&a, &b);
}

/// `podbox net show` draws what the kernel has: compare its text and DOT with `ip` and `pod
/// inspect` in a node with two pods and a default route.
#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn net_show_draws_the_kernels_state() {
    require_root!();
    let (node, _host) = node_with_outside_host("netshow");
    node.sh_ok(&format!("ip route add default via {OUTSIDE}"));
    pod_with_app(&node, "p1", &[]);
    pod_with_app(&node, "p2", &[]);
    let text = node.podbox_ok(&["net", "show"]);
    let dot = node.podbox_ok(&["net", "show", "--format", "dot"]);
    let lines: Vec<&str> = text.lines().collect();

    let bridge_addr = node.sh_ok("ip -4 -o addr show cbr0");
    let bridge_addr = bridge_addr.split_whitespace().nth(3).unwrap();
    assert!(lines.iter().any(|l| l.contains("cbr0") && l.contains("bridge") && l.contains(bridge_addr)), "{text}");
    assert!(lines.iter().any(|l| l.contains("eth0") && l.contains(&format!("{OUTSIDE_GW}/24"))), "{text}");
    let default = node.sh_ok("ip route show default");
    let default = default.split_whitespace().take(5).collect::<Vec<_>>().join(" "); // default via X dev eth0
    assert!(text.contains(&default) && dot.contains(&default), "{default:?} missing:\n{text}\n{dot}");

    for p in ["p1", "p2"] {
        let inside = exec(&node, p, "app", "ip -4 -o addr show eth0");
        let addr = inside.split_whitespace().nth(3).unwrap().to_string();
        // The host end: the cbr0 port whose peer is this pod's eth0 (ifindex from inside the pod).
        let peer = exec(&node, p, "app", "cat /sys/class/net/eth0/iflink").trim().to_string();
        let veth = node.sh_ok(&format!("ip -o link show master cbr0 | awk -F': ' '$1 == {peer} {{print $2}}'"));
        let veth = veth.trim().split('@').next().unwrap().to_string();
        assert!(!veth.is_empty(), "no cbr0 port with index {peer}");
        let at = lines.iter().position(|l| l.contains(&format!("{veth} ◄─veth─► ┌─ pod {p} "))).unwrap_or_else(|| panic!("{veth} ↔ {p} missing:\n{text}"));
        assert!(lines[at + 1].contains(&format!("eth0 {addr}")), "{text}");
        let pause = json(&node.podbox_ok(&["pod", "inspect", p]))["pause"]["pid"].as_i64().unwrap();
        assert!(lines[at + 2].contains(&format!("pause pid {pause}")), "{text}");
        assert!(lines[at + 3].contains("app running"), "{text}");
        assert!(dot.contains(&format!("\"node/{veth}\" -- \"pod {p}/eth0\"")), "{dot}");
        assert!(dot.contains(&format!("\"node/{veth}\" -- \"node/cbr0\"")), "{dot}");
        assert!(dot.contains(&format!("eth0\\n{addr}")), "{dot}");
    }
    let svg = node.podbox(&["net", "show", "--format", "svg"]);
    if node.sh("command -v dot").status.success() {
        assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
    } else {
        assert!(String::from_utf8_lossy(&svg.stderr).contains("graphviz"), "a clear error without dot");
    }
    node.podbox_ok(&["pod", "rm", "-f", "p1", "p2"]);
    node.assert_clean();
}
