//! A picture of the node's actual network, like the figures of the pod-networking article: node
//! interfaces, bridges and their ports, each sandbox's veth peer with its address, the processes
//! sharing each sandbox, and the routing table. `gather` reads the kernel (netlink, in the node
//! and inside each sandbox's network namespace); `text` and `dot` render a `NetView` and are pure,
//! so they are tested without root. Sandboxes come from the caller: this layer knows no pods.

use std::fmt::Write as _;
use std::path::PathBuf;

use rtnetlink::packet_route::link::{InfoKind, LinkFlags, LinkMessage};
use serde::Serialize;

use super::{NetError, netlink};

/// An interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    /// "bridge", "veth", "loopback", or another link kind ("device" when the kernel gives none).
    pub kind: String,
    pub addrs: Vec<String>,
    pub up: bool,
    /// The bridge this interface is a port of.
    pub master: Option<String>,
    /// For a veth: its peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteView {
    /// "default" or a CIDR.
    pub dst: String,
    pub via: Option<String>,
    pub dev: Option<String>,
}

/// What the caller knows of a sandbox (a pod): a label, the path of its network namespace, and
/// the processes sharing it, as lines to show ("pause pid 42", "web running").
#[derive(Debug, Clone)]
pub struct SandboxInput {
    pub label: String,
    pub netns: PathBuf,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxView {
    pub label: String,
    pub members: Vec<String>,
    /// Interfaces inside the sandbox, `lo` excluded.
    pub ifaces: Vec<Iface>,
    /// The node-side end of the sandbox's veth (found through the kernel's peer index).
    pub host_peer: Option<String>,
    /// Why its namespace could not be read, if so.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetView {
    pub hostname: String,
    pub ifaces: Vec<Iface>,
    pub routes: Vec<RouteView>,
    pub sandboxes: Vec<SandboxView>,
}

fn kind_name(l: &LinkMessage) -> String {
    match netlink::kind(l) {
        Some(InfoKind::Bridge) => "bridge".into(),
        Some(InfoKind::Veth) => "veth".into(),
        Some(InfoKind::Other(k)) => k.clone(),
        Some(k) => format!("{k:?}").to_lowercase(),
        None if netlink::name(l) == "lo" => "loopback".into(),
        None => "device".into(),
    }
}

/// Links with their addresses and bridge names, in the calling thread's network namespace.
async fn ifaces(h: &rtnetlink::Handle) -> Result<Vec<Iface>, NetError> {
    let all = netlink::links(h).await?;
    let mut out = Vec::new();
    for l in &all {
        let addrs = netlink::addresses(h, l.header.index).await?.iter().map(|(ip, p)| format!("{ip}/{p}")).collect();
        let master = netlink::controller(l).and_then(|m| all.iter().find(|x| x.header.index == m)).map(netlink::name);
        out.push(Iface {
            index: l.header.index,
            name: netlink::name(l),
            kind: kind_name(l),
            addrs,
            // Administrative state (IFF_UP), as `ip link` shows it: lo's operstate is "unknown".
            up: l.header.flags.contains(LinkFlags::Up),
            master,
            peer_index: netlink::peer_index(l),
        });
    }
    Ok(out)
}

/// Read the node's network (the calling process's namespace) and each sandbox's from the kernel.
pub fn gather(sandboxes: &[SandboxInput]) -> Result<NetView, NetError> {
    let (ifs, routes) = netlink::run(|h| async move {
        let ifs = ifaces(&h).await?;
        let routes = netlink::routes(&h).await?;
        Ok((ifs, routes))
    })?;
    let dev = |i: Option<u32>| i.and_then(|i| ifs.iter().find(|x| x.index == i)).map(|x| x.name.clone());
    let routes = routes
        .iter()
        .map(|r| RouteView {
            dst: if r.dst.prefix_len() == 0 { "default".into() } else { r.dst.to_string() },
            via: r.gateway.map(|g| g.to_string()),
            dev: dev(r.oif),
        })
        .collect();
    let sandboxes = sandboxes
        .iter()
        .map(|s| {
            let (inside, error) = match netlink::in_netns(&s.netns, |h| async move { ifaces(&h).await }) {
                Ok(v) => (v.into_iter().filter(|i| i.name != "lo").collect::<Vec<_>>(), None),
                Err(e) => (vec![], Some(e.to_string())),
            };
            // The veth's peer index points into the node's namespace (where its other end is).
            let host_peer = inside.iter().find_map(|i| i.peer_index).and_then(|p| dev(Some(p)));
            SandboxView { label: s.label.clone(), members: s.members.clone(), ifaces: inside, host_peer, error }
        })
        .collect();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    Ok(NetView { hostname, ifaces: ifs, routes, sandboxes })
}

fn iface_line(i: &Iface) -> String {
    let addrs = if i.addrs.is_empty() { "-".to_string() } else { i.addrs.join(", ") };
    format!("{:<15} {:<8} {:<18} {}", i.name, i.kind, addrs, if i.up { "up" } else { "down" })
}

/// A sandbox as a box: title, its interfaces, its members.
fn sandbox_box(s: &SandboxView) -> Vec<String> {
    let mut body: Vec<String> = s.ifaces.iter().map(|i| format!("{} {}", i.name, i.addrs.join(", "))).collect();
    if s.ifaces.is_empty() {
        body.push(s.error.clone().map(|e| format!("(unreadable: {e})")).unwrap_or_else(|| "(only lo)".into()));
    }
    body.extend(s.members.iter().cloned());
    let title = format!(" {} ", s.label);
    let width = body.iter().map(|l| l.chars().count()).chain([title.chars().count() + 1]).max().unwrap_or(0) + 2;
    let mut out = vec![format!("┌─{title}{}┐", "─".repeat(width - 1 - title.chars().count()))];
    out.extend(body.iter().map(|l| format!("│ {l}{} │", " ".repeat(width - 2 - l.chars().count()))));
    out.push(format!("└{}┘", "─".repeat(width)));
    out
}

/// The terminal picture: node interfaces, each bridge with its ports and the sandbox behind each
/// veth, sandboxes not on a bridge, and the routing table.
pub fn text(v: &NetView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "node {}", if v.hostname.is_empty() { "(this network namespace)" } else { &v.hostname });
    let top: Vec<&Iface> = v.ifaces.iter().filter(|i| i.master.is_none()).collect();
    let mut drawn = Vec::new();
    for (n, i) in top.iter().enumerate() {
        let last = n + 1 == top.len();
        let _ = writeln!(o, "{} {}", if last { "└─" } else { "├─" }, iface_line(i));
        let stem = if last { "   " } else { "│  " };
        let ports: Vec<&Iface> = v.ifaces.iter().filter(|p| p.master.as_deref() == Some(&i.name)).collect();
        for (k, p) in ports.iter().enumerate() {
            let plast = k + 1 == ports.len();
            let branch = format!("{stem}{}", if plast { "└─ " } else { "├─ " });
            let cont = format!("{stem}{}", if plast { "   " } else { "│  " });
            let head = format!("{} ◄─veth─► ", p.name);
            match v.sandboxes.iter().find(|s| s.host_peer.as_deref() == Some(&p.name)) {
                Some(s) => {
                    drawn.push(&s.label);
                    for (j, line) in sandbox_box(s).iter().enumerate() {
                        let lead = if j == 0 { format!("{branch}{head}") } else { format!("{cont}{}", " ".repeat(head.chars().count())) };
                        let _ = writeln!(o, "{lead}{line}");
                    }
                }
                None => {
                    let _ = writeln!(o, "{branch}{} (no sandbox of this node)", iface_line(p));
                }
            }
        }
    }
    let loose: Vec<&SandboxView> = v.sandboxes.iter().filter(|s| !drawn.contains(&&s.label)).collect();
    if !loose.is_empty() {
        let _ = writeln!(o, "not on a bridge:");
    }
    for s in loose {
        for line in sandbox_box(s) {
            let _ = writeln!(o, "   {line}");
        }
    }
    let _ = writeln!(o, "routes");
    for r in &v.routes {
        let _ = writeln!(o, "   {}", route_line(r));
    }
    o
}

fn route_line(r: &RouteView) -> String {
    let mut s = r.dst.clone();
    if let Some(g) = &r.via {
        let _ = write!(s, " via {g}");
    }
    if let Some(d) = &r.dev {
        let _ = write!(s, " dev {d}");
    }
    s
}

fn q(s: &str) -> String {
    // Line breaks as DOT's \n escape, so a label stays on one source line.
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// Graphviz DOT: the node as a cluster of interfaces (ports linked to their bridge), each sandbox
/// as a cluster holding its interfaces and members, a veth pair as an edge between the two ends,
/// the routing table as a note.
pub fn dot(v: &NetView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "graph podbox {{\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\", fontsize=10];");
    let _ = writeln!(o, "  subgraph cluster_node {{\n    label={};", q(&format!("node {}", v.hostname)));
    for i in &v.ifaces {
        let shape = if i.kind == "bridge" { ", style=\"rounded,bold\"" } else { "" };
        let label = format!("{} ({})\n{}", i.name, i.kind, i.addrs.join("\n"));
        let _ = writeln!(o, "    {} [label={}{shape}];", q(&format!("node/{}", i.name)), q(label.trim_end()));
    }
    for i in v.ifaces.iter().filter(|i| i.master.is_some()) {
        let _ = writeln!(o, "    {} -- {} [label=\"port\"];", q(&format!("node/{}", i.name)), q(&format!("node/{}", i.master.as_deref().unwrap())));
    }
    let routes: Vec<String> = v.routes.iter().map(route_line).collect();
    let _ = writeln!(o, "    \"node/routes\" [shape=note, label={}];", q(&format!("routes\n{}", routes.join("\n"))));
    let _ = writeln!(o, "  }}");
    for (n, s) in v.sandboxes.iter().enumerate() {
        let _ = writeln!(o, "  subgraph cluster_sandbox{n} {{\n    label={};", q(&s.label));
        for i in &s.ifaces {
            let _ = writeln!(o, "    {} [label={}];", q(&format!("{}/{}", s.label, i.name)), q(&format!("{}\n{}", i.name, i.addrs.join("\n"))));
        }
        if let Some(e) = &s.error {
            let _ = writeln!(o, "    {} [label={}];", q(&format!("{}/error", s.label)), q(e));
        }
        for (k, m) in s.members.iter().enumerate() {
            let _ = writeln!(o, "    {} [shape=ellipse, label={}];", q(&format!("{}/member{k}", s.label)), q(m));
        }
        let _ = writeln!(o, "  }}");
        if let (Some(peer), Some(i)) = (&s.host_peer, s.ifaces.iter().find(|i| i.peer_index.is_some())) {
            let _ = writeln!(o, "  {} -- {} [label=\"veth pair\", penwidth=2];", q(&format!("node/{peer}")), q(&format!("{}/{}", s.label, i.name)));
        }
    }
    o.push_str("}\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(index: u32, name: &str, kind: &str, addr: &str, master: Option<&str>, peer: Option<u32>) -> Iface {
        Iface {
            index,
            name: name.into(),
            kind: kind.into(),
            addrs: if addr.is_empty() { vec![] } else { vec![addr.into()] },
            up: true,
            master: master.map(String::from),
            peer_index: peer,
        }
    }

    /// Node A of F7: eth0 on the node LAN, cbr0 with two pods, one of them with two containers.
    fn sample() -> NetView {
        NetView {
            hostname: "node-a".into(),
            ifaces: vec![
                iface(1, "lo", "loopback", "127.0.0.1/8", None, None),
                iface(2, "eth0", "veth", "10.100.0.2/24", None, Some(7)),
                iface(3, "cbr0", "bridge", "10.0.1.1/24", None, None),
                iface(4, "veth0123456789a", "veth", "", Some("cbr0"), Some(2)),
                iface(5, "vethbbbbbbbbbbb", "veth", "", Some("cbr0"), Some(2)),
            ],
            routes: vec![
                RouteView { dst: "default".into(), via: Some("10.100.0.1".into()), dev: Some("eth0".into()) },
                RouteView { dst: "10.0.1.0/24".into(), via: None, dev: Some("cbr0".into()) },
            ],
            sandboxes: vec![
                SandboxView {
                    label: "pod web".into(),
                    members: vec!["pause pid 42".into(), "server running".into(), "client exited (0)".into()],
                    ifaces: vec![iface(2, "eth0", "veth", "10.0.1.2/24", None, Some(4))],
                    host_peer: Some("veth0123456789a".into()),
                    error: None,
                },
                SandboxView {
                    label: "pod db".into(),
                    members: vec!["pause pid 50".into()],
                    ifaces: vec![iface(2, "eth0", "veth", "10.0.1.3/24", None, Some(5))],
                    host_peer: Some("vethbbbbbbbbbbb".into()),
                    error: None,
                },
                SandboxView { label: "pod offline".into(), members: vec!["pause pid 60".into()], ifaces: vec![], host_peer: None, error: None },
            ],
        }
    }

    #[test]
    fn text_draws_bridge_ports_with_their_pods_and_routes() {
        let t = text(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "node node-a");
        let line_of = |s: &str| lines.iter().position(|l| l.contains(s)).unwrap_or_else(|| panic!("{s:?} missing:\n{t}"));
        // The bridge, then its first port with the pod box beside it, then the pod's contents.
        assert!(line_of("cbr0") < line_of("veth0123456789a ◄─veth─► ┌─ pod web"));
        assert!(!lines[line_of("veth0123456789a")].contains("bridge"));
        assert_eq!(line_of("eth0 10.0.1.2/24"), line_of("veth0123456789a") + 1);
        assert!(line_of("server running") < line_of("vethbbbbbbbbbbb ◄─veth─► ┌─ pod db"));
        assert!(lines[line_of("eth0            veth")].contains("10.100.0.2/24"));
        // Box edges line up: every line of a box has the same width.
        let web: Vec<usize> = lines[line_of("pod web")..=line_of("client exited")].iter().map(|l| l.chars().count()).collect();
        assert!(web.windows(2).all(|w| w[0] == w[1]), "{web:?}\n{t}");
        // A pod without a veth is listed too; routes come last.
        assert!(line_of("not on a bridge") < line_of("pod offline"));
        assert!(t.contains("(only lo)"));
        assert!(line_of("routes") < line_of("default via 10.100.0.1 dev eth0"));
        assert!(t.contains("10.0.1.0/24 dev cbr0"));
    }

    #[test]
    fn dot_has_clusters_ports_and_veth_edges() {
        let d = dot(&sample());
        assert!(d.starts_with("graph podbox {") && d.trim_end().ends_with('}'));
        assert!(d.contains("subgraph cluster_node") && d.contains("label=\"pod web\""));
        assert!(d.contains("\"node/veth0123456789a\" -- \"node/cbr0\" [label=\"port\"]"));
        assert!(d.contains("\"node/veth0123456789a\" -- \"pod web/eth0\" [label=\"veth pair\""));
        assert!(d.contains("\"node/cbr0\" [label=\"cbr0 (bridge)\\n10.0.1.1/24\""), "{d}");
        assert!(d.contains("default via 10.100.0.1 dev eth0"));
        assert!(!d.contains("pod offline/eth0"));
        // Balanced braces and quotes: something `dot` can parse.
        assert_eq!(d.matches('{').count(), d.matches('}').count());
        assert_eq!(d.matches('"').count() % 2, 0);
    }

    #[test]
    fn dot_escapes_quotes() {
        assert_eq!(q("a \"b\" \\c\nd"), "\"a \\\"b\\\" \\\\c\\nd\"");
    }
}
