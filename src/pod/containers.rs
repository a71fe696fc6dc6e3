//! Containers of a pod: run (spec → container layer), exec, logs, stop, remove.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use oci_spec::runtime::{Process, Spec};

use super::model::{ContainerRecord, ContainerSpec, ContainerState, PodPhase, PodRecord, validate_name};
use super::{Ctx, PodError, Result, diagnose, hooks, spec, volumes};
use crate::container::cgroups::Cgroup;
use crate::container::{self, ContainerError, EXIT_FILE, ProcRef, STOP_FILE, Rootfs, Stdio, monitor::StartOptions};
use crate::state;

pub const LOG_FILE: &str = "container.log";

/// How long a postStart hook may take.
const POST_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How `run` ended for the caller.
pub enum RunOutcome {
    /// Detached: the container runs on under its monitor.
    Detached(ProcRef),
    /// Foreground: the container's exit code.
    Exited(i32),
}

/// Run container `c` in pod `key`.
pub fn run(ctx: &Ctx, key: &str, c: &ContainerSpec, detach: bool) -> Result<RunOutcome> {
    validate_name("container", &c.name)?;
    if c.args.is_empty() {
        return Err(PodError::Invalid("no command given: podbox run --pod POD --name NAME -- CMD [ARGS]".into()));
    }
    ctx.check_rootfs()?;
    let lock = ctx.root.lock()?;
    let pod = ctx.find_pod(key)?;
    if pod.phase != PodPhase::Ready || !pod.pause.map(|p| p.alive()).unwrap_or(false) {
        return Err(PodError::Busy(format!("pod {} is not running (phase {:?}, pause gone): remove it, or run `podbox gc`", pod.name, pod.phase)));
    }
    let dir = ctx.root.container_dir(&pod.id, &c.name);
    if let Some(existing) = ctx.container_status(&pod, &c.name)? {
        let state = format!("{:?}", existing.state).to_lowercase();
        return Err(PodError::Busy(format!("container {} already exists in pod {} ({state}): remove it first with `podbox rm {} {}`", c.name, pod.name, pod.name, c.name)));
    }
    let pod_dir = ctx.root.pod_dir(&pod.id);
    volumes::check(&pod.volumes, &[("containers", "0", &c.mounts)]).map_err(|(f, m)| PodError::Invalid(format!("container {}: {}: {m}", c.name, f.trim_start_matches("spec.containers[0]."))))?;
    let spec = spec::container_spec(&pod, &pod_dir, c, &ctx.rootfs)?;
    fs::create_dir_all(&dir).map_err(|e| PodError::Kernel(format!("creating {}: {e}", dir.display())))?;
    if let Err(e) = volumes::stage_subpaths(&pod_dir, &pod.volumes, &dir, &c.mounts) {
        volumes::unstage_subpaths(&dir);
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    let _ = spec.save(dir.join("config.json"));
    let mut rec = ContainerRecord {
        name: c.name.clone(),
        pod_id: pod.id.clone(),
        args: c.args.clone(),
        created_at: state::now_rfc3339(),
        started_at: None,
        pid: None,
        monitor: None,
        start_error: None,
        spec: Some(c.clone()),
    };
    state::write_json(&dir.join("container.json"), &rec)?;
    let opts = StartOptions {
        spec: &spec,
        rootfs: Rootfs::Overlay { lower: ctx.rootfs.clone(), upper: dir.join("upper"), work: dir.join("work"), merged: dir.join("merged") },
        state_dir: dir.clone(),
        stdio: if detach { Stdio::Log(dir.join(LOG_FILE)) } else { Stdio::Tee(dir.join(LOG_FILE)) },
        detach,
        on_exit: Some(diagnose::on_exit),
        cgroup_procs: vec![],
        restart: c.restart,
        probes: c.probes.clone(),
    };
    rec.started_at = Some(state::now_rfc3339());
    let started = match container::start(opts) {
        Ok(s) => s,
        Err(e) => {
            rec.start_error = Some(e.to_string());
            let _ = state::write_json(&dir.join("container.json"), &rec);
            return Err(e.into());
        }
    };
    rec.pid = Some(started.pid);
    rec.monitor = Some(started.monitor);
    state::write_json(&dir.join("container.json"), &rec)?;
    if let Some(hook) = &c.post_start {
        // As in Kubernetes: a container whose postStart hook fails is stopped.
        if let Err(e) = hooks::run(ctx, &pod, &c.name, started.pid, hook, POST_START_TIMEOUT) {
            let msg = format!("postStart hook failed: {e}");
            stop_one(ctx, &pod, &c.name, Duration::ZERO)?;
            rec.start_error = Some(msg.clone());
            state::write_json(&dir.join("container.json"), &rec)?;
            return Err(PodError::Invalid(format!("container {}: {msg}", c.name)));
        }
    }
    drop(lock);
    if detach {
        return Ok(RunOutcome::Detached(started.pid));
    }
    let code = container::monitor::wait_forwarding(nix::unistd::Pid::from_raw(started.monitor.pid), nix::unistd::Pid::from_raw(started.pid.pid));
    Ok(RunOutcome::Exited(code))
}

fn find(ctx: &Ctx, key: &str, name: &str) -> Result<(PodRecord, super::model::ContainerStatus)> {
    let pod = ctx.find_pod(key)?;
    let st = ctx.container_status(&pod, name)?.ok_or_else(|| PodError::UnknownContainer { pod: pod.name.clone(), container: name.into() })?;
    Ok((pod, st))
}

/// Run `args` inside a running container; returns its exit code.
pub fn exec(ctx: &Ctx, key: &str, name: &str, args: &[String], env: &[(String, String)], workdir: Option<&str>) -> Result<i32> {
    let (pod, st) = find(ctx, key, name)?;
    if st.state != ContainerState::Running {
        return Err(PodError::Busy(format!("container {name} in pod {} is not running", pod.name)));
    }
    let spec = Spec::load(ctx.root.container_dir(&pod.id, name).join("config.json"))
        .map_err(|e| PodError::Kernel(format!("reading the spec of container {name}: {e}")))?;
    let mut process: Process = spec.process().clone().unwrap_or_default();
    let mut penv = process.env().clone().unwrap_or_default();
    for (k, v) in env {
        penv.retain(|e| !e.starts_with(&format!("{k}=")));
        penv.push(format!("{k}={v}"));
    }
    process.set_env(Some(penv));
    process.set_args(Some(args.to_vec()));
    if let Some(w) = workdir {
        process.set_cwd(w.into());
    }
    let pid = st.record.pid.ok_or_else(|| ContainerError::NotRunning(name.into()))?;
    // The exec'd process is confined like the container: its seccomp filter and its cgroup.
    let linux = spec.linux().as_ref();
    let procs = match linux.and_then(|l| l.cgroups_path().as_ref()) {
        Some(p) => Cgroup::resolve(&p.to_string_lossy())?.procs_files(),
        None => vec![],
    };
    Ok(container::exec::exec(pid, &process, linux.and_then(|l| l.seccomp().as_ref()), &procs)?)
}

/// Copy the container's log to `out`; with `follow`, keep copying until the container has exited.
pub fn logs(ctx: &Ctx, key: &str, name: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
    let (pod, _) = find(ctx, key, name)?;
    let dir = ctx.root.container_dir(&pod.id, name);
    let path = dir.join(LOG_FILE);
    let mut pos = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // The status is read before the log so that the last bytes written before exit are seen.
        let done = !follow || ctx.container_status(&pod, name)?.map(|s| !s.state.is_active()).unwrap_or(true);
        if let Ok(mut f) = fs::File::open(&path) {
            f.seek(SeekFrom::Start(pos)).map_err(|e| PodError::Kernel(format!("reading {}: {e}", path.display())))?;
            loop {
                let n = f.read(&mut buf).map_err(|e| PodError::Kernel(format!("reading {}: {e}", path.display())))?;
                if n == 0 {
                    break;
                }
                pos += n as u64;
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    return Ok(()); // reader went away (e.g. `| head`)
                }
            }
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, wait up to `grace`, SIGKILL; then wait until the monitor has recorded the exit.
pub fn stop_one(ctx: &Ctx, pod: &PodRecord, name: &str, grace: Duration) -> Result<()> {
    // Tell the monitor first, so that it does not start the container again; only then look at
    // what runs. A monitor that was just starting a new run when the request came is caught by
    // the second round.
    fs::write(ctx.root.container_dir(&pod.id, name).join(STOP_FILE), b"").map_err(|e| PodError::Kernel(format!("stopping {name}: {e}")))?;
    for _ in 0..3 {
        let st = ctx.container_status(pod, name)?.ok_or_else(|| PodError::UnknownContainer { pod: pod.name.clone(), container: name.into() })?;
        if let (ContainerState::Running, Some(pid)) = (st.state, st.record.pid) {
            // The preStop hook first, within the grace period; SIGTERM then gets what is left.
            let mut grace = grace;
            if let (Some(hook), false) = (st.record.spec.as_ref().and_then(|s| s.pre_stop.as_ref()), grace.is_zero()) {
                let t = std::time::Instant::now();
                let _ = hooks::run(ctx, pod, name, pid, hook, grace);
                grace = grace.saturating_sub(t.elapsed());
            }
            pid.signal(libc::SIGTERM);
            if !pid.wait_gone(grace) {
                pid.signal(libc::SIGKILL);
                pid.wait_gone(Duration::from_secs(10));
            }
        }
        match st.record.monitor {
            Some(m) if !m.wait_gone(Duration::from_secs(2)) => continue,
            _ => return Ok(()),
        }
    }
    Ok(())
}

pub fn stop(ctx: &Ctx, key: &str, name: &str, grace: Duration) -> Result<()> {
    let pod = ctx.find_pod(key)?;
    stop_one(ctx, &pod, name, grace)
}

/// Remove a container; a running one only with `force` (SIGKILL first).
pub fn remove(ctx: &Ctx, key: &str, name: &str, force: bool) -> Result<()> {
    let _lock = ctx.root.lock()?;
    let (pod, st) = find(ctx, key, name)?;
    if st.state.is_active() {
        if !force {
            return Err(PodError::Busy(format!("container {name} in pod {} is running: stop it first, or use `rm -f`", pod.name)));
        }
        stop_one(ctx, &pod, name, Duration::ZERO)?;
    } else if let Some(m) = st.record.monitor {
        m.wait_gone(Duration::from_secs(5));
    }
    Cgroup::resolve(&spec::container_cgroup(&pod.id, name))?.remove()?;
    let dir = ctx.root.container_dir(&pod.id, name);
    volumes::unstage_subpaths(&dir);
    fs::remove_dir_all(&dir).map_err(|e| PodError::Kernel(format!("removing {}: {e}", dir.display())))?;
    let _ = EXIT_FILE;
    Ok(())
}
