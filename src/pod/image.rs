//! A container's root and process from its image: apply the pull policy (pulling through the
//! image layer when needed), then fill in what the user left open from the image's config —
//! command (Entrypoint/Cmd), environment, working directory, user — and name the layers the
//! overlay stacks. A container without an image runs from `--rootfs`.

use std::path::PathBuf;

use super::model::{ContainerSpec, PullPolicy};
use super::{Ctx, PodError, Result};
use crate::image::{self, ImageInfo, Reference, Store, config, registry};

/// A container ready for the spec: everything resolved.
pub struct Resolved {
    pub spec: ContainerSpec,
    /// Overlay lower directories, top layer first.
    pub lowers: Vec<PathBuf>,
    /// (name, manifest digest) of its image.
    pub image: Option<(String, String)>,
    pub stop_signal: Option<i32>,
}

/// Find or pull the image `reference` as `policy` (None: Kubernetes' default) says. Images made
/// on this node (`localhost/…`, also found for an unqualified name) are never pulled.
pub fn ensure_image(store: &Store, reference: &str, policy: Option<PullPolicy>, opts: &registry::PullOptions) -> Result<ImageInfo> {
    let r = Reference::parse(reference)?;
    let policy = policy.unwrap_or(if r.is_latest() { PullPolicy::Always } else { PullPolicy::IfNotPresent });
    let local = store.lookup(reference)?;
    let local_only = local.as_ref().is_some_and(|(name, _)| name.starts_with(&format!("{}/", image::reference::LOCAL)));
    match (policy, local) {
        (PullPolicy::Never, None) => Err(PodError::Invalid(format!("image {reference} is not in the store and imagePullPolicy is Never: pull, load or import it first"))),
        (PullPolicy::Never | PullPolicy::IfNotPresent, Some(_)) => Ok(store.image(reference)?),
        (PullPolicy::Always, Some(_)) if local_only => Ok(store.image(reference)?),
        _ => Ok(registry::pull(store, reference, opts)?),
    }
}

pub fn resolve(ctx: &Ctx, c: &ContainerSpec) -> Result<Resolved> {
    let Some(reference) = &c.image else {
        let rootfs = ctx.rootfs.clone().ok_or_else(|| PodError::NoRoot(c.name.clone()))?;
        ctx.check_rootfs()?;
        if c.args.is_empty() {
            return Err(PodError::Invalid("no command given: podbox run --pod POD --name NAME -- CMD [ARGS]".into()));
        }
        return Ok(Resolved { spec: c.clone(), lowers: vec![rootfs], image: None, stop_signal: None });
    };
    let store = ctx.image_store()?;
    let info = ensure_image(&store, reference, c.pull_policy, &registry::PullOptions::from_env())?;
    let mut lowers = store.layer_dirs(&info)?;
    lowers.reverse();
    // overlayfs refuses a lower directory given twice (old images repeat the empty layer): keep
    // each layer's topmost occurrence.
    let mut seen = std::collections::HashSet::new();
    lowers.retain(|l| seen.insert(l.clone()));
    let cfg = &info.config;
    let mut spec = c.clone();
    spec.args = config::argv(cfg, c.entrypoint.as_deref(), c.cmd.as_deref());
    if spec.args.is_empty() {
        return Err(PodError::Invalid(format!("image {reference} has no Entrypoint or Cmd: give a command")));
    }
    spec.env = config::env(cfg, &c.env);
    if spec.working_dir.is_none() {
        spec.working_dir = config::working_dir(cfg);
    }
    if spec.user.is_none()
        && let Some(u) = config::user(cfg)
    {
        let (uid, gid, extra) = config::resolve_user(&u, &lowers)?;
        spec.user = Some((uid, gid));
        spec.group_add.extend(extra);
    }
    if spec.run_as_non_root && spec.user.is_none_or(|(uid, _)| uid == 0) {
        return Err(PodError::Invalid(format!("container {}: securityContext.runAsNonRoot is set but image {reference} runs as root: give runAsUser a non-zero UID", c.name)));
    }
    let stop = config::stop_signal(cfg)?;
    let name = info.names.first().cloned().unwrap_or_else(|| reference.clone());
    Ok(Resolved { spec, lowers, image: Some((name, info.digest.clone())), stop_signal: (stop != libc::SIGTERM).then_some(stop) })
}
