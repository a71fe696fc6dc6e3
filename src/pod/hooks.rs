//! Lifecycle hooks of a pod's container: postStart right after it started (a failure stops it),
//! preStop before SIGTERM when it is stopped. Run by the CLI that starts or stops the container,
//! with the same one-shot checks the prober uses (exec inside the container, or HTTP GET in its
//! network namespace).

use std::time::Duration;

use oci_spec::runtime::Spec;

use super::model::PodRecord;
use super::{Ctx, spec};
use crate::container::ProcRef;
use crate::container::cgroups::Cgroup;
use crate::container::probe::{self, Action, Target};

/// Run `action` against container `name` of `pod` (whose init is `pid`), for at most `timeout`.
pub fn run(ctx: &Ctx, pod: &PodRecord, name: &str, pid: ProcRef, action: &Action, timeout: Duration) -> Result<(), String> {
    let spec = Spec::load(ctx.root.container_dir(&pod.id, name).join("config.json")).map_err(|e| format!("reading the spec of container {name}: {e}"))?;
    let procs = Cgroup::resolve(&spec::container_cgroup(pod, name)).map(|c| c.procs_files()).unwrap_or_default();
    probe::check(&Target { pid, spec: &spec, cgroup_procs: &procs }, action, timeout.max(Duration::from_secs(1)))
}
