//! `podbox run | ps | exec | logs | stop | rm`: containers of pods.

use std::time::Duration;

use clap::Args;

use crate::pod::containers::{self, RunOutcome};
use crate::pod::model::{ContainerSpec, ContainerState, ContainerStatus, Resources, Security};
use crate::pod::{quantity, volumes};
use crate::container::RestartPolicy;
use crate::pod::{Ctx, PodError};

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long)]
    pub pod: String,
    /// Default: from the image's name, with a random suffix.
    #[arg(long)]
    pub name: Option<String>,
    /// The image to run (pulled as Kubernetes' default policy says: `:latest` always, other
    /// tags when missing); without it, the --rootfs directory.
    #[arg(long)]
    pub image: Option<String>,
    /// Replace the image's Entrypoint: an executable, or a JSON array.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Always, IfNotPresent or Never.
    #[arg(long = "pull", value_name = "POLICY")]
    pub pull: Option<String>,
    /// Run in the background; output goes to `podbox logs`.
    #[arg(short, long)]
    pub detach: bool,
    /// Start the container again when it ends: never, on-failure (non-zero exit) or always, with
    /// a back-off doubling from 1 s to 5 min, as the kubelet does.
    #[arg(long, default_value = "never", value_parser = ["never", "on-failure", "always"])]
    pub restart: String,
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    #[arg(short, long = "workdir")]
    pub workdir: Option<String>,
    /// UID[:GID]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Supplementary group ID (repeatable).
    #[arg(long = "group-add", value_name = "GID")]
    pub group_add: Vec<u32>,
    /// Add a capability to the default set (NET_ADMIN, CAP_NET_ADMIN or ALL; repeatable).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Remove a capability from the default set (or ALL); applied before --cap-add.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Every capability, no seccomp filter, no masked or read-only paths, writable /sys, every
    /// device: only for containers you trust with the node.
    #[arg(long)]
    pub privileged: bool,
    /// `seccomp=unconfined` runs without the default seccomp filter.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Mount the container's root file system read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit: 64m, 1g (binary units) or a Kubernetes quantity (64Mi, 1G).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPU limit in CPUs (0.5 = half of one CPU; also 500m).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Maximum number of processes and threads (-1: unlimited).
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Mount a volume of the pod: VOLUME:/PATH[:ro] (see `pod create --volume`; repeatable).
    #[arg(short = 'v', long = "volume", value_name = "VOLUME:/PATH[:ro]")]
    pub volume: Vec<String>,
    /// Mount a volume of the pod, podman's long form:
    /// type=volume,src=VOLUME,dst=/PATH[,ro][,subpath=SUB][,propagation=rslave] (repeatable).
    #[arg(long = "mount", value_name = "type=volume,src=VOLUME,dst=/PATH,...")]
    pub mount: Vec<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The command (with an image: replaces its Cmd).
    #[arg(last = true, required_unless_present = "image")]
    pub cmd: Vec<String>,
}

/// How much of the node a container's output and writes may take (run and pod apply).
#[derive(Args, Debug)]
pub struct StorageArgs {
    /// Rotate the container's log when it reaches this size (64m, 10Mi, 100k).
    #[arg(long = "log-max-size", env = "PODBOX_LOG_MAX_SIZE", default_value = "10Mi", value_name = "SIZE")]
    pub log_max_size: String,
    /// How many log files to keep, the live one included (1-100).
    #[arg(long = "log-max-files", env = "PODBOX_LOG_MAX_FILES", default_value_t = 5, value_name = "N")]
    pub log_max_files: u32,
    /// Size of the tmpfs holding the container's writable layer: writes beyond it fail with
    /// ENOSPC (256m, 1Gi).
    #[arg(long = "writable-size", env = "PODBOX_WRITABLE_SIZE", default_value = "256Mi", value_name = "SIZE")]
    pub writable_size: String,
}

impl StorageArgs {
    /// Set the container's log limits and writable layer size.
    pub fn apply(&self, c: &mut ContainerSpec) -> anyhow::Result<()> {
        if self.log_max_files == 0 || self.log_max_files > 100 {
            anyhow::bail!("--log-max-files {}: keep 1 to 100 files", self.log_max_files);
        }
        let size = quantity::memory_flag(&self.log_max_size).map_err(|e| anyhow::anyhow!("--log-max-size: {e}"))?;
        c.log = crate::container::LogLimits { max_size: size as u64, max_files: self.log_max_files, cri_format: false };
        c.writable_size = Some(quantity::memory_flag(&self.writable_size).map_err(|e| anyhow::anyhow!("--writable-size: {e}"))? as u64);
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Only this pod's containers.
    #[arg(long)]
    pub pod: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    pub pod: String,
    pub container: String,
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    #[arg(short, long = "workdir")]
    pub workdir: Option<String>,
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub pod: String,
    pub container: String,
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    pub pod: String,
    pub container: String,
    /// Seconds between SIGTERM (after the preStop hook) and SIGKILL; default: the pod's
    /// terminationGracePeriodSeconds, else 10.
    #[arg(short = 't', long = "time")]
    pub time: Option<u64>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(short, long)]
    pub force: bool,
    pub pod: String,
    pub container: String,
}

fn parse_env(v: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    v.iter()
        .map(|e| match e.split_once('=') {
            Some((k, val)) if crate::pod::model::validate_env_name(k).is_ok() && !val.contains('\0') => Ok((k.to_string(), val.to_string())),
            Some((k, _)) if !k.is_empty() => Err(anyhow::anyhow!("environment variable {e:?}: the name must be without NUL or line breaks, the value without NUL")),
            _ => Err(anyhow::anyhow!("environment variable {e:?}: expected K=V")),
        })
        .collect()
}

fn parse_user(u: &str) -> anyhow::Result<(u32, u32)> {
    let bad = || anyhow::anyhow!("user {u:?}: expected a numeric UID[:GID]");
    match u.split_once(':') {
        Some((a, b)) => Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)),
        None => {
            let uid = u.parse().map_err(|_| bad())?;
            Ok((uid, uid))
        }
    }
}

fn parse_security(a: &RunArgs) -> anyhow::Result<Security> {
    let mut sec = Security { cap_add: a.cap_add.clone(), cap_drop: a.cap_drop.clone(), privileged: a.privileged, read_only: a.read_only, ..Default::default() };
    for o in &a.security_opt {
        match o.as_str() {
            "seccomp=unconfined" | "seccomp:unconfined" => sec.seccomp_unconfined = true,
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {} // always on
            other => anyhow::bail!("--security-opt {other:?}: supported are seccomp=unconfined and no-new-privileges"),
        }
    }
    Ok(sec)
}

fn parse_resources(a: &RunArgs) -> anyhow::Result<Resources> {
    let cpu = a.cpus.as_deref().map(quantity::cpu_millis).transpose()?;
    Ok(Resources {
        memory_bytes: a.memory.as_deref().map(quantity::memory_flag).transpose()?,
        cpu_millis: cpu,
        cpu_request_millis: cpu,
        pids: a.pids_limit.map(|p| if p <= 0 { -1 } else { p }),
    })
}

/// A container name from the image's (`docker.io/library/nginx:1` → `nginx-1a2b`).
fn default_name(image: Option<&str>) -> String {
    let base = image.and_then(|i| crate::image::Reference::parse(i).ok()).map(|r| r.repository.rsplit('/').next().unwrap_or("c").to_string()).unwrap_or_else(|| "c".into());
    let base: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(50).collect();
    format!("{}-{}", base.trim_matches('-'), &crate::pod::new_id()[..4])
}

pub fn run(ctx: &Ctx, a: &RunArgs) -> anyhow::Result<i32> {
    let name = a.name.clone().unwrap_or_else(|| default_name(a.image.as_deref()));
    let entrypoint = match a.entrypoint.as_deref() {
        None => None,
        Some(e) if e.trim_start().starts_with('[') => Some(serde_json::from_str::<Vec<String>>(e).map_err(|err| anyhow::anyhow!("--entrypoint {e:?}: not a JSON array of strings: {err}"))?),
        Some(e) => Some(vec![e.to_string()]),
    };
    let mut c = ContainerSpec {
        name: name.clone(),
        image: a.image.clone(),
        pull_policy: a.pull.as_deref().map(str::parse).transpose().map_err(|e| anyhow::anyhow!("--pull {e}"))?,
        entrypoint,
        cmd: (!a.cmd.is_empty()).then(|| a.cmd.clone()),
        args: a.cmd.clone(),
        env: parse_env(&a.env)?,
        working_dir: a.workdir.clone(),
        user: a.user.as_deref().map(parse_user).transpose()?,
        ports: vec![],
        group_add: a.group_add.clone(),
        security: parse_security(a)?,
        resources: parse_resources(a)?,
        restart: match a.restart.as_str() {
            "on-failure" => RestartPolicy::OnFailure,
            "always" => RestartPolicy::Always,
            _ => RestartPolicy::Never,
        },
        init: false,
        probes: Default::default(),
        post_start: None,
        pre_stop: None,
        mounts: a.volume.iter().map(|v| volumes::parse_v_flag(v)).chain(a.mount.iter().map(|m| volumes::parse_mount_flag(m))).collect::<Result<_, _>>()?,
        ..Default::default()
    };
    a.storage.apply(&mut c)?;
    match containers::run(ctx, &a.pod, &c, a.detach) {
        Ok(RunOutcome::Detached(pid)) => {
            println!("{name} (pid {})", pid.pid);
            Ok(0)
        }
        Ok(RunOutcome::Exited(code)) => Ok(code),
        Err(e @ PodError::Container(_)) => {
            eprintln!("podbox: container {name}: {e}");
            Ok(e.exit_code())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn ps(ctx: &Ctx, a: &PsArgs) -> anyhow::Result<i32> {
    let pods = match &a.pod {
        Some(p) => vec![ctx.find_pod(p)?],
        None => ctx.pods()?,
    };
    let mut all = Vec::new();
    for p in &pods {
        for c in ctx.container_statuses(p)? {
            all.push((p.name.clone(), c));
        }
    }
    if a.json {
        let v: Vec<_> = all.iter().map(|(pod, c)| serde_json::json!({"pod": pod, "container": c})).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|(pod, c)| {
            let status = status_text(c);
            let status = if c.restarts > 0 { format!("{status} [{} restarts]", c.restarts) } else { status };
            let status = match &c.record.start_error {
                Some(err) => format!("{status}: {err}"),
                None => status,
            };
            let init = c.record.spec.as_ref().is_some_and(|s| s.init);
            vec![
                pod.clone(),
                if init { format!("{} (init)", c.record.name) } else { c.record.name.clone() },
                c.record.pid.map(|p| p.pid.to_string()).unwrap_or_else(|| "-".into()),
                c.record.started_at.clone().unwrap_or_else(|| "-".into()),
                c.record.args.join(" "),
                status,
            ]
        })
        .collect();
    super::table(&["POD", "CONTAINER", "PID", "STARTED", "COMMAND", "STATUS"], &rows);
    Ok(0)
}

/// A container's STATUS column: its state, with the exit, back-off or probe detail.
fn status_text(c: &ContainerStatus) -> String {
    match (c.state, &c.exit) {
        (ContainerState::Exited, Some(e)) => {
            let mut s = format!("exited ({})", e.code);
            if e.oom_killed {
                s.push_str(" OOMKilled");
            }
            if let Some(d) = &e.diagnosis {
                s.push_str(&format!(": {d}"));
            }
            s
        }
        (ContainerState::Exited, None) => "exited (unknown: monitor gone)".into(),
        (ContainerState::Restarting, _) => {
            let last = c.last_exit.as_ref().map(|e| format!("; last exit {}{}", e.code, if e.oom_killed { " OOMKilled" } else { "" })).unwrap_or_default();
            let why = c.last_exit.as_ref().and_then(|e| e.diagnosis.as_ref()).map(|d| format!(": {d}")).unwrap_or_default();
            format!("restarting (back-off{last}){why}")
        }
        // With probes: whether it counts as ready (and what last failed).
        (ContainerState::Running, _) if c.probe.is_some() => {
            let p = c.probe.as_ref().unwrap();
            let mut s = if !p.started { "running, starting".to_string() } else if c.ready { "running, ready".to_string() } else { "running, not ready".to_string() };
            if let (false, Some(f)) = (c.ready, &p.last_failure) {
                s.push_str(&format!(" ({f})"));
            }
            if let Some(e) = c.last_exit.as_ref().and_then(|e| e.diagnosis.as_ref()) {
                s.push_str(&format!("; last run: {e}"));
            }
            s
        }
        (s, _) => format!("{s:?}").to_lowercase(),
    }
}

pub fn exec(ctx: &Ctx, a: &ExecArgs) -> anyhow::Result<i32> {
    match containers::exec(ctx, &a.pod, &a.container, &a.cmd, &parse_env(&a.env)?, a.workdir.as_deref()) {
        Ok(code) => Ok(code),
        Err(e @ PodError::Container(_)) => {
            eprintln!("podbox: exec in {}: {e}", a.container);
            Ok(e.exit_code())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn logs(ctx: &Ctx, a: &LogsArgs) -> anyhow::Result<i32> {
    containers::logs(ctx, &a.pod, &a.container, a.follow, &mut std::io::stdout().lock())?;
    Ok(0)
}

pub fn stop(ctx: &Ctx, a: &StopArgs) -> anyhow::Result<i32> {
    let grace = a.time.or_else(|| ctx.find_pod(&a.pod).ok().and_then(|p| p.grace_seconds)).unwrap_or(10);
    containers::stop(ctx, &a.pod, &a.container, Duration::from_secs(grace))?;
    Ok(0)
}

pub fn rm(ctx: &Ctx, a: &RmArgs) -> anyhow::Result<i32> {
    containers::remove(ctx, &a.pod, &a.container, a.force)?;
    Ok(0)
}
