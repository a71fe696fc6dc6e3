//! Containers of a pod: run (spec → container layer), exec, logs, stop, remove; and the two
//! halves of `run` apart, `create` then `start`, as CRI asks for them.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use oci_spec::runtime::{Process, Spec};

use super::model::{ContainerRecord, ContainerSpec, ContainerState, PodPhase, PodRecord, validate_name};
use super::{Ctx, PodError, Result, diagnose, hooks, spec, volumes};
use crate::container::cgroups::Cgroup;
use crate::container::{self, ContainerError, ProcRef, STOP_FILE, Rootfs, Stdio, monitor::StartOptions};
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
    c.validate()?;
    // Image (pulled if the policy says so) or --rootfs; before the lock: a pull may take long.
    let resolved = super::image::resolve(ctx, c)?;
    let lock = ctx.root.lock()?;
    let pod = running_pod(ctx, key)?;
    let (rec, spec) = record(ctx, &pod, c, &resolved, false)?;
    let started = launch(ctx, &pod, rec, &spec, &resolved, detach)?;
    drop(lock);
    if detach {
        return Ok(RunOutcome::Detached(started.pid));
    }
    // Signals go to the run that is current when they arrive: the monitor may have restarted it.
    let current = ctx.root.container_dir(&pod.id, &c.name).join(container::CURRENT_FILE);
    let target = || state::read_json::<container::CurrentRun>(&current).ok().map_or(Some(started.pid), |run| run.pid);
    let code = container::monitor::wait_forwarding(nix::unistd::Pid::from_raw(started.monitor.pid), &target);
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
        cgroup: Some(spec::container_cgroup(&pod.id, &c.name)),
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
        rootfs: match c.writable_size {
            // The writable layer on a tmpfs of its own, mounted in the container's mount
            // namespace (invisible here, gone with the container): capped, and never filling
            // the state root.
            Some(size) => Rootfs::Overlay { lowers, upper: dir.join("rw/upper"), work: dir.join("rw/work"), merged: dir.join("merged"), tmpfs: Some((dir.join("rw"), size)) },
            None => Rootfs::Overlay { lowers, upper: dir.join("upper"), work: dir.join("work"), merged: dir.join("merged"), tmpfs: None },
        },
        state_dir: dir.clone(),
        // Detached or not, the monitor writes the log (and rotates it).
        stdio: Stdio::Tee(dir.join(LOG_FILE), c.log),
        detach,
        on_exit: Some(diagnose::on_exit),
        cgroup_procs: vec![],
        restart: c.restart,
        record_monitor: Some(&with_monitor),
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

/// Copy the container's log to `out`, oldest rotated file first; with `follow`, keep copying
/// (across rotations) until the container has exited.
pub fn logs(ctx: &Ctx, key: &str, name: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
    let (pod, _) = find(ctx, key, name)?;
    let dir = ctx.root.container_dir(&pod.id, name);
    let path = dir.join(LOG_FILE);
    // Where we are: the file (by identity, as rotation renames it) and the offset in it.
    let mut at: Option<(FileId, u64)> = None;
    loop {
        // The status is read before the log so that the last bytes written before exit are seen.
        // The monitor writes the log: it may still be copying output after the process ended.
        let done = !follow || ctx.container_status(&pod, name)?.map(|s| !s.state.is_active() && !s.record.monitor.is_some_and(|m| m.alive())).unwrap_or(true);
        let files = log_files(&path);
        // Continue in the file we were reading, wherever rotation moved it; if it has been
        // rotated away altogether, from the oldest there is.
        let start = at.and_then(|(ino, _)| files.iter().position(|(_, i)| *i == ino)).unwrap_or(0);
        for (file, ino) in files.iter().skip(start) {
            let from = match at {
                Some((i, off)) if i == *ino => off,
                _ => 0,
            };
            let Ok(mut f) = fs::File::open(file) else { continue };
            match copy_from(&mut f, from, out) {
                Ok(Some(end)) => at = Some((*ino, end)),
                Ok(None) => return Ok(()), // reader went away (e.g. `| head`)
                Err(e) => return Err(PodError::Kernel(format!("reading {}: {e}", file.display()))),
            }
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A file's identity across renames: its inode number and birth time (inode numbers of
/// deleted files are reused at once, and rotation deletes and creates files all the time).
type FileId = (u64, Option<std::time::SystemTime>);

/// The log's files that exist, oldest first, with their identities.
fn log_files(path: &std::path::Path) -> Vec<(std::path::PathBuf, FileId)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for n in (0..MAX_LOG_FILES_SCANNED).rev() {
        let p = container::tee::rotated(path, n);
        if let Ok(m) = fs::metadata(&p) {
            out.push((p, (m.ino(), m.created().ok())));
        }
    }
    out
}

/// More rotated files than anyone keeps; `logs` looks this far.
const MAX_LOG_FILES_SCANNED: u32 = 100;

/// Copy `f` from `from` to its end into `out`; the end offset, or None if `out` is gone.
fn copy_from(f: &mut fs::File, from: u64, out: &mut dyn Write) -> std::io::Result<Option<u64>> {
    f.seek(SeekFrom::Start(from))?;
    let mut pos = from;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(Some(pos));
        }
        pos += n as u64;
        if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            return Ok(None);
        }
    }
}

/// The container's cgroup: as recorded, or where podbox puts it (records of older versions).
fn cgroup_of(pod: &PodRecord, name: &str, rec: Option<&ContainerRecord>) -> Result<Cgroup> {
    let path = rec.and_then(|r| r.cgroup.clone()).unwrap_or_else(|| spec::container_cgroup(&pod.id, name));
    Ok(Cgroup::resolve(&path)?)
}

/// SIGTERM, wait up to `grace`, SIGKILL; then wait until the monitor has recorded the exit.
/// Whatever is still in the container's cgroup after that is killed too.
pub fn stop_one(ctx: &Ctx, pod: &PodRecord, name: &str, grace: Duration) -> Result<()> {
    let unknown = || PodError::UnknownContainer { pod: pod.name.clone(), container: name.into() };
    let first = ctx.container_status(pod, name)?.ok_or_else(unknown)?;
    // Tell the monitor first, so that it does not start the container again; only then look at
    // what runs. A monitor that was just starting a new run when the request came is caught by
    // the second round.
    fs::write(ctx.root.container_dir(&pod.id, name).join(STOP_FILE), b"").map_err(|e| PodError::Kernel(format!("stopping {name}: {e}")))?;
    for _ in 0..3 {
        let st = ctx.container_status(pod, name)?.ok_or_else(unknown)?;
        if let (ContainerState::Running, Some(pid)) = (st.state, st.record.pid) {
            // The preStop hook first, within the grace period; SIGTERM then gets what is left.
            let mut grace = grace;
            if let (Some(hook), false) = (st.record.spec.as_ref().and_then(|s| s.pre_stop.as_ref()), grace.is_zero()) {
                let t = std::time::Instant::now();
                let _ = hooks::run(ctx, pod, name, pid, hook, grace);
                grace = grace.saturating_sub(t.elapsed());
            }
            pid.signal(st.record.stop_signal.unwrap_or(libc::SIGTERM));
            if !pid.wait_gone(grace) {
                pid.signal(libc::SIGKILL);
                pid.wait_gone(Duration::from_secs(10));
            }
        }
        match st.record.monitor {
            Some(m) if !m.wait_gone(Duration::from_secs(2)) => continue,
            _ => break,
        }
    }
    kill_cgroup(&cgroup_of(pod, name, Some(&first.record))?, name)
}

/// Kill every process in `cg` and wait for them to be gone: an error (naming them) if they
/// do not go, so that no caller deletes state while processes remain.
fn kill_cgroup(cg: &Cgroup, name: &str) -> Result<()> {
    cg.kill_all(Duration::from_secs(10))
        .map_err(|left| PodError::Busy(format!("container {name}: processes {left:?} of its cgroup did not end after SIGKILL; its state is kept, try again")))
}

pub fn stop(ctx: &Ctx, key: &str, name: &str, grace: Duration) -> Result<()> {
    let (pod, _) = find(ctx, key, name)?;
    stop_one(ctx, &pod, name, grace)
}

/// Remove a container; a running one only with `force`.
pub fn remove(ctx: &Ctx, key: &str, name: &str, force: bool) -> Result<()> {
    let _lock = ctx.root.lock()?;
    let (pod, st) = find(ctx, key, name)?;
    let cg = cgroup_of(&pod, name, Some(&st.record))?;
    let monitor_alive = st.record.monitor.is_some_and(|m| m.alive());
    // Running by the records, or by the kernel (a `run` killed before it recorded a PID).
    let busy = st.state.is_active() || (monitor_alive && st.exit.is_none()) || !cg.procs().is_empty();
    if busy && !force {
        return Err(PodError::Busy(format!("container {name} in pod {} is running: stop it first, or use `rm -f`", pod.name)));
    }
    if busy {
        let _ = fs::write(ctx.root.container_dir(&pod.id, name).join(STOP_FILE), b"");
    }
    end_monitor(st.record.monitor, busy);
    kill_cgroup(&cg, name)?;
    discard(ctx, &pod, name)
}

/// Make sure the container's monitor is gone: killed (`kill`), or given a moment to write the
/// exit record of a container that has ended. Killing the monitor first means it cannot start
/// anything any more: an init it forked dies with it until it is in the container's cgroup,
/// which is emptied next.
fn end_monitor(monitor: Option<ProcRef>, kill: bool) {
    if let Some(m) = monitor
        && (kill || !m.wait_gone(Duration::from_secs(5))) {
            m.signal(libc::SIGKILL);
            m.wait_gone(Duration::from_secs(5));
        }
}

/// Delete what is left of a container whose processes are gone: its cgroup, then its
/// directory. The directory is first renamed into the pod's `trash/`, so that a removal killed
/// half-way never leaves a directory that is neither a container nor gone (`gc` empties the
/// trash).
fn discard(ctx: &Ctx, pod: &PodRecord, name: &str) -> Result<()> {
    let rec: Option<ContainerRecord> = state::read_json_opt(&ctx.root.container_dir(&pod.id, name).join("container.json")).ok().flatten();
    let cg = cgroup_of(pod, name, rec.as_ref())?;
    kill_cgroup(&cg, name)?;
    cg.remove()?;
    let dir = ctx.root.container_dir(&pod.id, name);
    // Staged subPath mounts first: deleting through one would reach into the volume's source.
    volumes::unstage_subpaths(&dir);
    let trash = ctx.root.pod_dir(&pod.id).join(TRASH);
    let err = |p: &std::path::Path, e: std::io::Error| PodError::Kernel(format!("removing {}: {e}", p.display()));
    fs::create_dir_all(&trash).map_err(|e| err(&trash, e))?;
    let gone = trash.join(format!("{name}-{}", super::new_id()));
    match fs::rename(&dir, &gone) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(&dir, e)),
    }
    fs::remove_dir_all(&gone).map_err(|e| err(&gone, e))
}

/// Where removed containers' directories go on their way out.
pub const TRASH: &str = "trash";

/// `gc` for the containers of a live pod: directories without a record (a `run` killed before
/// writing it), records of containers that never started and never will (a `run` killed before
/// its monitor was allowed to start: no monitor alive, no process in the cgroup), and the
/// trash. Call with the root lock held. Returns the names removed.
pub fn gc(ctx: &Ctx, pod: &PodRecord) -> (Vec<String>, Vec<String>) {
    let (mut removed, mut problems) = (Vec::new(), Vec::new());
    let trash = ctx.root.pod_dir(&pod.id).join(TRASH);
    if let Err(e) = fs::remove_dir_all(&trash)
        && e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("removing {}: {e}", trash.display()));
        }
    let names = state::list_dir(&ctx.root.pod_dir(&pod.id).join("containers")).unwrap_or_default();
    for name in names {
        let st = match ctx.container_status(pod, &name) {
            Ok(st) => st,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let never_started = |s: &super::model::ContainerStatus| {
            s.state == ContainerState::Created && !s.record.awaiting_start && s.record.start_error.is_none() && !s.record.monitor.is_some_and(|m| m.alive())
        };
        let garbage = match &st {
            None => true,
            Some(s) => never_started(s) && cgroup_of(pod, &name, Some(&s.record)).is_ok_and(|cg| cg.procs().is_empty()),
        };
        if garbage {
            match discard(ctx, pod, &name) {
                Ok(()) => removed.push(format!("{}/{name}", pod.name)),
                Err(e) => problems.push(e.to_string()),
            }
        }
    }
    (removed, problems)
}
