//! The pod network through `pod create` (issue #3 at the pod level): parallel creates never share
//! an address, a failed create leaves no veth/address/pod, host ports reach a pod's container.
mod common;

use common::{Node, json, wait_until};

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn twenty_parallel_pod_creates_get_distinct_addresses() {
    require_root!();
    let node = Node::new("parallel");
    let children: Vec<_> = (0..20).map(|i| node.podbox_spawn(&["pod", "create", &format!("p{i}")])).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let pods = json(&node.podbox_ok(&["pod", "ls", "--json"]));
    let mut ips: Vec<String> = pods.as_array().unwrap().iter().map(|p| p["attachment"]["ip"].as_str().unwrap().to_string()).collect();
    assert_eq!(ips.len(), 20);
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "an address was handed out twice");
    // every pod answers on its own address
    for ip in &ips {
        node.sh_ok(&format!("ping -c1 -W2 {ip} >/dev/null"));
    }
    node.podbox_ok(&["pod", "rm", "-f", "--all"]);
    node.assert_clean();
    // The kernel removes each veth with its pod's network namespace, in the background.
    assert!(wait_until(5, || node.sh_ok("ip -o link show type veth | wc -l").trim() == "0"));
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn neither_end_of_a_pod_veth_has_ipv6_addresses_and_ipv4_works() {
    require_root!();
    let node = Node::new("v6");
    node.podbox_ok(&["pod", "create", "a"]);
    let p = json(&node.podbox_ok(&["pod", "inspect", "a"]));
    let veth = p["attachment"]["host_veth"].as_str().unwrap();
    let netns = node.root.join("pods").join(p["id"].as_str().unwrap()).join("ns/net");
    // A bridge port with hairpin, up, and no IPv6 of its own (disable_ipv6: no link-local
    // address, DAD or MLD for the node's end, nor its ff00::/8 route in the node's table).
    let link = node.sh_ok(&format!("ip -d link show {veth}"));
    assert!(link.contains("hairpin on") && link.contains("state UP"), "{link}");
    let bridge = p["attachment"]["bridge"].as_str().unwrap();
    assert!(link.contains(&format!("master {bridge}")), "{link}");
    assert_eq!(node.sh_ok(&format!("cat /proc/sys/net/ipv6/conf/{veth}/disable_ipv6")).trim(), "1");
    assert_eq!(node.sh_ok(&format!("ip -6 addr show dev {veth}")).trim(), "");
    assert_eq!(node.sh_ok(&format!("ip -6 route show table all dev {veth}")).trim(), "");
    // The bridge: no multicast snooping (per-port work for every other port, netlink.rs), and
    // the gateway's MAC derived from its address as a pod's is.
    let br = node.sh_ok(&format!("ip -d link show {bridge}"));
    assert!(br.contains("mcast_snooping 0"), "{br}");
    let gw: std::net::Ipv4Addr = p["attachment"]["gateway"].as_str().unwrap().parse().unwrap();
    let o = gw.octets();
    assert!(br.contains(&format!("link/ether 0a:58:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])), "{br}");
    // Nor has the pod's eth0 (the pod network is IPv4; no link-local address, whose DAD probe
    // and MLD reports the bridge would flood to every pod), and IPv4 works through it.
    let ns = |cmd: &str| node.sh_ok(&format!("nsenter --net={} {cmd}", netns.display()));
    let eth0 = ns("ip -d link show eth0");
    assert!(eth0.contains("addrgenmode none") && eth0.contains("state UP"), "{eth0}");
    assert_eq!(ns("ip -6 addr show dev eth0").trim(), "");
    ns(&format!("ping -c 1 -W 2 {}", p["attachment"]["gateway"].as_str().unwrap()));
    node.podbox_ok(&["pod", "rm", "-f", "a"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_failed_create_leaves_no_pod_veth_or_address_and_host_ports_work() {
    require_root!();
    let node = Node::new("hostport");
    node.podbox_ok(&["pod", "create", "web", "-p", "8080:80"]);
    node.podbox_ok(&["run", "--pod", "web", "--name", "srv", "-d", "--", "httpd", "-f", "-p", "80", "-h", "/var/www"]);
    let ip = json(&node.podbox_ok(&["pod", "inspect", "web"]))["attachment"]["ip"].as_str().unwrap().to_string();
    assert!(wait_until(5, || node.sh(&format!("wget -qO- http://{ip}:80")).status.success()));
    // through the host port, from the node itself (its loopback)
    assert!(node.sh_ok("wget -qO- http://127.0.0.1:8080").contains("hello from podbox"));
    let before_links = node.sh_ok("ip -o link show type veth | wc -l");
    let out = node.podbox(&["pod", "create", "thief", "-p", "8080:80"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("8080"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.sh_ok("ip -o link show type veth | wc -l"), before_links);
    let pods = json(&node.podbox_ok(&["pod", "ls", "--json"]));
    assert_eq!(pods.as_array().unwrap().len(), 1, "the failed pod left a record");
    let ipam = node.sh_ok(&format!("ls {}/network/ipam/*/ | grep -c '^10\\.' || true", node.root.display()));
    assert_eq!(ipam.trim(), "1", "the failed pod kept an address");
    node.podbox_ok(&["pod", "rm", "-f", "web"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn podbox_refuses_to_run_without_root() {
    require_root!();
    let node = Node::new("nonroot");
    let out = node.sh(&format!("setpriv --reuid=65534 --regid=65534 --clear-groups {} --root /tmp/none pod ls", common::PODBOX));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must run as root"), "{}", String::from_utf8_lossy(&out.stderr));
}
