//! `podbox pod ...`: create, apply, generate, ls, inspect, stop, rm.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::pod::model::{ContainerState, PodRecord, PodSpec, parse_port};
use crate::pod::{Ctx, containers, init_containers, lifecycle, manifest, volumes};

#[derive(Subcommand, Debug)]
// A subcommand's flags are defined only when it is invoked (cli::Cmd says why).
#[command(defer = true)]
pub enum PodCmd {
    /// Create a pod: pinned net/ipc/uts namespaces, a pause process, and its network.
    Create(CreateArgs),
    /// Create pods and their containers from a Kubernetes Pod manifest (JSON or YAML; several
    /// documents or a `kind: List` make several pods).
    Apply {
        /// The manifest; `-` reads standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[arg(long, default_value = "bridge", value_parser = ["bridge", "none"])]
        network: String,
        /// List the fields that were accepted and ignored, and why.
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        storage: super::container::StorageArgs,
        /// Where `seccompProfile: {type: Localhost, localhostProfile: PATH}` profiles are.
        #[arg(long, default_value = manifest::SECCOMP_ROOT)]
        seccomp_root: PathBuf,
    },
    /// Print a pod as a Kubernetes Pod manifest (YAML) that `pod apply` takes back.
    Generate { pod: String },
    /// List pods.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show a pod's record, namespaces, network and containers as JSON.
    Inspect { pod: String },
    /// Stop a pod's containers and its pause; release its network.
    Stop {
        pod: String,
        /// Seconds between SIGTERM (after preStop hooks) and SIGKILL; default: the pod's
        /// terminationGracePeriodSeconds, else 10.
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
    },
    /// Remove pods.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        /// Every pod of this root.
        #[arg(long, conflicts_with = "pods")]
        all: bool,
        pods: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Share one PID namespace among the pod's containers (the pause is PID 1).
    #[arg(long)]
    pub share_pid: bool,
    /// Forward a node port to the pod: HOST:CONTAINER[/tcp|udp].
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// `bridge`: a veth on the node bridge with an address; `none`: only loopback.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "none"])]
    pub network: String,
    /// A volume the pod's containers can mount (`run -v NAME:/PATH`), repeatable:
    /// NAME or NAME:emptyDir (a directory living as long as the pod), NAME:tmpfs[:SIZE] (emptyDir
    /// in memory, SIZE like 64Mi), NAME:hostPath=PATH[:TYPE] (a node path; TYPE Directory,
    /// DirectoryOrCreate, File, FileOrCreate, Socket, CharDevice, BlockDevice).
    #[arg(long = "volume", value_name = "NAME[:KIND]")]
    pub volume: Vec<String>,
    /// Run the pod's containers in a user namespace of the pod: root inside, a range of 65536
    /// unprivileged host uids/gids of the pod's own outside (Kubernetes' hostUsers: false).
    #[arg(long)]
    pub userns: bool,
}

pub fn run(ctx: &Ctx, cmd: &PodCmd) -> anyhow::Result<i32> {
    match cmd {
        PodCmd::Create(a) => create(ctx, a),
        PodCmd::Apply { file, network, verbose, storage, seccomp_root } => apply(ctx, file, network, *verbose, storage, seccomp_root),
        PodCmd::Generate { pod } => {
            let p = ctx.find_pod(pod)?;
            let cs = ctx.container_statuses(&p)?;
            let (doc, notes) = manifest::generate::pod_manifest(&p, &cs);
            for n in notes {
                eprintln!("note: {n}");
            }
            print!("{}", serde_yaml_ng::to_string(&doc)?);
            Ok(0)
        }
        PodCmd::Ls { json } => list(ctx, *json),
        PodCmd::Inspect { pod } => {
            let p = ctx.find_pod(pod)?;
            let cs = ctx.container_statuses(&p)?;
            let mut v = serde_json::to_value(&p)?;
            v["pause_alive"] = serde_json::json!(p.pause.map(|x| x.alive()).unwrap_or(false));
            v["containers"] = serde_json::to_value(&cs)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        PodCmd::Stop { pod, time } => {
            let grace = time.or_else(|| ctx.find_pod(pod).ok().and_then(|p| p.grace_seconds)).unwrap_or(10);
            lifecycle::stop(ctx, pod, Duration::from_secs(grace))?;
            Ok(0)
        }
        PodCmd::Rm { force, all, pods } => remove(ctx, *force, *all, pods),
    }
}

/// `pod create`: a pod from flags.
fn create(ctx: &Ctx, a: &CreateArgs) -> anyhow::Result<i32> {
    let spec = PodSpec {
        name: a.name.clone(),
        hostname: a.hostname.clone(),
        share_pid: a.share_pid,
        network: a.network == "bridge",
        ports: a.publish.iter().map(|p| parse_port(p)).collect::<Result<_, _>>()?,
        volumes: a.volume.iter().map(|v| volumes::parse_volume_flag(v)).collect::<Result<_, _>>()?,
        userns: a.userns,
        ..Default::default()
    };
    let rec = lifecycle::create(ctx, &spec)?;
    println!("{}", rec.id);
    Ok(0)
}

/// `pod apply`: every pod of a manifest is checked, then all are created (or none), then their
/// containers are started.
fn apply(ctx: &Ctx, file: &Path, network: &str, verbose: bool, storage: &super::container::StorageArgs, seccomp_root: &Path) -> anyhow::Result<i32> {
    let text = manifest::read(file)?;
    let mut pods = manifest::parse_all(&text)?;
    manifest::load_seccomp_profiles(&mut pods, seccomp_root)?;
    // Everything is checked before anything is created.
    let mut warnings = Vec::new();
    for spec in &mut pods {
        // hostNetwork: the node's network, not a pod network.
        spec.network = network == "bridge" && !spec.node_namespaces.contains("net");
        for c in spec.init_containers.iter_mut().chain(spec.containers.iter_mut()) {
            storage.apply(c)?;
        }
        warnings.extend(spec.validate()?.into_iter().map(|w| format!("pod {}: {w}", spec.name)));
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
    report_ignored(&pods, verbose);
    let created = create_all(ctx, &pods)?;
    Ok(start_all(ctx, &pods, &created))
}

/// Says which manifest fields were accepted and ignored: each one with `--verbose`, else a count.
fn report_ignored(pods: &[PodSpec], verbose: bool) {
    let mut ignored: Vec<&String> = Vec::new();
    for i in pods.iter().flat_map(|p| &p.ignored) {
        if !ignored.contains(&i) {
            ignored.push(i);
        }
    }
    if verbose {
        for i in &ignored {
            eprintln!("ignored: {i}");
        }
    } else if !ignored.is_empty() {
        eprintln!("note: {} fields were accepted and ignored (see --verbose, or `pod inspect`)", ignored.len());
    }
}

/// Creates every pod, or, when one fails, removes those already made: the manifest is applied
/// whole or not at all.
fn create_all(ctx: &Ctx, pods: &[PodSpec]) -> anyhow::Result<Vec<PodRecord>> {
    let mut created = Vec::new();
    for spec in pods {
        match lifecycle::create(ctx, spec) {
            Ok(rec) => created.push(rec),
            Err(e) => {
                for rec in &created {
                    let _ = lifecycle::remove(ctx, &rec.id, true);
                }
                return Err(anyhow::anyhow!("pod {}: {e}", spec.name));
            }
        }
    }
    Ok(created)
}

/// Runs each created pod's init containers, then its app containers; prints each pod's id and
/// returns the exit code (1 when anything failed to start; the pods stay, as in Kubernetes).
fn start_all(ctx: &Ctx, pods: &[PodSpec], created: &[PodRecord]) -> i32 {
    let mut failed = Vec::new();
    let mut code = 0;
    for (spec, rec) in pods.iter().zip(created) {
        // Init containers in the foreground, in order; the app containers only after.
        if let Err(e) = init_containers::run_all(ctx, &rec.id, &spec.init_containers, &mut |m| eprintln!("pod {}: {m}", spec.name)) {
            eprintln!("podbox: {e}");
            println!("{}", rec.id);
            code = 1;
            continue;
        }
        for c in &spec.containers {
            if let Err(e) = containers::run(ctx, &rec.id, c, true) {
                // A container that cannot start is reported; the pod stays, as in Kubernetes.
                eprintln!("podbox: container {} of pod {} failed to start: {e}", c.name, spec.name);
                failed.push(format!("{}/{}", spec.name, c.name));
            }
        }
        println!("{}", rec.id);
    }
    if !failed.is_empty() {
        eprintln!("podbox: the pods were created, but {} container(s) failed to start ({}); see `podbox ps`", failed.len(), failed.join(", "));
        return 1;
    }
    code
}

/// `pod ls`: a table, or the records as JSON.
fn list(ctx: &Ctx, json: bool) -> anyhow::Result<i32> {
    let pods = ctx.pods()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&pods)?);
        return Ok(0);
    }
    let mut rows = Vec::new();
    for p in &pods {
        let cs = ctx.container_statuses(p)?;
        let running = cs.iter().filter(|c| c.state == ContainerState::Running).count();
        let pause_alive = p.pause.map(|x| x.alive()).unwrap_or(false);
        let phase = match (p.phase, pause_alive) {
            (crate::pod::model::PodPhase::Ready, false) => "dead (run podbox gc)".to_string(),
            (ph, _) => format!("{ph:?}").to_lowercase(),
        };
        rows.push(vec![
            p.name.clone(),
            p.id[..12].to_string(),
            phase,
            p.attachment.as_ref().map(|a| a.ip.to_string()).unwrap_or_else(|| "-".into()),
            format!("{running}/{}", cs.len()),
            // As kubectl counts it: ready app containers of all app containers.
            format!("{}/{}", cs.iter().filter(|c| c.ready).count(), cs.iter().filter(|c| !c.record.spec.as_ref().is_some_and(|s| s.init)).count()),
            p.pause.map(|x| x.pid.to_string()).unwrap_or_else(|| "-".into()),
            p.created_at.clone(),
        ]);
    }
    super::table(&["NAME", "ID", "STATE", "IP", "RUNNING", "READY", "PAUSE", "CREATED"], &rows);
    Ok(0)
}

/// `pod rm`: the named pods, or all of them.
fn remove(ctx: &Ctx, force: bool, all: bool, pods: &[String]) -> anyhow::Result<i32> {
    if all {
        let errs = lifecycle::remove_all(ctx, force)?;
        for e in &errs {
            eprintln!("podbox: {e}");
        }
        return Ok(if errs.is_empty() { 0 } else { 1 });
    }
    if pods.is_empty() {
        anyhow::bail!("name at least one pod, or use --all");
    }
    let mut code = 0;
    for k in pods {
        if let Err(e) = lifecycle::remove(ctx, k, force) {
            eprintln!("podbox: {e}");
            code = 1;
        }
    }
    Ok(code)
}
