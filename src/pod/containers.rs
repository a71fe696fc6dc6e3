//! Containers of a pod: run (spec → container layer), exec, logs, stop, remove; and the two
//! halves of `run` apart, `create` then `start`, as CRI asks for them.

mod logs;
mod removal;

use removal::*;
pub use logs::logs;
pub use removal::{stop_one, stop, remove, TRASH, gc};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::{Process, Spec};

use super::model::{ContainerRecord, ContainerSpec, ContainerState, PodPhase, PodRecord, validate_name};
use super::{Ctx, PodError, Result, diagnose, hooks, spec, volumes};
use crate::container::cgroups::Cgroup;
use crate::container::{self, ContainerError, ProcRef, Rootfs, Stdio, monitor::StartOptions};
use crate::state;

// Where callers (cri/) have always found it; it lives in the model so that diagnose.rs needs
// nothing of this file.
pub use super::model::LOG_FILE;

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
    crate::trace::step("run: start");
    validate_name("container", &c.name)?;
    c.validate()?;
    // Image (pulled if the policy says so) or --rootfs; before the lock: a pull may take long.
    let resolved = super::image::resolve(ctx, c)?;
    let lock = ctx.root.lock()?;
    let pod = running_pod(ctx, key)?;
    crate::trace::step("run: image, lock, pod");
    let (rec, spec) = record(ctx, &pod, c, &resolved, false)?;
    crate::trace::step("run: spec, record");
    let started = launch(ctx, &pod, rec, &spec, &resolved, detach)?;
    crate::trace::step("run: started, record");
    drop(lock);
    if detach {
        return Ok(RunOutcome::Detached(started.pid));
    }
    // Signals go to the run that is current when they arrive: the monitor may have restarted it.
    let current = ctx.root.container_dir(&pod.id, &c.name).join(container::CURRENT_FILE);
    let target = || state::read_json::<container::CurrentRun>(&current).ok().map_or(Some(started.pid), |run| run.pid);
    let code = container::monitor::wait_forwarding(nix::unistd::Pid::from_raw(started.monitor.pid), &target);
    crate::trace::step("run: exited, status recorded");
    Ok(RunOutcome::Exited(code))
}

/// The first half of `run` (CRI's CreateContainer): image, checks, spec and record; the
/// container stays `created` until `start`. `add_volumes` are added to the pod first (those it
/// does not have by name yet): CRI names a container's host paths with the container, not the pod.
pub fn create(ctx: &Ctx, key: &str, c: &ContainerSpec, add_volumes: &[volumes::Volume]) -> Result<ContainerRecord> {
    validate_name("container", &c.name)?;
    c.validate()?;
    let resolved = super::image::resolve(ctx, c)?;
    let _lock = ctx.root.lock()?;
    let mut pod = running_pod(ctx, key)?;
    let new: Vec<_> = add_volumes.iter().filter(|v| !pod.volumes.iter().any(|p| p.name == v.name)).cloned().collect();
    if !new.is_empty() {
        pod.volumes.extend(new);
        state::write_json(&ctx.pod_record_path(&pod.id), &pod)?;
    }
    Ok(record(ctx, &pod, c, &resolved, true)?.0)
}

/// The second half (CRI's StartContainer): start, detached, a container `create` recorded.
pub fn start(ctx: &Ctx, key: &str, name: &str) -> Result<ProcRef> {
    let _lock = ctx.root.lock()?;
    let pod = running_pod(ctx, key)?;
    let st = ctx.container_status(&pod, name)?.ok_or_else(|| PodError::UnknownContainer { pod: pod.name.clone(), container: name.into() })?;
    if !(st.state == ContainerState::Created && st.record.awaiting_start) {
        let state = format!("{:?}", st.state).to_lowercase();
        return Err(PodError::Busy(format!("container {name} in pod {} was already started ({state}); a container starts once", pod.name)));
    }
    let requested = st.record.spec.clone().ok_or_else(|| PodError::Invalid(format!("container {name}: its record has no spec to start from")))?;
    // `create` put the image in the store; it is not pulled again.
    let resolved = super::image::resolve(ctx, &ContainerSpec { pull_policy: Some(super::model::PullPolicy::Never), ..requested })?;
    let dir = ctx.root.container_dir(&pod.id, name);
    let spec = Spec::load(dir.join("config.json")).map_err(|e| PodError::Kernel(format!("reading the spec of container {name}: {e}")))?;
    let mut rec = st.record;
    rec.awaiting_start = false;
    Ok(launch(ctx, &pod, rec, &spec, &resolved, true)?.pid)
}

/// Pod `key`, which must be running (its pause alive) for a container to be added or started.
fn running_pod(ctx: &Ctx, key: &str) -> Result<PodRecord> {
    let pod = ctx.find_pod(key)?;
    if pod.phase != PodPhase::Ready || !pod.pause.map(|p| p.alive()).unwrap_or(false) {
        return Err(PodError::Busy(format!("pod {} is not running (phase {:?}, pause gone): remove it, or run `podbox gc`", pod.name, pod.phase)));
    }
    Ok(pod)
}

/// Check that `requested` (resolved as `resolved`) can be added to `pod`, and record it: its
/// directory, staged subPaths, record (with its cgroup) and OCI spec. Call with the root lock.
fn record(ctx: &Ctx, pod: &PodRecord, requested: &ContainerSpec, resolved: &super::image::Resolved, awaiting_start: bool) -> Result<(ContainerRecord, Spec)> {
    let c = &resolved.spec;
    let dir = ctx.root.container_dir(&pod.id, &c.name);
    if let Some(existing) = ctx.container_status(pod, &c.name)? {
        let state = format!("{:?}", existing.state).to_lowercase();
        return Err(PodError::Busy(format!("container {} already exists in pod {} ({state}): remove it first with `podbox rm {} {}`", c.name, pod.name, pod.name, c.name)));
    }
    let pod_dir = ctx.root.pod_dir(&pod.id);
    volumes::check(&pod.volumes, &[("containers", "0", &c.mounts)]).map_err(|(f, m)| PodError::Invalid(format!("container {}: {}: {m}", c.name, f.trim_start_matches("spec.containers[0]."))))?;
    let spec = spec::container_spec(pod, &pod_dir, c, &dir.join("merged"))?;
    // A directory without a record is what a `run` or `rm` killed part-way leaves: clear it.
    if dir.exists() {
        discard(ctx, pod, &c.name)?;
    }
    fs::create_dir_all(&dir).map_err(|e| PodError::Kernel(format!("creating {}: {e}", dir.display())))?;
    if let Err(e) = volumes::stage_subpaths(&pod_dir, &pod.volumes, &dir, &c.mounts) {
        volumes::unstage_subpaths(&dir);
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    let rec = ContainerRecord {
        name: c.name.clone(),
        pod_id: pod.id.clone(),
        args: c.args.clone(),
        created_at: state::now_rfc3339(),
        started_at: None,
        pid: None,
        monitor: None,
        start_error: None,
        // What was asked (for `pod generate`: the user's fields, not the image's filled in).
        spec: Some(requested.clone()),
        image: resolved.image.as_ref().map(|i| i.0.clone()),
        image_digest: resolved.image.as_ref().map(|i| i.1.clone()),
        stop_signal: resolved.stop_signal,
        cgroup: Some(spec::container_cgroup(pod, &c.name)),
        awaiting_start,
    };
    // The record (with the cgroup) before any process: from here on removal finds everything.
    state::write_json(&dir.join("container.json"), &rec)?;
    let saved = spec.save(dir.join("config.json"));
    if awaiting_start {
        // `start` runs from the saved spec: without it the record is useless.
        if let Err(e) = saved {
            let _ = discard(ctx, pod, &c.name);
            return Err(PodError::Kernel(format!("saving the spec of container {}: {e}", c.name)));
        }
    }
    Ok((rec, spec))
}

/// The container's root: the image's layers under a writable layer in container directory `dir`.
fn overlay(dir: &Path, lowers: Vec<PathBuf>, writable_size: Option<u64>) -> Rootfs {
    match writable_size {
        // The writable layer on a tmpfs of its own, mounted in the container's mount
        // namespace (invisible here, gone with the container): capped, and never filling
        // the state root.
        Some(size) => Rootfs::Overlay { lowers, upper: dir.join("rw/upper"), work: dir.join("rw/work"), merged: dir.join("merged"), tmpfs: Some((dir.join("rw"), size)) },
        None => Rootfs::Overlay { lowers, upper: dir.join("upper"), work: dir.join("work"), merged: dir.join("merged"), tmpfs: None },
    }
}

/// Start a recorded container under a new monitor, then its postStart hook. Call with the root lock.
fn launch(ctx: &Ctx, pod: &PodRecord, mut rec: ContainerRecord, spec: &Spec, resolved: &super::image::Resolved, detach: bool) -> Result<container::Started> {
    let c = &resolved.spec;
    let dir = ctx.root.container_dir(&pod.id, &c.name);
    let record_path = dir.join("container.json");
    let with_monitor = {
        let rec = rec.clone();
        move |m: ProcRef| {
            let mut r = rec.clone();
            r.monitor = Some(m);
            state::write_json(&record_path, &r).map_err(|e| format!("recording the container's monitor: {e}"))
        }
    };
    let lowers = match super::userns_range::prepare_rootfs(pod, &ctx.root.pod_dir(&pod.id), &dir, &resolved.lowers, c.writable_size.is_some()) {
        Ok(l) => l,
        Err(e) => {
            // Recorded as any failed start is.
            rec.start_error = Some(e.to_string());
            let _ = state::write_json(&dir.join("container.json"), &rec);
            return Err(e);
        }
    };
    let opts = StartOptions {
        spec,
        rootfs: overlay(&dir, lowers, c.writable_size),
        state_dir: dir.clone(),
        // Detached or not, the monitor writes the log (and rotates it).
        stdio: Stdio::Tee(dir.join(LOG_FILE), c.log),
        detach,
        on_exit: Some(diagnose::on_exit),
        cgroup_procs: vec![],
        restart: c.restart,
        record_monitor: Some(&with_monitor),
        probes: c.probes.clone(),
        attach: c.attach,
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
        if let Err(e) = hooks::run(ctx, pod, &c.name, started.pid, hook, POST_START_TIMEOUT) {
            let msg = format!("postStart hook failed: {e}");
            stop_one(ctx, pod, &c.name, Duration::ZERO)?;
            rec.start_error = Some(msg.clone());
            state::write_json(&dir.join("container.json"), &rec)?;
            return Err(PodError::Invalid(format!("container {}: {msg}", c.name)));
        }
    }
    Ok(started)
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
    container::env::merge(&mut penv, container::env::entries(env));
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

/// A file's identity across renames: its inode number and birth time (inode numbers of
/// deleted files are reused at once, and rotation deletes and creates files all the time).
type FileId = (u64, Option<std::time::SystemTime>);

