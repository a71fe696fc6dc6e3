//! The CRI calls that change something, each run by the pod layer in a child process
//! (`podbox cri --worker`, a request as JSON on stdin, the reply on stdout). Why a process: the
//! pod layer forks (pins, pause, monitors) and runs its own netlink runtime, which must not
//! happen from a many-threaded tokio server; and a server killed mid-call leaves the child to
//! finish its step as a CLI command would, with the same crash safety.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use serde::{Deserialize, Serialize};

use super::container_config::{create_container, update_resources};
use super::pod_config::run_pod;
use super::{CriError, Result};
use crate::pod::model::PullPolicy;
use crate::pod::{Ctx, PodError, containers, lifecycle};

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// A protobuf-encoded PodSandboxConfig.
    RunPod { config: Vec<u8> },
    StopPod { id: String },
    RemovePod { id: String },
    /// Protobuf-encoded ContainerConfig and PodSandboxConfig.
    CreateContainer { pod_id: String, config: Vec<u8>, sandbox: Vec<u8> },
    StartContainer { id: String },
    StopContainer { id: String, timeout: i64 },
    RemoveContainer { id: String },
    /// A protobuf-encoded LinuxContainerResources.
    UpdateResources { id: String, resources: Vec<u8> },
    PullImage { image: String, creds: Option<(String, String)> },
    RemoveImage { image: String },
}

impl Request {
    /// Whether the call starts or enters a container: its worker runs from a sealed copy of
    /// the binary (`container::sealed_exe`), as the CLI's `run` and `exec` do. The others save
    /// that second exec (RunPodSandbox: the pause is its own embedded binary; CreateContainer
    /// only resolves the image and writes the record, `containers::create` forks nothing).
    fn enters_container(&self) -> bool {
        matches!(self, Request::StartContainer { .. })
    }
}

/// What the child answers: a value (an id, an image ref) or an error with its gRPC code.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Ok(String),
    Err { code: i32, message: String },
}

/// In the child: read one request, do it, print the reply. Returns the exit code.
pub fn main(ctx: &Ctx) -> i32 {
    let mut input = String::new();
    let reply = match std::io::stdin().read_to_string(&mut input) {
        Err(e) => Reply::Err { code: tonic::Code::Internal as i32, message: format!("reading the request: {e}") },
        Ok(_) => match serde_json::from_str::<Request>(&input) {
            Err(e) => Reply::Err { code: tonic::Code::Internal as i32, message: format!("bad worker request: {e}") },
            Ok(req) => match handle(ctx, req) {
                Ok(v) => Reply::Ok(v),
                Err(e) => {
                    let s = tonic::Status::from(e);
                    Reply::Err { code: s.code() as i32, message: s.message().to_string() }
                }
            },
        },
    };
    println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    0
}

fn decode<M: Message + Default>(b: &[u8], what: &str) -> Result<M> {
    M::decode(b).map_err(|e| CriError::Invalid(format!("{what}: {e}")))
}

fn handle(ctx: &Ctx, req: Request) -> Result<String> {
    match req {
        Request::RunPod { config } => run_pod(ctx, &decode(&config, "PodSandboxConfig")?),
        Request::StopPod { id } => match super::find_pod(ctx, &id) {
            // Idempotent, as the kubelet retries: a pod that is gone is stopped.
            Err(CriError::NotFound(_)) => Ok(String::new()),
            Err(e) => Err(e),
            // Containers are killed at once: the kubelet stopped them with their grace before.
            Ok(p) => lifecycle::stop(ctx, &p.id, Duration::ZERO).map(|_| String::new()).map_err(Into::into),
        },
        Request::RemovePod { id } => remove_pod(ctx, &id),
        Request::CreateContainer { pod_id, config, sandbox } => {
            create_container(ctx, &pod_id, &decode(&config, "ContainerConfig")?, &decode(&sandbox, "PodSandboxConfig")?)
        }
        Request::StartContainer { id } => {
            let (pod, name) = super::find_container(ctx, &id)?;
            containers::start(ctx, &pod.id, &name)?;
            Ok(String::new())
        }
        Request::StopContainer { id, timeout } => {
            let (pod, name) = super::find_container(ctx, &id)?;
            containers::stop(ctx, &pod.id, &name, Duration::from_secs(timeout.max(0) as u64))?;
            Ok(String::new())
        }
        Request::RemoveContainer { id } => remove_container(ctx, &id),
        Request::UpdateResources { id, resources } => {
            let (pod, name) = super::find_container(ctx, &id)?;
            update_resources(ctx, &pod, &name, &decode(&resources, "LinuxContainerResources")?)?;
            Ok(String::new())
        }
        Request::PullImage { image, creds } => pull_image(ctx, &image, creds),
        Request::RemoveImage { image } => remove_image(ctx, &image),
    }
}

/// RemovePodSandbox, idempotent as the kubelet retries: a pod that is gone is removed.
fn remove_pod(ctx: &Ctx, id: &str) -> Result<String> {
    match super::find_pod(ctx, id) {
        Err(CriError::NotFound(_)) => Ok(String::new()),
        Err(e) => Err(e),
        Ok(p) => {
            for name in crate::state::list_dir(&ctx.root.pod_dir(&p.id).join("containers")).unwrap_or_default() {
                remove_log_link(ctx, &p.id, &name);
            }
            match lifecycle::remove(ctx, &p.id, true) {
                Err(PodError::UnknownPod(_)) => Ok(String::new()),
                r => r.map(|_| String::new()).map_err(Into::into),
            }
        }
    }
}

/// RemoveContainer, idempotent: a container that is gone is removed.
fn remove_container(ctx: &Ctx, id: &str) -> Result<String> {
    match super::find_container(ctx, id) {
        Err(CriError::NotFound(_)) => Ok(String::new()),
        Err(e) => Err(e),
        Ok((pod, name)) => {
            remove_log_link(ctx, &pod.id, &name);
            match containers::remove(ctx, &pod.id, &name, true) {
                Err(PodError::UnknownContainer { .. }) => Ok(String::new()),
                r => r.map(|_| String::new()).map_err(Into::into),
            }
        }
    }
}

/// PullImage: pulled even when the store has it (the kubelet decides when to pull); returns the image id.
fn pull_image(ctx: &Ctx, image: &str, creds: Option<(String, String)>) -> Result<String> {
    let store = ctx.image_store()?;
    let mut opts = crate::image::registry::PullOptions::from_env();
    opts.progress = crate::image::registry::Progress::Quiet;
    opts.creds = creds;
    let info = crate::pod::image::ensure_image(&store, image, Some(PullPolicy::Always), &opts)?;
    Ok(info.config_digest)
}

/// RemoveImage: every name of the image goes, as CRI removes an image, not a tag; an unknown
/// image is removed already.
fn remove_image(ctx: &Ctx, image: &str) -> Result<String> {
    let store = ctx.image_store()?;
    if store.lookup(image)?.is_none() {
        return Ok(String::new());
    }
    let info = store.image(image)?;
    let users = |d: &str| ctx.image_users(d);
    for n in if info.names.is_empty() { vec![image.to_string()] } else { info.names.clone() } {
        store.remove(&n, false, &users)?;
    }
    Ok(String::new())
}

/// The log at the kubelet's path, which goes with the container (files the kubelet rotated
/// away are the kubelet's).
fn remove_log_link(ctx: &Ctx, pod_id: &str, name: &str) {
    let link = ctx.root.container_dir(pod_id, name).join(containers::LOG_FILE);
    if let Ok(target) = std::fs::read_link(&link) {
        let _ = std::fs::remove_file(target);
    }
}

/// In the server: run `req` in a worker child with the server's own global options, bounded by
/// `timeout`. The child is killed at the timeout (its step is then left as a killed CLI leaves
/// it: for `gc` or the next call to finish).
pub async fn call(globals: &[std::ffi::OsString], req: &Request, timeout: Duration) -> std::result::Result<String, tonic::Status> {
    use tokio::io::AsyncWriteExt;
    let exe: PathBuf = std::env::current_exe().map_err(|e| tonic::Status::internal(format!("finding the podbox binary: {e}")))?;
    let outside: &[&str] = if req.enters_container() { &[] } else { &["--worker-outside-containers"] };
    let mut child = tokio::process::Command::new(exe)
        .args(globals)
        .args(["cri", "--worker"])
        .args(outside)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        // A call its client gave up on (the handler is dropped) still finishes its step: the
        // kubelet lists and removes what it does not know, and a step killed half-way would
        // be left for `gc`.
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| tonic::Status::internal(format!("starting a podbox worker: {e}")))?;
    let body = serde_json::to_vec(req).map_err(|e| tonic::Status::internal(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).await.map_err(|e| tonic::Status::internal(format!("writing to the worker: {e}")))?;
    }
    let pid = child.id();
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| tonic::Status::internal(format!("waiting for the worker: {e}")))?,
        Err(_) => {
            // Hung: end it, and let gc finish what it left half-made.
            if let Some(pid) = pid {
                // SAFETY: kill(2) of our own child; tokio has not reaped it (the wait was pending).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            gc(globals).await;
            return Err(tonic::Status::deadline_exceeded(format!("{} did not finish within {timeout:?}", req_name(req))));
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<Reply>(text.trim()) {
        Ok(Reply::Ok(v)) => Ok(v),
        Ok(Reply::Err { code, message }) => Err(tonic::Status::new(tonic::Code::from_i32(code), message)),
        Err(_) => Err(tonic::Status::internal(format!("the podbox worker for {} ended ({}) without a reply", req_name(req), out.status))),
    }
}

/// `podbox gc` with the server's options, bounded in time: finishes the removal of whatever a
/// killed server or worker left half-made. Problems are logged, not fatal.
pub async fn gc(globals: &[std::ffi::OsString]) {
    let Ok(exe) = std::env::current_exe() else { return };
    let child = tokio::process::Command::new(exe).args(globals).arg("gc").stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true).spawn();
    let Ok(child) = child else { return };
    match tokio::time::timeout(Duration::from_secs(120), child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            for l in text.lines() {
                eprintln!("podbox cri: gc: {l}");
            }
        }
        _ => eprintln!("podbox cri: gc did not finish within 120 s"),
    }
}

fn req_name(r: &Request) -> &'static str {
    match r {
        Request::RunPod { .. } => "RunPodSandbox",
        Request::StopPod { .. } => "StopPodSandbox",
        Request::RemovePod { .. } => "RemovePodSandbox",
        Request::CreateContainer { .. } => "CreateContainer",
        Request::StartContainer { .. } => "StartContainer",
        Request::StopContainer { .. } => "StopContainer",
        Request::RemoveContainer { .. } => "RemoveContainer",
        Request::UpdateResources { .. } => "UpdateContainerResources",
        Request::PullImage { .. } => "PullImage",
        Request::RemoveImage { .. } => "RemoveImage",
    }
}
