//! Command-line interface: clap definitions and dispatch to the layers (pods and their
//! containers, images, the node network, OCI runtime mode, the CRI server). Thin by design: it
//! parses, calls one function of a layer, and prints.

pub mod container;
pub mod image;
pub mod network;
pub mod oci;
pub mod pod;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "podbox", version, about = "A small container runtime with Kubernetes-style pods")]
pub struct Cli {
    /// State directory of this node's pods and containers.
    #[arg(long, global = true, env = "PODBOX_ROOT", default_value = "/run/podbox")]
    pub root: PathBuf,
    /// A plain directory that containers without an image run from (shared read-only; each
    /// container writes to its own overlay layer).
    #[arg(long, global = true, env = "PODBOX_ROOTFS")]
    pub rootfs: Option<PathBuf>,
    /// The image store: blobs, unpacked layers and image names.
    #[arg(long, global = true, env = "PODBOX_IMAGES", default_value = crate::image::DEFAULT_STORE)]
    pub images: PathBuf,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
// `defer`: a subcommand's flags are defined only when it is the one invoked; defining all of
// them made every command build (heap) and page in (text) every command's flags (issue #19).
#[command(defer = true)]
// `run`'s many flags make its variant large; the command line is parsed once, so no Box.
#[allow(clippy::large_enum_variant)]
pub enum Cmd {
    /// Pod sandboxes: create, apply, ls, inspect, stop, rm.
    #[command(subcommand)]
    Pod(pod::PodCmd),
    /// Run a container in a pod.
    Run(container::RunArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// Print a container's output.
    Logs(container::LogsArgs),
    /// Stop a container (SIGTERM, then SIGKILL after a grace period).
    Stop(container::StopArgs),
    /// Remove a container.
    Rm(container::RmArgs),
    /// Images: pull, load, import, ls, inspect, rm, prune.
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// The node's pod network: config, show, and CNI-like add/del plumbing.
    #[command(subcommand, visible_alias = "net")]
    Network(network::NetworkCmd),
    /// Reconcile state with the kernel after a crash: remove half-created pods, pods whose pause
    /// died, stale pins, mounts, addresses and rules.
    Gc {
        #[arg(long)]
        json: bool,
    },
    /// OCI runtime mode: the runc command line (`podbox oci create|start|state|kill|delete|…`);
    /// the same as invoking podbox through a symlink named `podbox-runc`.
    #[command(disable_help_flag = true)]
    Oci {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Serve Kubernetes' Container Runtime Interface (CRI v1) on a unix socket, from this root's
    /// pods and image store.
    Cri(CriArgs),
    /// The pause process (what every pod runs as PID 1; also usable as a minimal init).
    #[command(hide = true)]
    Pause,
}

#[derive(clap::Args, Debug)]
pub struct CriArgs {
    /// The unix socket to serve on (the kubelet's --container-runtime-endpoint).
    #[arg(long, default_value = "/run/podbox/cri.sock")]
    pub listen: PathBuf,
    /// The TCP port on 127.0.0.1 for Exec/Attach/PortForward streams (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub streaming_port: u16,
    /// Internal: do one change the server asks for (a request on stdin, the reply on stdout).
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: this worker's request neither starts nor enters a container, so the worker
    /// need not re-execute itself from a sealed copy of the binary (as the CLI's `pod create`,
    /// `pod rm` or `image pull` do not).
    #[arg(long, hide = true)]
    pub worker_outside_containers: bool,
}

fn cri(cli: &Cli, a: &CriArgs) -> anyhow::Result<i32> {
    let ctx = ctx(cli)?;
    if a.worker {
        return Ok(crate::cri::worker::main(&ctx));
    }
    // The workers get the same root, store and rootfs as the server.
    let mut globals: Vec<std::ffi::OsString> = vec!["--root".into(), cli.root.clone().into(), "--images".into(), cli.images.clone().into()];
    if let Some(r) = &cli.rootfs {
        globals.extend(["--rootfs".into(), r.clone().into()]);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(crate::cri::server::serve(ctx, globals, &a.listen, a.streaming_port))?;
    Ok(0)
}

pub fn ctx(cli: &Cli) -> anyhow::Result<crate::pod::Ctx> {
    Ok(crate::pod::Ctx::new(&cli.root, cli.rootfs.as_deref(), &cli.images)?)
}

/// Run the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match &cli.cmd {
        Cmd::Oci { args } => {
            let argv = std::iter::once("podbox oci".to_string()).chain(args.iter().cloned()).collect();
            Ok(oci::main(argv))
        }
        Cmd::Pause => Err(anyhow::anyhow!("exec of the pause process failed: {}", crate::pod::pause::exec())),
        Cmd::Pod(c) => pod::run(&ctx(&cli)?, c),
        Cmd::Network(c) => network::run(&ctx(&cli)?, c.clone()),
        Cmd::Image(c) => image::run(&ctx(&cli)?, c),
        Cmd::Run(a) => container::run(&ctx(&cli)?, a),
        Cmd::Ps(a) => container::ps(&ctx(&cli)?, a),
        Cmd::Exec(a) => container::exec(&ctx(&cli)?, a),
        Cmd::Logs(a) => container::logs(&ctx(&cli)?, a),
        Cmd::Stop(a) => container::stop(&ctx(&cli)?, a),
        Cmd::Rm(a) => container::rm(&ctx(&cli)?, a),
        Cmd::Cri(a) => cri(&cli, a),
        Cmd::Gc { json } => {
            let ctx = ctx(&cli)?;
            let r = crate::pod::lifecycle::gc(&ctx)?;
            // What killed pulls left in the image store (nothing while a pull runs).
            let tmp = if ctx.images.is_dir() { ctx.image_store()?.gc()? } else { 0 };
            if *json {
                let mut v = serde_json::to_value(&r)?;
                v["image_temporaries_removed"] = tmp.into();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for p in &r.removed_pods {
                    println!("removed pod {p}");
                }
                for c in &r.removed_containers {
                    println!("removed container {c}");
                }
                if tmp > 0 {
                    println!("removed {tmp} temporary file(s) of interrupted image pulls");
                }
                for p in &r.problems {
                    eprintln!("podbox gc: {p}");
                }
            }
            Ok(if r.problems.is_empty() { 0 } else { 1 })
        }
    }
}

/// Print rows as aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| if i + 1 == cells.len() { c.clone() } else { format!("{c:<width$}", width = w[i]) }).collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// With `defer`, a subcommand's flags are only defined when it is invoked, so a mistake in
    /// one (a duplicate name, a bad default) would surface only then: check every definition.
    #[test]
    fn every_subcommand_definition_is_valid() {
        super::Cli::command().debug_assert();
        super::oci::OciCli::command().debug_assert();
    }
}
