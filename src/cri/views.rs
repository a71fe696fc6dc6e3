//! Conversions from podbox's records to CRI's messages: a pod's metadata, state and labels, and
//! its containers as CRI sees them (`Seen`) with their status.

use std::collections::HashMap;

use super::api;
use super::{CriError, container_id};
use crate::pod::Ctx;
use crate::pod::model::{ContainerState, ContainerStatus, PodPhase, PodRecord};

pub(super) fn sandbox_config(ctx: &Ctx, pod: &PodRecord) -> Option<api::PodSandboxConfig> {
    super::read_config(&ctx.root.pod_dir(&pod.id).join(super::SANDBOX_CONFIG))
}

pub(super) fn pod_metadata(pod: &PodRecord, cfg: Option<&api::PodSandboxConfig>) -> api::PodSandboxMetadata {
    cfg.and_then(|c| c.metadata.clone()).unwrap_or_else(|| api::PodSandboxMetadata { name: pod.name.clone(), uid: pod.id.clone(), namespace: String::new(), attempt: 0 })
}

pub(super) fn pod_state(pod: &PodRecord) -> api::PodSandboxState {
    if pod.phase == PodPhase::Ready && pod.pause.is_some_and(|p| p.alive()) { api::PodSandboxState::SandboxReady } else { api::PodSandboxState::SandboxNotready }
}

pub(super) fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(super) fn pod_labels(pod: &PodRecord, cfg: Option<&api::PodSandboxConfig>) -> HashMap<String, String> {
    cfg.map(|c| c.labels.clone()).unwrap_or_else(|| pod.labels.clone().into_iter().collect())
}

/// A container as CRI sees it.
pub(super) struct Seen {
    pub(super) pod: PodRecord,
    pub(super) status: ContainerStatus,
    pub(super) cfg: Option<api::ContainerConfig>,
    pub(super) log_path: String,
}

impl Seen {
    pub(super) fn id(&self) -> String {
        container_id(&self.pod.id, &self.status.record.name)
    }
    pub(super) fn metadata(&self) -> api::ContainerMetadata {
        self.cfg.as_ref().and_then(|c| c.metadata.clone()).unwrap_or_else(|| api::ContainerMetadata { name: self.status.record.name.clone(), attempt: 0 })
    }
    pub(super) fn state(&self) -> api::ContainerState {
        match self.status.state {
            ContainerState::Created => api::ContainerState::ContainerCreated,
            ContainerState::Running | ContainerState::Restarting => api::ContainerState::ContainerRunning,
            ContainerState::Exited => api::ContainerState::ContainerExited,
        }
    }
    pub(super) fn image(&self) -> api::ImageSpec {
        let image = self.cfg.as_ref().and_then(|c| c.image.as_ref()).map(|i| i.image.clone()).or_else(|| self.status.record.image.clone()).unwrap_or_default();
        api::ImageSpec { image, ..Default::default() }
    }
    pub(super) fn labels(&self) -> HashMap<String, String> {
        self.cfg.as_ref().map(|c| c.labels.clone()).unwrap_or_default()
    }
    pub(super) fn annotations(&self) -> HashMap<String, String> {
        self.cfg.as_ref().map(|c| c.annotations.clone()).unwrap_or_default()
    }
    pub(super) fn image_ref(&self) -> String {
        self.status.record.image_digest.clone().unwrap_or_default()
    }
}

pub(super) fn containers_of(ctx: &Ctx, pod: &PodRecord) -> Result<Vec<Seen>, CriError> {
    let sandbox = sandbox_config(ctx, pod);
    let mut out = Vec::new();
    for status in ctx.container_statuses(pod)? {
        let dir = ctx.root.container_dir(&pod.id, &status.record.name);
        let cfg: Option<api::ContainerConfig> = super::read_config(&dir.join(super::CONTAINER_CONFIG));
        let log_path = cfg.as_ref().and_then(|c| super::cri_log_path(sandbox.as_ref(), c)).unwrap_or_else(|| dir.join(crate::pod::containers::LOG_FILE));
        out.push(Seen { pod: pod.clone(), status, cfg, log_path: log_path.display().to_string() });
    }
    Ok(out)
}

pub(super) fn all_containers(ctx: &Ctx) -> Result<Vec<Seen>, CriError> {
    let mut out = Vec::new();
    for p in ctx.pods()? {
        out.extend(containers_of(ctx, &p)?);
    }
    Ok(out)
}

pub(super) fn find_seen(ctx: &Ctx, id: &str) -> Result<Seen, CriError> {
    let (pod, name) = super::find_container(ctx, id)?;
    containers_of(ctx, &pod)?.into_iter().find(|s| s.status.record.name == name).ok_or_else(|| CriError::NotFound(format!("container {id:?} not found")))
}

pub(super) fn container_status(s: &Seen) -> api::ContainerStatus {
    let rec = &s.status.record;
    let exit = s.status.exit.as_ref();
    let (reason, message) = match (s.status.state, exit) {
        (ContainerState::Exited, Some(e)) if e.oom_killed => ("OOMKilled", e.diagnosis.clone().unwrap_or_default()),
        (ContainerState::Exited, Some(e)) if e.code == 0 => ("Completed", String::new()),
        (ContainerState::Exited, Some(e)) => ("Error", e.error.clone().or_else(|| e.diagnosis.clone()).unwrap_or_default()),
        (ContainerState::Exited, None) => ("Error", rec.start_error.clone().unwrap_or_else(|| "its monitor ended without recording an exit".into())),
        _ => ("", String::new()),
    };
    api::ContainerStatus {
        id: s.id(),
        metadata: Some(s.metadata()),
        state: s.state() as i32,
        created_at: super::nanos_of(&rec.created_at),
        started_at: rec.started_at.as_deref().filter(|_| rec.pid.is_some()).map(super::nanos_of).unwrap_or(0),
        finished_at: exit.map(|e| super::nanos_of(&e.finished_at)).unwrap_or(0),
        exit_code: exit.map(|e| e.code).unwrap_or(0),
        image: Some(s.image()),
        image_ref: s.image_ref(),
        reason: reason.into(),
        message,
        labels: s.labels(),
        annotations: s.annotations(),
        // The mounts as CreateContainer asked for them (each became a hostPath volume mount).
        mounts: s.cfg.as_ref().map(|c| c.mounts.clone()).unwrap_or_default(),
        log_path: s.log_path.clone(),
        resources: None,
    }
}
