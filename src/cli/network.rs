//! `podbox network ...` (alias `net`): node network config, live state and its picture, routes for
//! peers, and CNI-like plumbing (`add`/`del`) that attaches any pinned network namespace — for
//! testing the network layer alone and for benchmarks. Thin: parsing and printing around
//! `crate::network`, with the pod list from the pod layer for the picture.

use std::path::PathBuf;

use anyhow::{Context, bail};
use ipnet::Ipv4Net;

use crate::network::{self, NetConfig, PortMapping, config, ipam, view};
use crate::pod::Ctx;
use crate::pod::model::ContainerState;

#[derive(Debug, Clone, clap::Subcommand)]
// A subcommand's flags are defined only when it is invoked (cli::Cmd says why).
#[command(defer = true)]
pub enum NetworkCmd {
    /// Change the node network config (only the given options; the rest is kept).
    Config(ConfigFlags),
    /// Print the config and the live state (bridge, attached veths, addresses, host ports), then a
    /// picture of the node's network read from the kernel: interfaces, bridge ports, each pod's
    /// veth pair with its IP and the processes sharing its namespace, routes.
    Show {
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// `text` (the terminal picture), `dot` (Graphviz) or `svg` (needs the `dot` program).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Print the route peers need to reach this node's pods ("SUBNET via NODE-ADDRESS", as for
    /// `ip route add` on the router or on each other node).
    Routes {
        /// The interface peers reach this node on (default: that of the default route).
        #[arg(long)]
        via_dev: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Attach the network namespace pinned at PATH as pod ID; prints the attachment as JSON.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        netns: PathBuf,
        /// HOST:CONTAINER[/tcp|udp], repeatable.
        #[arg(short = 'p', long = "port")]
        ports: Vec<PortMapping>,
    },
    /// Detach pod ID (idempotent).
    Del {
        #[arg(long)]
        id: String,
    },
    /// On a CNI node: run the plugins' CHECK for pod ID.
    Check {
        #[arg(long)]
        id: String,
    },
    /// Free everything of pods not listed.
    Gc {
        #[arg(long = "live")]
        live: Vec<String>,
    },
}

/// The options of `network config`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFlags {
    #[arg(long)]
    pub bridge: Option<String>,
    /// Pod subnet of this node, e.g. 10.244.0.0/24.
    #[arg(long, conflicts_with_all = ["cluster_cidr", "node_index"])]
    pub subnet: Option<Ipv4Net>,
    /// Cluster-wide pod range; with --node-index picks this node's slice of it.
    #[arg(long, requires = "node_index")]
    pub cluster_cidr: Option<Ipv4Net>,
    #[arg(long, requires = "cluster_cidr")]
    pub node_index: Option<u32>,
    /// Prefix length of a node's slice of --cluster-cidr.
    #[arg(long, default_value_t = 24)]
    pub node_mask: u8,
    /// Bridge address (default: first address of the subnet).
    #[arg(long)]
    pub gateway: Option<std::net::Ipv4Addr>,
    #[arg(long)]
    pub mtu: Option<u32>,
    #[arg(long)]
    pub hairpin: Option<bool>,
    #[arg(long)]
    pub masquerade: Option<bool>,
    /// Destinations not masqueraded (repeatable; replaces the list; "none" empties it).
    #[arg(long = "no-masquerade-dst")]
    pub no_masquerade_dst: Vec<String>,
    /// Wire pods with the CNI plugins of the first network config list in --cni-conf-dir
    /// instead of the built-in bridge.
    #[arg(long, conflicts_with = "builtin")]
    pub cni: bool,
    /// Where the CNI network configs are (implies --cni; default /etc/cni/net.d).
    #[arg(long, conflicts_with = "builtin")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins are, colon-separated (implies --cni; default /usr/lib/cni:/opt/cni/bin).
    #[arg(long, conflicts_with = "builtin")]
    pub cni_bin_dir: Option<String>,
    /// Back to the built-in bridge.
    #[arg(long)]
    pub builtin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Dot,
    Svg,
}

pub fn run(ctx: &Ctx, cmd: NetworkCmd) -> anyhow::Result<i32> {
    let root = ctx.root.path.as_path();
    match cmd {
        NetworkCmd::Config(flags) => configure(root, flags),
        NetworkCmd::Show { json, format: Some(f) } if !json && f != Format::Text => {
            let dot = view::dot(&view::gather(&sandboxes(ctx)?)?);
            if f == Format::Dot {
                print!("{dot}");
            } else {
                print!("{}", svg(&dot)?);
            }
            Ok(0)
        }
        NetworkCmd::Show { json, .. } => {
            let st = network::status(root)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(0);
            }
            if let Some(c) = &st.cni {
                print_cni(c);
                println!();
                print!("{}", view::text(&view::gather(&sandboxes(ctx)?)?));
                return Ok(0);
            }
            print_builtin(&st);
            println!();
            print!("{}", view::text(&view::gather(&sandboxes(ctx)?)?));
            Ok(0)
        }
        NetworkCmd::Routes { via_dev, json } => {
            let r = network::peer_route(root, via_dev.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{r}");
            }
            Ok(0)
        }
        NetworkCmd::Add { id, netns, ports } => {
            let a = network::setup(root, &id, &netns, &ports)?;
            println!("{}", serde_json::to_string(&a)?);
            Ok(0)
        }
        NetworkCmd::Del { id } => {
            network::teardown(root, &id)?;
            Ok(0)
        }
        NetworkCmd::Check { id } => {
            let cfg = NetConfig::load(root)?;
            let c = cfg.cni.ok_or_else(|| anyhow::anyhow!("this node uses the built-in bridge; CHECK is a CNI operation"))?;
            network::cni::check(root, &c, &id)?;
            Ok(0)
        }
        NetworkCmd::Gc { live } => {
            network::gc(root, &live)?;
            Ok(0)
        }
    }
}

/// `network config`: the flags over the saved config, refused while pods depend on what they
/// change; applied to the node at once.
fn configure(root: &std::path::Path, f: ConfigFlags) -> anyhow::Result<i32> {
    let old = NetConfig::load(root)?;
    let mut cfg = old.clone();
    apply_cni_flags(&mut cfg, &f)?;
    let attached = network::cni::cache::all(root)?;
    if cfg.cni != old.cni && (!attached.is_empty() || !ipam::allocations(root)?.is_empty()) {
        bail!("cannot switch between the built-in bridge and CNI (or change the CNI dirs) while pods are attached; remove the pods first");
    }
    apply_bridge_flags(&mut cfg, f)?;
    let in_use = ipam::allocations(root)?;
    if (cfg.subnet != old.subnet || cfg.gateway != old.gateway || cfg.bridge != old.bridge) && !in_use.is_empty() {
        bail!(
            "cannot change the bridge, subnet or gateway while {} pod address(es) are allocated (first: {} for pod {}); remove the pods first",
            in_use.len(),
            in_use[0].ip,
            in_use[0].pod_id
        );
    }
    // A node network another root owns is not ours to reconfigure; refused before saving.
    network::check_owner(root, &old.bridge)?;
    cfg.save(root)?;
    // Takes effect now (NAT policy, stale bridge address), not at the next pod.
    network::reconfigure(root, &old, &cfg)?;
    println!("{}", serde_json::to_string_pretty(&cfg)?);
    Ok(0)
}

/// --builtin, --cni, --cni-conf-dir, --cni-bin-dir; the plugins are looked for now.
fn apply_cni_flags(cfg: &mut NetConfig, f: &ConfigFlags) -> anyhow::Result<()> {
    if f.builtin {
        cfg.cni = None;
    }
    if f.cni || f.cni_conf_dir.is_some() || f.cni_bin_dir.is_some() {
        let mut c = cfg.cni.take().unwrap_or_default();
        if let Some(d) = &f.cni_conf_dir {
            c.conf_dir = d.clone();
        }
        if let Some(b) = &f.cni_bin_dir {
            c.bin_dirs = std::env::split_paths(b).collect();
        }
        // Say now, not at the first pod, when there is nothing to use.
        let list = network::cni::conf::load_dir(&c.conf_dir)?;
        for i in 0..list.plugins.len() {
            network::cni::exec::find_plugin(list.plugin_type(i), &c.bin_dirs)?;
        }
        cfg.cni = Some(c);
    }
    Ok(())
}

/// The built-in bridge's flags: name, subnet (given, or this node's slice of the cluster's),
/// gateway, MTU, hairpin, masquerading.
fn apply_bridge_flags(cfg: &mut NetConfig, f: ConfigFlags) -> anyhow::Result<()> {
    if let Some(b) = f.bridge {
        cfg.bridge = b;
    }
    let subnet = match (f.subnet, f.cluster_cidr, f.node_index) {
        (Some(s), _, _) => Some(s),
        (None, Some(c), Some(i)) => Some(config::node_subnet(c, i, f.node_mask)?),
        _ => None,
    };
    if let Some(s) = subnet {
        cfg.subnet = s;
        cfg.gateway = config::first_host(s);
    }
    if let Some(g) = f.gateway {
        cfg.gateway = g;
    }
    if let Some(m) = f.mtu {
        cfg.mtu = m;
    }
    if let Some(h) = f.hairpin {
        cfg.hairpin = h;
    }
    if let Some(m) = f.masquerade {
        cfg.masquerade = m;
    }
    if !f.no_masquerade_dst.is_empty() {
        cfg.no_masquerade_dst = f
            .no_masquerade_dst
            .iter()
            .filter(|s| s.as_str() != "none")
            .map(|s| s.parse().with_context(|| format!("--no-masquerade-dst {s:?}")))
            .collect::<anyhow::Result<_>>()?;
    }
    Ok(())
}

/// `network show` of the built-in bridge: config, bridge, the pods' veths and addresses, host ports.
fn print_builtin(st: &network::NetStatus) {
    let c = &st.config;
    let nomasq: Vec<String> = c.no_masquerade_dst.iter().map(|n| n.to_string()).collect();
    println!("bridge      {} ({})", c.bridge, if st.bridge_present { "present" } else { "not created yet" });
    println!("subnet      {}  gateway {}  mtu {}", c.subnet, c.gateway, c.mtu);
    println!("hairpin     {}  masquerade {} (except to {})", c.hairpin, c.masquerade, nomasq.join(", "));
    println!("addresses   {}", st.bridge_addresses.join(", "));
    println!("ports:");
    for p in &st.ports {
        let ip = p.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
        let id = p.pod_id.as_deref().unwrap_or("(unknown pod)");
        println!("  {:<15} {:<4} {:<15} {}", p.host_veth, if p.oper_up { "up" } else { "down" }, ip, id);
    }
    let orphans: Vec<_> = st.allocations.iter().filter(|(ip, _)| !st.ports.iter().any(|p| p.ip == Some(*ip))).collect();
    for (ip, id) in orphans {
        println!("  (no veth)            {ip:<15} {id}");
    }
    if !st.host_ports.is_empty() {
        println!("host ports:");
        for h in &st.host_ports {
            println!("  {h}");
        }
    }
}

fn print_cni(c: &network::cni::CniStatus) {
    println!("network     CNI, configs in {}", c.conf_dir.display());
    if let Some(e) = &c.error {
        println!("error       {e}");
    }
    if let (Some(f), Some(n), Some(v)) = (&c.conf_file, &c.network, &c.cni_version) {
        println!("config      {} (network {n}, cniVersion {v})", f.display());
    }
    for (p, s) in c.plugins.iter().zip(&c.plugin_status) {
        println!("  plugin    {p:<12} {s}");
    }
    println!("attachments:");
    for (id, ip, veth) in &c.attachments {
        println!("  {veth:<15} {ip:<15} {id}");
    }
}

/// The pods of this node as sandboxes for the picture: label, network namespace (its pin, or the
/// pause's namespace if the pin is gone) and the processes sharing it.
fn sandboxes(ctx: &Ctx) -> anyhow::Result<Vec<view::SandboxInput>> {
    let mut out = Vec::new();
    for p in ctx.pods()? {
        let netns = match (p.namespaces.get("net"), &p.pause) {
            (Some(pin), _) if pin.exists() => pin.clone(),
            (_, Some(pause)) => PathBuf::from(format!("/proc/{}/ns/net", pause.pid)),
            _ => continue,
        };
        let mut members = vec![match &p.pause {
            Some(x) if x.alive() => format!("pause pid {}", x.pid),
            _ => "pause (not running)".into(),
        }];
        for c in ctx.container_statuses(&p)? {
            let state = match (c.state, &c.exit) {
                (ContainerState::Exited, Some(e)) => format!("exited ({})", e.code),
                (s, _) => format!("{s:?}").to_lowercase(),
            };
            let pid = c.record.pid.filter(|_| c.state == ContainerState::Running).map(|x| format!(" pid {}", x.pid)).unwrap_or_default();
            members.push(format!("{} {state}{pid}", c.record.name));
        }
        out.push(view::SandboxInput { label: format!("pod {}", p.name), netns, members });
    }
    Ok(out)
}

/// Render DOT as SVG with Graphviz's `dot`.
fn svg(dot: &str) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = match Command::new("dot").arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("--format svg needs Graphviz's `dot` program (Debian: apt-get install graphviz); `--format dot` prints the graph to render elsewhere")
        }
        Err(e) => return Err(e).context("starting dot"),
    };
    child.stdin.take().expect("piped").write_all(dot.as_bytes()).context("writing to dot")?;
    let out = child.wait_with_output().context("waiting for dot")?;
    if !out.status.success() {
        bail!("dot failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).context("dot wrote non-UTF-8")
}
