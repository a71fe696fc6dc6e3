//! OCI lifecycle hooks: run each hook of one phase in order with the container's state JSON on
//! its stdin, kill it when its timeout passes. Which process runs a phase (and so in which
//! namespaces) is the caller's business. In the phases that can still stop the container the
//! first failing hook fails the phase (`run`); after the process started (poststart) or ended
//! (poststop) the spec wants every hook run and failures only reported (`run_all`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use super::{ContainerError, Result};

/// How long a hook without `timeout` may run: long enough for real work, but a hung hook must
/// not hang `create` forever.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Run the hooks of `phase` (e.g. "createRuntime") one after another.
pub fn run(phase: &str, hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    for (i, h) in hooks.into_iter().flatten().enumerate() {
        run_one(phase, i, h, state_json)?;
    }
    Ok(())
}

/// Run every hook of `phase`, whatever the earlier ones did; returns the failures in order.
pub fn run_all(phase: &str, hooks: Option<&Vec<Hook>>, state_json: &str) -> Vec<ContainerError> {
    hooks.into_iter().flatten().enumerate().filter_map(|(i, h)| run_one(phase, i, h, state_json).err()).collect()
}

fn hook_err(phase: &str, i: usize, h: &Hook, msg: String) -> ContainerError {
    ContainerError::Hook { phase: phase.into(), index: i, path: h.path().display().to_string(), msg }
}

fn run_one(phase: &str, i: usize, h: &Hook, state_json: &str) -> Result<()> {
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    // The hook's environment is exactly what the spec says, as for the container's process.
    cmd.args(args.iter().skip(1)).env_clear().stdin(Stdio::piped());
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| hook_err(phase, i, h, format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that ignores its stdin may exit before reading it: EPIPE is not its failure.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let timeout = h.timeout().filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64)).unwrap_or(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(hook_err(phase, i, h, format!("failed ({status})"))),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(hook_err(phase, i, h, format!("timed out after {}s and was killed", timeout.as_secs())));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(hook_err(phase, i, h, format!("waiting: {e}"))),
        }
    }
}
