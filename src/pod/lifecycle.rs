//! Pod lifecycle: create (pins → shm → cgroup and pause → network → record), stop, remove, and `gc`, which
//! finishes the removal of whatever a crash left behind. Every removal path goes through
//! `destroy`, which is idempotent and works from the pod id alone.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::model::{PodPhase, PodRecord, PodSpec};
use super::{Ctx, PodError, Result, containers, new_id, sandbox, spec, userns_range, volumes};
use crate::container::cgroups::Cgroup;
use crate::network;
use crate::state;

/// Network namespace inode → the PIDs in it (`sandbox::netns_users`).
type NetnsUsers = std::collections::HashMap<u64, Vec<i32>>;

/// Create a pod sandbox and return its record. On error everything is rolled back.
pub fn create(ctx: &Ctx, spec: &PodSpec) -> Result<PodRecord> {
    crate::trace::step("start");
    spec.validate()?;
    ctx.check_rootfs()?;
    // Checks that look at the node come before anything is made.
    volumes::check_node(&spec.volumes)?;
    let _lock = ctx.root.lock()?;
    if name_taken(ctx, &spec.name)? {
        return Err(PodError::NameTaken { kind: "pod".into(), name: spec.name.clone(), pod: String::new() });
    }
    let id = new_id();
    let dir = ctx.root.pod_dir(&id);
    fs::create_dir_all(&dir).map_err(|e| PodError::Kernel(format!("creating {}: {e}", dir.display())))?;
    // The name entry before the record: a crash in between leaves an entry whose pod does not
    // exist, which counts as free.
    let entry = names_dir(ctx).join(&spec.name);
    fs::write(&entry, &id).map_err(|e| PodError::Kernel(format!("writing {}: {e}", entry.display())))?;
    let mut rec = PodRecord {
        id: id.clone(),
        name: spec.name.clone(),
        // A pod in the node's uts namespace has the node's hostname.
        hostname: match spec.node_namespaces.contains("uts") {
            true => nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
            false => spec.hostname.clone().unwrap_or_else(|| spec.name.clone()),
        },
        phase: PodPhase::Creating,
        created_at: state::now_rfc3339(),
        share_pid: spec.share_pid,
        network: spec.network,
        ports: spec.ports.clone(),
        namespaces: Default::default(),
        node_namespaces: spec.node_namespaces.clone(),
        attachment: None,
        pause: None,
        declared_ports: spec.containers.iter().filter(|c| !c.ports.is_empty()).map(|c| (c.name.clone(), c.ports.clone())).collect(),
        labels: spec.labels.clone(),
        ignored_fields: spec.ignored.clone(),
        volumes: spec.volumes.clone(),
        fs_group: spec.fs_group,
        grace_seconds: spec.grace_seconds,
        user_range: if spec.userns { Some(userns_range::allocate(ctx)?) } else { None },
        cgroup: Some(spec::new_pod_cgroup(&id)),
    };
    // The record comes first: from here on, a crash leaves something `gc` can find.
    state::write_json(&ctx.pod_record_path(&id), &rec)?;
    crate::trace::step("lock, name, first record");
    match build(ctx, &mut rec) {
        Ok(()) => Ok(rec),
        Err(e) => {
            destroy(ctx, &id, Some(&rec));
            Err(e)
        }
    }
}

/// The pod name index: `<root>/names/<name>` holds the pod's id.
fn names_dir(ctx: &Ctx) -> std::path::PathBuf {
    ctx.root.path.join("names")
}

/// Whether a pod named `name` exists. Performance: the name index answers without reading every
/// pod record (which made each create O(pods)). A root without the index (pods created by an
/// older podbox) is indexed once from the records. Call with the root lock held.
fn name_taken(ctx: &Ctx, name: &str) -> Result<bool> {
    let dir = names_dir(ctx);
    let err = |e: std::io::Error| PodError::Kernel(format!("pod name index {}: {e}", dir.display()));
    if !dir.is_dir() {
        let tmp = ctx.root.path.join("names.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(err)?;
        for p in ctx.pods()? {
            fs::write(tmp.join(&p.name), &p.id).map_err(err)?;
        }
        fs::rename(&tmp, &dir).map_err(err)?;
    }
    match fs::read_to_string(dir.join(name)) {
        Ok(id) => Ok(!id.is_empty() && ctx.pod_record_path(id.trim()).exists()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(err(e)),
    }
}

fn build(ctx: &Ctx, rec: &mut PodRecord) -> Result<()> {
    let dir = ctx.root.pod_dir(&rec.id);
    let pins = sandbox::pin_namespaces(&dir.join("ns"), &rec.hostname, &rec.node_namespaces, rec.user_range)?;
    rec.namespaces = pins.clone();
    crate::trace::step("namespace pins");
    if !rec.node_namespaces.contains("ipc") {
        // (A pod in the node's IPC namespace uses the node's /dev/shm: pod::spec.)
        sandbox::mount_shm(&dir.join("shm"))?;
    }
    write_etc(&dir.join("etc"), rec)?;
    volumes::setup(&dir, &rec.volumes, rec.fs_group)?;
    crate::trace::step("shm, etc, volumes");
    // The pod's cgroup comes into being with the pause's child of it; containers add theirs.
    let pause_cg = Cgroup::resolve(&spec::pause_cgroup(rec))?;
    pause_cg.create(None)?;
    crate::trace::step("cgroup");
    // The pause is started before the network: this keeps every fork ahead of the threads the
    // network layer may use.
    let pause = sandbox::start_pause(&pins, &pause_cg.procs_files())?;
    rec.pause = Some(pause);
    state::write_json(&ctx.pod_record_path(&rec.id), rec)?;
    crate::trace::step("pause, record");
    if rec.share_pid && !rec.node_namespaces.contains("pid") {
        // Only a pod that shares its PID namespace lets containers join the pause's.
        let pin = dir.join("ns/pid");
        sandbox::pin_pid_namespace(&pause, &pin)?;
        rec.namespaces.insert("pid".into(), pin);
    }
    if rec.network {
        rec.attachment = Some(network::setup_pod(&ctx.root.path, &rec.id, &rec.name, &pins["net"], &rec.ports)?);
        write_etc(&dir.join("etc"), rec)?;
    }
    rec.phase = PodPhase::Ready;
    state::write_json(&ctx.pod_record_path(&rec.id), rec)?;
    crate::trace::step("etc, final record");
    Ok(())
}

fn write_etc(etc: &Path, rec: &PodRecord) -> Result<()> {
    let err = |e: std::io::Error| PodError::Kernel(format!("writing {}: {e}", etc.display()));
    fs::create_dir_all(etc).map_err(err)?;
    fs::write(etc.join("hostname"), format!("{}\n", rec.hostname)).map_err(err)?;
    let node_net = rec.node_namespaces.contains("net");
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match &rec.attachment {
        // In the node's network namespace: the node's names, as containerd does for hostNetwork.
        _ if node_net => hosts = fs::read_to_string("/etc/hosts").unwrap_or(hosts),
        Some(a) => hosts.push_str(&format!("{}\t{}\n", a.ip, rec.hostname)),
        None => hosts.push_str(&format!("127.0.1.1\t{}\n", rec.hostname)),
    }
    fs::write(etc.join("hosts"), hosts).map_err(err)?;
    // The node's resolver, minus loopback servers, which mean nothing inside a pod network.
    let node = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv: String = node
        .lines()
        .filter(|l| node_net || !(l.starts_with("nameserver") && (l.contains(" 127.") || l.contains(" ::1"))))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(etc.join("resolv.conf"), resolv).map_err(err)?;
    Ok(())
}

/// Tear down pod `id` from whatever exists of it: processes, cgroups, network, mounts, state. Idempotent;
/// best effort (each step runs even if an earlier one failed), errors of the network layer are
/// returned so that the caller can report them.
pub fn destroy(ctx: &Ctx, id: &str, rec: Option<&PodRecord>) -> Vec<String> {
    destroy_with(ctx, id, rec, None)
}

/// `destroy`, told by `users` (a `sandbox::netns_users` snapshot taken before, under the root
/// lock) which processes were in which network namespace, instead of scanning /proc itself.
/// Processes of the snapshot that have ended since no longer count.
fn destroy_with(ctx: &Ctx, id: &str, rec: Option<&PodRecord>, users: Option<&NetnsUsers>) -> Vec<String> {
    let dir = ctx.root.pod_dir(id);
    let mut problems = Vec::new();
    // A pod created to the end has every process recorded; otherwise also look for processes
    // in its network namespace (e.g. a pause whose PID a crashed CLI never wrote down).
    let complete = rec.map(|r| r.phase != PodPhase::Creating && r.pause.is_some()).unwrap_or(false);
    let net_pin = dir.join("ns/net");
    kill_recorded(ctx, id, rec, if complete { None } else { Some(net_pin.as_path()) });
    if !remove_cgroups(id, &mut problems) {
        return problems;
    }
    // Performance: deleting a veth synchronously costs ~20 ms of RCU waits. When no process is
    // left in the pod's network namespace, unmounting its pin drops the last reference we know
    // of, and the kernel removes the namespace — and the veth pair with it — in the background.
    // Then the explicit delete is skipped. (Should someone else still hold the namespace, the
    // veth stays until that reference goes, or `podbox gc` removes it.)
    let netns_ino = sandbox::pinned_netns_inode(&net_pin);
    let netns_idle = complete
        && netns_ino.is_some_and(|ino| match users {
            Some(u) => u.get(&ino).is_none_or(|pids| pids.iter().all(|p| !Path::new(&format!("/proc/{p}")).exists())),
            None => sandbox::processes_in_netns(ino).is_empty(),
        });
    // CNI plugins clean up inside the pod's network namespace: DEL before the pin goes.
    network::detach_before_unpin(&ctx.root.path, id);
    unmount_pod(&dir);
    let hints = network::TeardownHints {
        veth_goes_with_netns: netns_idle && sandbox::pinned_netns_inode(&net_pin).is_none(),
        // A recorded pod without host ports has no NAT elements: no need to run nft.
        no_host_ports: rec.is_some_and(|r| r.phase != PodPhase::Creating && r.ports.is_empty()),
        address: rec.and_then(|r| r.attachment.as_ref()).map(|a| a.ip),
    };
    if let Err(e) = network::teardown_with(&ctx.root.path, id, hints) {
        problems.push(e.to_string());
    }
    remove_pod_dir(&dir, &mut problems);
    // The name index entry, if it still names this pod (an entry left without its pod counts as
    // free anyway).
    if let Some(r) = rec {
        let entry = names_dir(ctx).join(&r.name);
        if fs::read_to_string(&entry).is_ok_and(|e| e.trim() == id) {
            let _ = fs::remove_file(&entry);
        }
    }
    problems
}

/// Kills the monitors, then the containers and pause that `rec` records (and, with `net_pin`,
/// any other process in that network namespace); marks each container stopped first so that
/// no restart policy starts it again while the pod goes away.
fn kill_recorded(ctx: &Ctx, id: &str, rec: Option<&PodRecord>, net_pin: Option<&Path>) {
    let mut known = Vec::new();
    let mut monitors = Vec::new();
    if let Some(r) = rec {
        known.extend(r.pause);
        if let Ok(cs) = ctx.container_statuses(r) {
            for c in cs {
                let _ = fs::write(ctx.root.container_dir(id, &c.record.name).join(crate::container::STOP_FILE), b"");
                known.extend(c.record.pid);
                monitors.extend(c.record.monitor);
            }
        }
    }
    // Monitors first: a dead monitor starts nothing more (an init it forked dies with it until
    // it is in its cgroup, and the cgroups are emptied next).
    sandbox::kill_all(None, &monitors);
    sandbox::kill_all(net_pin, &known);
}

/// Kills whatever is left in the pod's cgroup tree, which knows every process of its containers
/// and pause, recorded or not, then removes the tree. False when processes outlived SIGKILL:
/// then the pod's state must be kept.
fn remove_cgroups(id: &str, problems: &mut Vec<String>) -> bool {
    // The pod's tree, and the one a podbox before the middle levels made for it (containers
    // made since the upgrade are in the first).
    for path in [spec::new_pod_cgroup(id), spec::legacy_pod_cgroup(id)] {
        match Cgroup::resolve(&path) {
            Ok(cg) if !cg.paths().iter().any(|p| p.exists()) => {}
            Ok(cg) => {
                if let Err(left) = cg.kill_all(Duration::from_secs(10)) {
                    problems.push(format!("processes {left:?} of pod {id} did not end after SIGKILL; its state is kept, try again"));
                    return false;
                }
                // Every process is gone: the cgroups can go.
                if let Err(e) = cg.remove() {
                    problems.push(e.to_string());
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    // The middle level and the parent, once empty (rmdir refuses them before).
    for path in [spec::pod_cgroup_bucket(id), spec::CGROUP_PARENT.to_string()] {
        if let Ok(level) = Cgroup::resolve(&path) {
            level.prune();
        }
    }
    true
}

/// Unmounts what podbox mounts under pod directory `dir`, before anything there is removed: the
/// removal must never reach through a subPath's bind mount (nor an idmapped view of an image layer).
fn unmount_pod(dir: &Path) {
    // The mounts podbox makes under a pod's directory are exactly these; unmounting them by name
    // spares reading the mount table, which costs O(mounts) per read on a node with many pods.
    for m in sandbox::POD_MOUNTS {
        sandbox::unmount(&dir.join(m));
    }
    volumes::unmount_all(dir);
    userns_range::unmount_views(dir);
}

/// Removes pod directory `dir`; anything still mounted there (never seen; a safety net) is
/// found in the mount table and unmounted first.
fn remove_pod_dir(dir: &Path, problems: &mut Vec<String>) {
    if fs::remove_dir_all(dir).is_err() {
        for m in sandbox::mounts_under(dir) {
            sandbox::unmount(&m);
        }
    }
    if let Err(e) = fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound {
            problems.push(format!("removing {}: {e}", dir.display()));
        }
}

/// Stop a pod: its containers (SIGTERM, then SIGKILL after `grace`), then the pause; release its
/// network as Kubernetes' StopPodSandbox does. The namespaces and records stay until `rm`.
pub fn stop(ctx: &Ctx, key: &str, grace: Duration) -> Result<PodRecord> {
    let _lock = ctx.root.lock()?;
    let mut rec = ctx.find_pod(key)?;
    for c in ctx.container_statuses(&rec)? {
        if c.state.is_active() {
            containers::stop_one(ctx, &rec, &c.record.name, grace)?;
        }
    }
    if let Some(p) = rec.pause {
        p.signal(libc::SIGTERM);
        if !p.wait_gone(Duration::from_secs(2)) {
            p.signal(libc::SIGKILL);
            p.wait_gone(Duration::from_secs(5));
        }
    }
    if rec.network {
        network::teardown(&ctx.root.path, &rec.id)?;
        rec.attachment = None;
    }
    rec.phase = PodPhase::Stopped;
    state::write_json(&ctx.pod_record_path(&rec.id), &rec)?;
    Ok(rec)
}

/// Remove a pod. Without `force`, a pod with running containers is refused.
pub fn remove(ctx: &Ctx, key: &str, force: bool) -> Result<()> {
    let _lock = ctx.root.lock()?;
    let rec = ctx.find_pod(key)?;
    remove_locked(ctx, &rec, force, None)
}

/// Remove every pod (`pod rm --all`): one lock and one listing of the records, instead of a
/// `find_pod` (which reads every record) per pod — O(pods) rather than O(pods²). Returns the
/// error of each pod that could not be removed.
pub fn remove_all(ctx: &Ctx, force: bool) -> Result<Vec<PodError>> {
    let _lock = ctx.root.lock()?;
    let users = sandbox::netns_users();
    Ok(ctx.pods()?.iter().filter_map(|rec| remove_locked(ctx, rec, force, Some(&users)).err()).collect())
}

fn remove_locked(ctx: &Ctx, rec: &PodRecord, force: bool, users: Option<&NetnsUsers>) -> Result<()> {
    if !force {
        let running: Vec<_> = ctx.container_statuses(rec)?.into_iter().filter(|c| c.state.is_active()).map(|c| c.record.name).collect();
        if !running.is_empty() {
            return Err(PodError::Busy(format!("pod {} has running containers ({}): stop them, or use `pod rm -f`", rec.name, running.join(", "))));
        }
    }
    let problems = destroy_with(ctx, &rec.id, Some(rec), users);
    if problems.is_empty() { Ok(()) } else { Err(PodError::Kernel(format!("removing pod {}: {}", rec.name, problems.join("; ")))) }
}

/// What `gc` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    pub removed_pods: Vec<String>,
    /// "pod/container" of containers a crash left half-made.
    pub removed_containers: Vec<String>,
    pub problems: Vec<String>,
}

/// Reconcile the state with the kernel after crashes: pods left half-created by a killed CLI,
/// pods whose pause died, directories without a record; then the network layer's leftovers.
pub fn gc(ctx: &Ctx) -> Result<GcReport> {
    let _lock = ctx.root.lock()?;
    let mut report = GcReport::default();
    let mut live = Vec::new();
    for id in ctx.root.pod_ids()? {
        let rec: Option<PodRecord> = state::read_json_opt(&ctx.pod_record_path(&id)).ok().flatten();
        let dead = match &rec {
            None => true,
            // Holding the root lock means no CLI is creating it right now.
            Some(r) if r.phase == PodPhase::Creating => true,
            Some(r) if r.phase == PodPhase::Ready => !r.pause.map(|p| p.alive()).unwrap_or(false),
            Some(_) => false,
        };
        if dead {
            let name = rec.as_ref().map(|r| r.name.clone()).unwrap_or_else(|| id.clone());
            report.problems.extend(destroy(ctx, &id, rec.as_ref()));
            report.removed_pods.push(name);
        } else {
            if let Some(r) = &rec {
                let (removed, problems) = containers::gc(ctx, r);
                report.removed_containers.extend(removed);
                report.problems.extend(problems);
            }
            live.push(id);
        }
    }
    if let Err(e) = network::gc(&ctx.root.path, &live) {
        report.problems.push(e.to_string());
    }
    Ok(report)
}
