//! The gRPC services: RuntimeService and ImageService on a unix socket. Reads (lists, statuses)
//! are answered in-process from the state root on a blocking thread; changes go to a worker
//! child (`worker::call`); ExecSync runs `podbox exec`. What podbox does not serve yet answers
//! UNIMPLEMENTED naming the call.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message;
use tonic::{Request, Response, Status};

use super::api::{self, image_service_server::ImageServiceServer, runtime_service_server::RuntimeServiceServer};
use super::worker::{self, Request as Work};
use super::{CriError, container_id};
use crate::pod::Ctx;
use crate::pod::model::{ContainerState, ContainerStatus, PodPhase, PodRecord};

/// How long a change may take (a pull may take long; everything else is bounded tighter).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Cri {
    ctx: Ctx,
    /// `--root`, `--images`, `--rootfs` as given to `podbox cri`, passed on to workers.
    globals: Vec<OsString>,
    /// Where Exec, Attach and PortForward send their clients.
    streaming: super::streaming::Streaming,
}

/// Serve CRI on `listen` until SIGINT/SIGTERM. A stale socket file is replaced.
pub async fn serve(ctx: Ctx, globals: Vec<OsString>, listen: &Path, streaming_port: u16) -> Result<(), CriError> {
    if let Some(dir) = listen.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CriError::Internal(format!("creating {}: {e}", dir.display())))?;
    }
    match std::fs::remove_file(listen) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CriError::Internal(format!("removing the old socket {}: {e}", listen.display()))),
    }
    // What a killed server (or a worker killed with it) left half-made is finished first.
    worker::gc(&globals).await;
    let uds = tokio::net::UnixListener::bind(listen).map_err(|e| CriError::Internal(format!("listening on {}: {e}", listen.display())))?;
    // Every connection through the relay that makes grpc-go's `:authority` acceptable to h2.
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::UnixListenerStream::new(uds), |c| c.map(super::authority::relay));
    let env = super::streaming::Env { ctx: ctx.clone(), globals: globals.clone() };
    let streaming = super::streaming::Streaming::start(streaming_port, env).await.map_err(|e| CriError::Internal(e.to_string()))?;
    eprintln!("podbox cri: streaming (exec, attach, port-forward) on http://{}", streaming.addr());
    let cri = Cri { ctx, globals, streaming };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    eprintln!("podbox cri: serving CRI v1 on {}", listen.display());
    let r = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(cri.clone()))
        .add_service(ImageServiceServer::new(cri))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(listen);
    r.map_err(|e| CriError::Internal(format!("serving {}: {e}", listen.display())))
}

impl Cri {
    /// Run a read of the state root on a blocking thread.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Ctx) -> Result<T, CriError> + Send + 'static) -> Result<T, Status> {
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || f(&ctx)).await.map_err(|e| Status::internal(e.to_string()))?.map_err(Status::from)
    }

    async fn work(&self, req: Work, timeout: Duration) -> Result<String, Status> {
        worker::call(&self.globals, &req, timeout).await
    }
}

fn unimplemented<T>(call: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!("{call} is not implemented by podbox's CRI server yet (see README, CRI)")))
}

fn sandbox_config(ctx: &Ctx, pod: &PodRecord) -> Option<api::PodSandboxConfig> {
    super::read_config(&ctx.root.pod_dir(&pod.id).join(super::SANDBOX_CONFIG))
}

fn pod_metadata(pod: &PodRecord, cfg: Option<&api::PodSandboxConfig>) -> api::PodSandboxMetadata {
    cfg.and_then(|c| c.metadata.clone()).unwrap_or_else(|| api::PodSandboxMetadata { name: pod.name.clone(), uid: pod.id.clone(), namespace: String::new(), attempt: 0 })
}

fn pod_state(pod: &PodRecord) -> api::PodSandboxState {
    if pod.phase == PodPhase::Ready && pod.pause.is_some_and(|p| p.alive()) { api::PodSandboxState::SandboxReady } else { api::PodSandboxState::SandboxNotready }
}

fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_labels(pod: &PodRecord, cfg: Option<&api::PodSandboxConfig>) -> HashMap<String, String> {
    cfg.map(|c| c.labels.clone()).unwrap_or_else(|| pod.labels.clone().into_iter().collect())
}

/// A container as CRI sees it.
struct Seen {
    pod: PodRecord,
    status: ContainerStatus,
    cfg: Option<api::ContainerConfig>,
    log_path: String,
}

impl Seen {
    fn id(&self) -> String {
        container_id(&self.pod.id, &self.status.record.name)
    }
    fn metadata(&self) -> api::ContainerMetadata {
        self.cfg.as_ref().and_then(|c| c.metadata.clone()).unwrap_or_else(|| api::ContainerMetadata { name: self.status.record.name.clone(), attempt: 0 })
    }
    fn state(&self) -> api::ContainerState {
        match self.status.state {
            ContainerState::Created => api::ContainerState::ContainerCreated,
            ContainerState::Running | ContainerState::Restarting => api::ContainerState::ContainerRunning,
            ContainerState::Exited => api::ContainerState::ContainerExited,
        }
    }
    fn image(&self) -> api::ImageSpec {
        let image = self.cfg.as_ref().and_then(|c| c.image.as_ref()).map(|i| i.image.clone()).or_else(|| self.status.record.image.clone()).unwrap_or_default();
        api::ImageSpec { image, ..Default::default() }
    }
    fn labels(&self) -> HashMap<String, String> {
        self.cfg.as_ref().map(|c| c.labels.clone()).unwrap_or_default()
    }
    fn annotations(&self) -> HashMap<String, String> {
        self.cfg.as_ref().map(|c| c.annotations.clone()).unwrap_or_default()
    }
    fn image_ref(&self) -> String {
        self.status.record.image_digest.clone().unwrap_or_default()
    }
}

fn containers_of(ctx: &Ctx, pod: &PodRecord) -> Result<Vec<Seen>, CriError> {
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

fn all_containers(ctx: &Ctx) -> Result<Vec<Seen>, CriError> {
    let mut out = Vec::new();
    for p in ctx.pods()? {
        out.extend(containers_of(ctx, &p)?);
    }
    Ok(out)
}

fn find_seen(ctx: &Ctx, id: &str) -> Result<Seen, CriError> {
    let (pod, name) = super::find_container(ctx, id)?;
    containers_of(ctx, &pod)?.into_iter().find(|s| s.status.record.name == name).ok_or_else(|| CriError::NotFound(format!("container {id:?} not found")))
}

fn container_status(s: &Seen) -> api::ContainerStatus {
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

/// CPU time (ns) and memory working set (bytes) of a cgroup, from whichever of its hierarchies
/// has them (v1 cpuacct/memory or v2); the working set is usage minus inactive file pages, as
/// the kubelet computes it.
fn cgroup_usage(cgroup: &str) -> (Option<u64>, Option<u64>) {
    let Ok(cg) = crate::container::cgroups::Cgroup::resolve(cgroup) else { return (None, None) };
    let field = |text: &str, key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok()));
    let (mut cpu, mut mem) = (None, None);
    for dir in cg.paths() {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        if cpu.is_none() {
            cpu = read("cpuacct.usage").and_then(|s| s.trim().parse().ok()).or_else(|| read("cpu.stat").and_then(|s| field(&s, "usage_usec ")).map(|us| us * 1000));
        }
        if mem.is_none()
            && let Some(usage) = read("memory.current").or_else(|| read("memory.usage_in_bytes")).and_then(|s| s.trim().parse::<u64>().ok())
        {
            let inactive = read("memory.stat").and_then(|s| field(&s, "total_inactive_file ").or_else(|| field(&s, "inactive_file "))).unwrap_or(0);
            mem = Some(usage.saturating_sub(inactive));
        }
    }
    (cpu, mem)
}

fn container_stats(s: &Seen) -> api::ContainerStats {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    let cgroup = s.status.record.cgroup.clone().unwrap_or_else(|| crate::pod::spec::container_cgroup(&s.pod.id, &s.status.record.name));
    let (cpu, mem) = cgroup_usage(&cgroup);
    let v = |x: Option<u64>| x.map(|value| api::UInt64Value { value });
    api::ContainerStats {
        attributes: Some(api::ContainerAttributes { id: s.id(), metadata: Some(s.metadata()), labels: s.labels(), annotations: s.annotations() }),
        cpu: Some(api::CpuUsage { timestamp: now, usage_core_nano_seconds: v(cpu), usage_nano_cores: None }),
        memory: Some(api::MemoryUsage { timestamp: now, working_set_bytes: v(mem), ..Default::default() }),
        // The writable layer is a tmpfs inside the container's own mount namespace.
        writable_layer: None,
        swap: None,
    }
}

/// A sandbox's usage: its whole cgroup (pause and containers), its process count, and each
/// running container's own stats.
fn pod_stats(ctx: &Ctx, pod: &PodRecord) -> Result<api::PodSandboxStats, CriError> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    let cgroup = crate::pod::spec::pod_cgroup(&pod.id);
    let (cpu, mem) = cgroup_usage(&cgroup);
    let processes = crate::container::cgroups::Cgroup::resolve(&cgroup).map(|c| c.procs().len() as u64).ok();
    let cfg = sandbox_config(ctx, pod);
    let v = |x: Option<u64>| x.map(|value| api::UInt64Value { value });
    let containers = containers_of(ctx, pod)?.iter().filter(|s| s.state() == api::ContainerState::ContainerRunning).map(container_stats).collect();
    Ok(api::PodSandboxStats {
        attributes: Some(api::PodSandboxAttributes {
            id: pod.id.clone(),
            metadata: Some(pod_metadata(pod, cfg.as_ref())),
            labels: pod_labels(pod, cfg.as_ref()),
            annotations: cfg.as_ref().map(|c| c.annotations.clone()).unwrap_or_default(),
        }),
        linux: Some(api::LinuxPodSandboxStats {
            cpu: Some(api::CpuUsage { timestamp: now, usage_core_nano_seconds: v(cpu), usage_nano_cores: None }),
            memory: Some(api::MemoryUsage { timestamp: now, working_set_bytes: v(mem), ..Default::default() }),
            network: None,
            process: Some(api::ProcessUsage { timestamp: now, process_count: v(processes) }),
            containers,
        }),
        windows: None,
    })
}

#[tonic::async_trait]
impl api::runtime_service_server::RuntimeService for Cri {
    async fn version(&self, _: Request<api::VersionRequest>) -> Result<Response<api::VersionResponse>, Status> {
        Ok(Response::new(api::VersionResponse { version: "0.1.0".into(), runtime_name: "podbox".into(), runtime_version: env!("CARGO_PKG_VERSION").into(), runtime_api_version: "v1".into() }))
    }

    async fn run_pod_sandbox(&self, r: Request<api::RunPodSandboxRequest>) -> Result<Response<api::RunPodSandboxResponse>, Status> {
        let r = r.into_inner();
        if !r.runtime_handler.is_empty() && r.runtime_handler != "podbox" {
            return Err(Status::invalid_argument(format!("runtime handler {:?}: podbox has only its own (\"\" or \"podbox\")", r.runtime_handler)));
        }
        let config = r.config.ok_or_else(|| Status::invalid_argument("RunPodSandboxRequest.config is required"))?;
        let id = self.work(Work::RunPod { config: config.encode_to_vec() }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(&self, r: Request<api::StopPodSandboxRequest>) -> Result<Response<api::StopPodSandboxResponse>, Status> {
        self.work(Work::StopPod { id: r.into_inner().pod_sandbox_id }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(&self, r: Request<api::RemovePodSandboxRequest>) -> Result<Response<api::RemovePodSandboxResponse>, Status> {
        self.work(Work::RemovePod { id: r.into_inner().pod_sandbox_id }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(&self, r: Request<api::PodSandboxStatusRequest>) -> Result<Response<api::PodSandboxStatusResponse>, Status> {
        let r = r.into_inner();
        self.read(move |ctx| {
            let pod = super::find_pod(ctx, &r.pod_sandbox_id)?;
            let cfg = sandbox_config(ctx, &pod);
            let ns_opts = cfg.as_ref().and_then(|c| c.linux.as_ref()).and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.clone());
            let status = api::PodSandboxStatus {
                id: pod.id.clone(),
                metadata: Some(pod_metadata(&pod, cfg.as_ref())),
                state: pod_state(&pod) as i32,
                created_at: super::nanos_of(&pod.created_at),
                network: Some(api::PodSandboxNetworkStatus { ip: pod.attachment.as_ref().map(|a| a.ip.to_string()).unwrap_or_default(), additional_ips: vec![] }),
                linux: Some(api::LinuxPodSandboxStatus { namespaces: Some(api::Namespace { options: ns_opts }) }),
                labels: pod_labels(&pod, cfg.as_ref()),
                annotations: cfg.as_ref().map(|c| c.annotations.clone()).unwrap_or_default(),
                runtime_handler: String::new(),
            };
            let mut info = HashMap::new();
            if r.verbose {
                info.insert("info".into(), serde_json::to_string(&pod).unwrap_or_default());
            }
            let containers_statuses = if r.verbose { containers_of(ctx, &pod)?.iter().map(container_status).collect() } else { vec![] };
            Ok(Response::new(api::PodSandboxStatusResponse { status: Some(status), info, containers_statuses, timestamp: 0 }))
        })
        .await
    }

    async fn list_pod_sandbox(&self, r: Request<api::ListPodSandboxRequest>) -> Result<Response<api::ListPodSandboxResponse>, Status> {
        let filter = r.into_inner().filter;
        self.read(move |ctx| {
            let mut items = Vec::new();
            for pod in ctx.pods()? {
                let cfg = sandbox_config(ctx, &pod);
                let state = pod_state(&pod);
                let labels = pod_labels(&pod, cfg.as_ref());
                if let Some(f) = &filter {
                    if !f.id.is_empty() && !pod.id.starts_with(&f.id) {
                        continue;
                    }
                    if f.state.as_ref().is_some_and(|s| s.state != state as i32) {
                        continue;
                    }
                    if !labels_match(&labels, &f.label_selector) {
                        continue;
                    }
                }
                items.push(api::PodSandbox {
                    id: pod.id.clone(),
                    metadata: Some(pod_metadata(&pod, cfg.as_ref())),
                    state: state as i32,
                    created_at: super::nanos_of(&pod.created_at),
                    labels,
                    annotations: cfg.as_ref().map(|c| c.annotations.clone()).unwrap_or_default(),
                    runtime_handler: String::new(),
                });
            }
            Ok(Response::new(api::ListPodSandboxResponse { items }))
        })
        .await
    }

    async fn create_container(&self, r: Request<api::CreateContainerRequest>) -> Result<Response<api::CreateContainerResponse>, Status> {
        let r = r.into_inner();
        let config = r.config.ok_or_else(|| Status::invalid_argument("CreateContainerRequest.config is required"))?;
        let sandbox = r.sandbox_config.unwrap_or_default();
        let id = self.work(Work::CreateContainer { pod_id: r.pod_sandbox_id, config: config.encode_to_vec(), sandbox: sandbox.encode_to_vec() }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::CreateContainerResponse { container_id: id }))
    }

    async fn start_container(&self, r: Request<api::StartContainerRequest>) -> Result<Response<api::StartContainerResponse>, Status> {
        self.work(Work::StartContainer { id: r.into_inner().container_id }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::StartContainerResponse {}))
    }

    async fn stop_container(&self, r: Request<api::StopContainerRequest>) -> Result<Response<api::StopContainerResponse>, Status> {
        let r = r.into_inner();
        let timeout = CALL_TIMEOUT + Duration::from_secs(r.timeout.max(0) as u64);
        self.work(Work::StopContainer { id: r.container_id, timeout: r.timeout }, timeout).await?;
        Ok(Response::new(api::StopContainerResponse {}))
    }

    async fn remove_container(&self, r: Request<api::RemoveContainerRequest>) -> Result<Response<api::RemoveContainerResponse>, Status> {
        self.work(Work::RemoveContainer { id: r.into_inner().container_id }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::RemoveContainerResponse {}))
    }

    async fn list_containers(&self, r: Request<api::ListContainersRequest>) -> Result<Response<api::ListContainersResponse>, Status> {
        let filter = r.into_inner().filter;
        self.read(move |ctx| {
            let mut containers = Vec::new();
            for s in all_containers(ctx)? {
                let (id, state, labels) = (s.id(), s.state(), s.labels());
                if let Some(f) = &filter
                    && ((!f.id.is_empty() && !id.starts_with(&f.id))
                        || (!f.pod_sandbox_id.is_empty() && !s.pod.id.starts_with(&f.pod_sandbox_id))
                        || f.state.as_ref().is_some_and(|x| x.state != state as i32)
                        || !labels_match(&labels, &f.label_selector))
                {
                    continue;
                }
                containers.push(api::Container {
                    id,
                    pod_sandbox_id: s.pod.id.clone(),
                    metadata: Some(s.metadata()),
                    image: Some(s.image()),
                    image_ref: s.image_ref(),
                    state: state as i32,
                    created_at: super::nanos_of(&s.status.record.created_at),
                    labels,
                    annotations: s.annotations(),
                });
            }
            Ok(Response::new(api::ListContainersResponse { containers }))
        })
        .await
    }

    async fn container_status(&self, r: Request<api::ContainerStatusRequest>) -> Result<Response<api::ContainerStatusResponse>, Status> {
        let r = r.into_inner();
        self.read(move |ctx| {
            let s = find_seen(ctx, &r.container_id)?;
            let mut info = HashMap::new();
            if r.verbose {
                info.insert("info".into(), serde_json::to_string(&s.status).unwrap_or_default());
            }
            Ok(Response::new(api::ContainerStatusResponse { status: Some(container_status(&s)), info }))
        })
        .await
    }

    async fn update_container_resources(&self, r: Request<api::UpdateContainerResourcesRequest>) -> Result<Response<api::UpdateContainerResourcesResponse>, Status> {
        let r = r.into_inner();
        let linux = r.linux.ok_or_else(|| Status::invalid_argument("UpdateContainerResourcesRequest.linux is required (podbox runs Linux containers)"))?;
        self.work(Work::UpdateResources { id: r.container_id, resources: linux.encode_to_vec() }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(&self, r: Request<api::ReopenContainerLogRequest>) -> Result<Response<api::ReopenContainerLogResponse>, Status> {
        let id = r.into_inner().container_id;
        self.read(move |ctx| {
            let s = find_seen(ctx, &id)?;
            if s.state() != api::ContainerState::ContainerRunning {
                return Err(CriError::Invalid(format!("container {id} is not running: its log cannot be reopened")));
            }
            // The kubelet has renamed the log away: a new file at its path, which the monitor
            // writes to from its next write on (it follows the file at the path).
            std::fs::OpenOptions::new().create(true).append(true).open(&s.log_path).map_err(|e| CriError::Internal(format!("reopening the log {}: {e}", s.log_path)))?;
            Ok(Response::new(api::ReopenContainerLogResponse {}))
        })
        .await
    }

    async fn exec_sync(&self, r: Request<api::ExecSyncRequest>) -> Result<Response<api::ExecSyncResponse>, Status> {
        let r = r.into_inner();
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("ExecSyncRequest.cmd is empty"));
        }
        let id = r.container_id.clone();
        let (pod_id, name) = self.read(move |ctx| super::find_container(ctx, &id).map(|(p, n)| (p.id, n))).await?;
        let exe: PathBuf = std::env::current_exe().map_err(|e| Status::internal(e.to_string()))?;
        let mut child = tokio::process::Command::new(exe)
            .args(&self.globals)
            .arg("exec")
            .args([&pod_id, &name])
            .arg("--")
            .args(&r.cmd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Status::internal(format!("starting podbox exec: {e}")))?;
        let collect = |pipe: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut p, &mut buf).await;
                }
                buf
            })
        };
        let stdout = collect(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = collect(child.stderr.take().map(|p| Box::new(p) as _));
        // 0: no timeout (as in CRI).
        let limit = if r.timeout > 0 { Duration::from_secs(r.timeout as u64) } else { Duration::from_secs(u32::MAX as u64) };
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(s) => s.map_err(|e| Status::internal(format!("waiting for podbox exec: {e}")))?,
            Err(_) => {
                // SIGTERM to `podbox exec`, which forwards it to the command in the container
                // (SIGKILL would leave that running); SIGKILL if it does not end.
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) of our own child, which has not been reaped yet.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return Err(Status::deadline_exceeded(format!("command {:?} did not finish within {} s", r.cmd, r.timeout)));
            }
        };
        let (stdout, stderr) = (stdout.await.unwrap_or_default(), stderr.await.unwrap_or_default());
        Ok(Response::new(api::ExecSyncResponse { stdout, stderr, exit_code: status.code().unwrap_or(128 + 9) }))
    }

    async fn exec(&self, r: Request<api::ExecRequest>) -> Result<Response<api::ExecResponse>, Status> {
        let s = self.streaming.clone();
        let url = self.read(move |ctx| super::streaming::rpc::exec(ctx, &s, r.into_inner())).await?;
        Ok(Response::new(api::ExecResponse { url }))
    }

    async fn attach(&self, r: Request<api::AttachRequest>) -> Result<Response<api::AttachResponse>, Status> {
        let s = self.streaming.clone();
        let url = self.read(move |ctx| super::streaming::rpc::attach(ctx, &s, r.into_inner())).await?;
        Ok(Response::new(api::AttachResponse { url }))
    }

    async fn port_forward(&self, r: Request<api::PortForwardRequest>) -> Result<Response<api::PortForwardResponse>, Status> {
        let s = self.streaming.clone();
        let url = self.read(move |ctx| super::streaming::rpc::port_forward(ctx, &s, r.into_inner())).await?;
        Ok(Response::new(api::PortForwardResponse { url }))
    }

    async fn container_stats(&self, r: Request<api::ContainerStatsRequest>) -> Result<Response<api::ContainerStatsResponse>, Status> {
        let id = r.into_inner().container_id;
        self.read(move |ctx| Ok(Response::new(api::ContainerStatsResponse { stats: Some(container_stats(&find_seen(ctx, &id)?)) }))).await
    }

    async fn list_container_stats(&self, r: Request<api::ListContainerStatsRequest>) -> Result<Response<api::ListContainerStatsResponse>, Status> {
        let filter = r.into_inner().filter;
        self.read(move |ctx| {
            let mut stats = Vec::new();
            for s in all_containers(ctx)? {
                // Stats are for containers that run (as containerd lists them).
                if s.state() != api::ContainerState::ContainerRunning {
                    continue;
                }
                if let Some(f) = &filter
                    && ((!f.id.is_empty() && !s.id().starts_with(&f.id))
                        || (!f.pod_sandbox_id.is_empty() && !s.pod.id.starts_with(&f.pod_sandbox_id))
                        || !labels_match(&s.labels(), &f.label_selector))
                {
                    continue;
                }
                stats.push(container_stats(&s));
            }
            Ok(Response::new(api::ListContainerStatsResponse { stats }))
        })
        .await
    }

    async fn pod_sandbox_stats(&self, r: Request<api::PodSandboxStatsRequest>) -> Result<Response<api::PodSandboxStatsResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        self.read(move |ctx| {
            let pod = super::find_pod(ctx, &id)?;
            Ok(Response::new(api::PodSandboxStatsResponse { stats: Some(pod_stats(ctx, &pod)?) }))
        })
        .await
    }

    async fn list_pod_sandbox_stats(&self, r: Request<api::ListPodSandboxStatsRequest>) -> Result<Response<api::ListPodSandboxStatsResponse>, Status> {
        let filter = r.into_inner().filter;
        self.read(move |ctx| {
            let mut stats = Vec::new();
            for pod in ctx.pods()? {
                // Stats are for sandboxes that run.
                if pod_state(&pod) != api::PodSandboxState::SandboxReady {
                    continue;
                }
                if let Some(f) = &filter
                    && ((!f.id.is_empty() && !pod.id.starts_with(&f.id)) || !labels_match(&pod_labels(&pod, sandbox_config(ctx, &pod).as_ref()), &f.label_selector))
                {
                    continue;
                }
                stats.push(pod_stats(ctx, &pod)?);
            }
            Ok(Response::new(api::ListPodSandboxStatsResponse { stats }))
        })
        .await
    }

    async fn update_runtime_config(&self, r: Request<api::UpdateRuntimeConfigRequest>) -> Result<Response<api::UpdateRuntimeConfigResponse>, Status> {
        // The node's pod CIDR (the Node's spec.podCIDR, "v4[,v6]") becomes podbox's pod subnet,
        // through `podbox network config`, which refuses a change while pods hold addresses.
        let cidrs = r.into_inner().runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
        if cidrs.trim().is_empty() {
            return Ok(Response::new(api::UpdateRuntimeConfigResponse {}));
        }
        let v4 = cidrs.split(',').map(str::trim).find(|c| c.parse::<ipnet::Ipv4Net>().is_ok()).ok_or_else(|| Status::invalid_argument(format!("pod CIDR {cidrs:?}: podbox needs an IPv4 CIDR")))?;
        let exe: PathBuf = std::env::current_exe().map_err(|e| Status::internal(e.to_string()))?;
        let child = tokio::process::Command::new(exe).args(&self.globals).args(["network", "config", "--subnet", v4]).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true).spawn().map_err(|e| Status::internal(format!("starting podbox network config: {e}")))?;
        let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output()).await.map_err(|_| Status::deadline_exceeded("podbox network config did not finish"))?.map_err(|e| Status::internal(e.to_string()))?;
        if !out.status.success() {
            return Err(Status::failed_precondition(format!("pod CIDR {v4}: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(Response::new(api::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, r: Request<api::StatusRequest>) -> Result<Response<api::StatusResponse>, Status> {
        let cond = |t: &str| api::RuntimeCondition { r#type: t.into(), status: true, reason: String::new(), message: String::new() };
        let mut info = HashMap::new();
        if r.into_inner().verbose {
            info.insert("config".into(), serde_json::json!({ "root": self.ctx.root.path, "images": self.ctx.images }).to_string());
        }
        // The pod network is podbox's own bridge, set up with each pod: ready whenever podbox is.
        Ok(Response::new(api::StatusResponse { status: Some(api::RuntimeStatus { conditions: vec![cond("RuntimeReady"), cond("NetworkReady")] }), info }))
    }

    async fn checkpoint_container(&self, _: Request<api::CheckpointContainerRequest>) -> Result<Response<api::CheckpointContainerResponse>, Status> {
        unimplemented("CheckpointContainer")
    }

    type GetContainerEventsStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<api::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn get_container_events(&self, _: Request<api::GetEventsRequest>) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        unimplemented("GetContainerEvents")
    }

    async fn list_metric_descriptors(&self, _: Request<api::ListMetricDescriptorsRequest>) -> Result<Response<api::ListMetricDescriptorsResponse>, Status> {
        unimplemented("ListMetricDescriptors")
    }

    async fn list_pod_sandbox_metrics(&self, _: Request<api::ListPodSandboxMetricsRequest>) -> Result<Response<api::ListPodSandboxMetricsResponse>, Status> {
        unimplemented("ListPodSandboxMetrics")
    }

    async fn runtime_config(&self, _: Request<api::RuntimeConfigRequest>) -> Result<Response<api::RuntimeConfigResponse>, Status> {
        // podbox manages cgroups itself, as files (cgroupfs), never through systemd.
        Ok(Response::new(api::RuntimeConfigResponse { linux: Some(api::LinuxRuntimeConfiguration { cgroup_driver: api::CgroupDriver::Cgroupfs as i32 }) }))
    }
}

fn image_of(info: &crate::image::ImageInfo) -> api::Image {
    let user = crate::image::config::user(&info.config).unwrap_or_default();
    let (uid, username) = match user.split(':').next().unwrap_or("") {
        "" => (None, String::new()),
        u => match u.parse::<i64>() {
            Ok(n) => (Some(api::Int64Value { value: n }), String::new()),
            Err(_) => (None, u.to_string()),
        },
    };
    let repo = |n: &str| n.split('@').next().unwrap_or(n).to_string();
    api::Image {
        id: info.config_digest.clone(),
        repo_tags: info.names.iter().filter(|n| !n.contains('@')).cloned().collect(),
        repo_digests: info.names.iter().map(|n| format!("{}@{}", repo(n).rsplit_once(':').filter(|(_, t)| !t.contains('/')).map(|(r, _)| r.to_string()).unwrap_or_else(|| repo(n)), info.digest)).collect(),
        size: info.size,
        uid,
        username,
        spec: Some(api::ImageSpec { image: info.config_digest.clone(), ..Default::default() }),
        pinned: false,
    }
}

#[tonic::async_trait]
impl api::image_service_server::ImageService for Cri {
    async fn list_images(&self, r: Request<api::ListImagesRequest>) -> Result<Response<api::ListImagesResponse>, Status> {
        let filter = r.into_inner().filter.and_then(|f| f.image).map(|i| i.image).filter(|i| !i.is_empty());
        self.read(move |ctx| {
            if !ctx.images.is_dir() {
                return Ok(Response::new(api::ListImagesResponse { images: vec![] }));
            }
            let store = ctx.image_store()?;
            let images = match filter {
                Some(f) => match store.lookup(&f)? {
                    Some(_) => vec![image_of(&store.image(&f)?)],
                    None => vec![],
                },
                None => store.list()?.iter().map(image_of).collect(),
            };
            Ok(Response::new(api::ListImagesResponse { images }))
        })
        .await
    }

    async fn image_status(&self, r: Request<api::ImageStatusRequest>) -> Result<Response<api::ImageStatusResponse>, Status> {
        let r = r.into_inner();
        let reference = r.image.map(|i| i.image).unwrap_or_default();
        self.read(move |ctx| {
            // An image that is not there is no error: the answer has no image.
            let image = if reference.is_empty() || !ctx.images.is_dir() {
                None
            } else {
                let store = ctx.image_store()?;
                match store.lookup(&reference) {
                    Ok(Some(_)) => Some(image_of(&store.image(&reference)?)),
                    _ => None,
                }
            };
            Ok(Response::new(api::ImageStatusResponse { image, info: HashMap::new() }))
        })
        .await
    }

    async fn pull_image(&self, r: Request<api::PullImageRequest>) -> Result<Response<api::PullImageResponse>, Status> {
        let r = r.into_inner();
        let image = r.image.map(|i| i.image).filter(|i| !i.is_empty()).ok_or_else(|| Status::invalid_argument("PullImageRequest.image is required"))?;
        let creds = r.auth.and_then(|a| {
            if !a.username.is_empty() {
                Some((a.username, a.password))
            } else {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.decode(a.auth.as_bytes()).ok()?;
                let s = String::from_utf8(raw).ok()?;
                s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))
            }
        });
        let image_ref = self.work(Work::PullImage { image, creds }, PULL_TIMEOUT).await?;
        Ok(Response::new(api::PullImageResponse { image_ref }))
    }

    async fn remove_image(&self, r: Request<api::RemoveImageRequest>) -> Result<Response<api::RemoveImageResponse>, Status> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.work(Work::RemoveImage { image }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<api::ImageFsInfoRequest>) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        self.read(|ctx| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
            let used = crate::image::store::du(&ctx.images);
            let inodes = count_inodes(&ctx.images);
            let fs = api::FilesystemUsage {
                timestamp: now,
                fs_id: Some(api::FilesystemIdentifier { mountpoint: ctx.images.display().to_string() }),
                used_bytes: Some(api::UInt64Value { value: used }),
                inodes_used: Some(api::UInt64Value { value: inodes }),
            };
            Ok(Response::new(api::ImageFsInfoResponse { image_filesystems: vec![fs], container_filesystems: vec![] }))
        })
        .await
    }
}

fn count_inodes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten().map(|e| 1 + if e.file_type().is_ok_and(|t| t.is_dir()) { count_inodes(&e.path()) } else { 0 }).sum()
}
