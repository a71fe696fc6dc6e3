//! Stopping and removing a pod's containers: signal with a grace period, then the cgroup; the
//! monitor told not to restart; the directory through the pod's trash, which `gc` empties.

use std::fs;
use std::time::Duration;
use crate::pod::model::{ContainerRecord, ContainerState, PodRecord};
use crate::pod::{Ctx, PodError, Result, hooks, spec, volumes};
use crate::container::cgroups::Cgroup;
use crate::container::{ProcRef, STOP_FILE};
use crate::state;

use super::*;

/// The container's cgroup: as recorded, or where podbox puts it (records of older versions).
pub(super) fn cgroup_of(pod: &PodRecord, name: &str, rec: Option<&ContainerRecord>) -> Result<Cgroup> {
    let path = rec.and_then(|r| r.cgroup.clone()).unwrap_or_else(|| spec::container_cgroup(pod, name));
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
pub(super) fn kill_cgroup(cg: &Cgroup, name: &str) -> Result<()> {
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
pub(super) fn end_monitor(monitor: Option<ProcRef>, kill: bool) {
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
pub(super) fn discard(ctx: &Ctx, pod: &PodRecord, name: &str) -> Result<()> {
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
    let gone = trash.join(format!("{name}-{}", crate::pod::new_id()));
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
        let never_started = |s: &crate::pod::model::ContainerStatus| {
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
