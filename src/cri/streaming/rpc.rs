//! The RPC side of streaming: check an Exec or PortForward request against the state root
//! (the container runs, the sandbox is ready, the streams asked for make sense) and answer the
//! URL its stream will be served at. Nothing runs until the client connects there.

use super::attach::AttachRequest;
use super::exec::ExecRequest;
use super::portforward::ForwardRequest;
use super::{Pending, Streaming};
use crate::cri::{CriError, Result, api, find_container, find_pod};
use crate::pod::Ctx;
use crate::pod::model::{ContainerState, PodPhase};

pub fn exec(ctx: &Ctx, s: &Streaming, r: api::ExecRequest) -> Result<String> {
    if r.cmd.is_empty() {
        return Err(CriError::Invalid("ExecRequest.cmd is empty".into()));
    }
    if !(r.stdin || r.stdout || r.stderr) {
        return Err(CriError::Invalid("ExecRequest: one of stdin, stdout and stderr must be set".into()));
    }
    if r.tty && r.stderr && !r.stdout {
        return Err(CriError::Invalid("ExecRequest: with tty, output goes to stdout; stderr alone cannot be streamed".into()));
    }
    let (pod, name) = find_container(ctx, &r.container_id)?;
    let st = ctx.container_status(&pod, &name)?.ok_or_else(|| CriError::NotFound(format!("container {:?} not found", r.container_id)))?;
    if st.state != ContainerState::Running {
        return Err(CriError::Pod(crate::pod::PodError::Busy(format!("container {:?} is not running ({:?})", r.container_id, st.state))));
    }
    let req = ExecRequest { pod_id: pod.id, container: name, cmd: r.cmd, tty: r.tty, stdin: r.stdin, stdout: r.stdout, stderr: r.stderr };
    s.url_for(Pending::Exec(req)).map_err(|e| CriError::Internal(e.to_string()))
}

pub fn attach(ctx: &Ctx, s: &Streaming, r: api::AttachRequest) -> Result<String> {
    if !(r.stdin || r.stdout || r.stderr) {
        return Err(CriError::Invalid("AttachRequest: one of stdin, stdout and stderr must be set".into()));
    }
    let (pod, name) = find_container(ctx, &r.container_id)?;
    let st = ctx.container_status(&pod, &name)?.ok_or_else(|| CriError::NotFound(format!("container {:?} not found", r.container_id)))?;
    if st.state != ContainerState::Running {
        return Err(CriError::Pod(crate::pod::PodError::Busy(format!("container {:?} is not running ({:?})", r.container_id, st.state))));
    }
    let opts = st.record.spec.as_ref().and_then(|c| c.attach).unwrap_or_default();
    if r.stdin && !opts.stdin {
        return Err(CriError::Invalid(format!("container {:?} was not created with stdin: there is no input to attach to", r.container_id)));
    }
    if r.tty != opts.tty {
        return Err(CriError::Invalid(format!("AttachRequest.tty is {} but container {:?} was created with tty {}", r.tty, r.container_id, opts.tty)));
    }
    let req = AttachRequest { state_dir: ctx.root.container_dir(&pod.id, &name), stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
    s.url_for(Pending::Attach(req)).map_err(|e| CriError::Internal(e.to_string()))
}

pub fn port_forward(ctx: &Ctx, s: &Streaming, r: api::PortForwardRequest) -> Result<String> {
    let pod = find_pod(ctx, &r.pod_sandbox_id)?;
    if pod.phase != PodPhase::Ready || !pod.pause.is_some_and(|p| p.alive()) {
        return Err(CriError::Pod(crate::pod::PodError::Busy(format!("pod sandbox {:?} is not ready", r.pod_sandbox_id))));
    }
    if let Some(p) = r.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(CriError::Invalid(format!("PortForwardRequest.port {p} is not a TCP port")));
    }
    s.url_for(Pending::PortForward(ForwardRequest { pod_id: pod.id })).map_err(|e| CriError::Internal(e.to_string()))
}
