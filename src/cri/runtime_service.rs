//! CRI's RuntimeService: sandbox and container handlers. Reads are answered from the state root
//! (`Cri::read`), changes go to a worker child (`Cri::work`), ExecSync runs `podbox exec`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use tonic::{Request, Response, Status};

use super::CriError;
use super::api;
use super::server::{CALL_TIMEOUT, Cri, unimplemented};
use super::stats::{container_stats, pod_stats};
use super::views::{all_containers, container_status, containers_of, find_seen, labels_match, pod_labels, pod_metadata, pod_state, sandbox_config};
use super::worker::Request as Work;

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
