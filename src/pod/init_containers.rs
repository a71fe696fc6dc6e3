//! Init containers: run a pod's init containers one after another, each to completion, before
//! its app containers start. The CLI (`pod apply`) sequences them in the foreground: simple, and
//! honest about who waits. A failed one is retried by its monitor with the usual back-off when the
//! pod's restartPolicy allows (OnFailure, Always), and `pod apply` keeps waiting; under Never it
//! stays failed and the app containers are never started. Should the CLI be interrupted while it
//! waits, the app containers are not started (the pod stays, with its init containers shown in
//! `ps`).

use std::time::Duration;

use super::model::{ContainerSpec, ContainerState};
use super::{Ctx, PodError, Result, containers};

/// Run `inits` in pod `pod_id` in order; Ok when every one exited 0. `progress` hears of retries.
pub fn run_all(ctx: &Ctx, pod_id: &str, inits: &[ContainerSpec], progress: &mut dyn FnMut(&str)) -> Result<()> {
    for c in inits {
        containers::run(ctx, pod_id, c, true)?;
        let pod = ctx.find_pod(pod_id)?;
        let mut seen_restarts = 0;
        loop {
            let st = ctx.container_status(&pod, &c.name)?.ok_or_else(|| PodError::UnknownContainer { pod: pod.name.clone(), container: c.name.clone() })?;
            if st.restarts > seen_restarts {
                seen_restarts = st.restarts;
                let code = st.last_exit.as_ref().map(|e| e.code.to_string()).unwrap_or_else(|| "?".into());
                progress(&format!("init container {} failed (exit {code}); trying again after a back-off (restart {seen_restarts})", c.name));
            }
            // (A process gone whose monitor is still writing how it ended counts as running.)
            if st.state == ContainerState::Exited {
                let code = st.exit.as_ref().map(|e| e.code);
                if code == Some(0) {
                    break;
                }
                return Err(PodError::InitFailed { pod: pod.name.clone(), container: c.name.clone(), code });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}
