//! The CRI gRPC server: RuntimeService (runtime_service.rs) and ImageService (image_service.rs)
//! on a unix socket, and `Cri`, the handle both are served by. Reads (lists, statuses) are
//! answered in-process from the state root on a blocking thread (`Cri::read`); changes go to a
//! worker child (`Cri::work`, `worker::call`). What podbox does not serve yet answers
//! UNIMPLEMENTED naming the call.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use tonic::{Response, Status};

use super::api::{image_service_server::ImageServiceServer, runtime_service_server::RuntimeServiceServer};
use super::worker::{self, Request as Work};
use super::CriError;
use crate::pod::Ctx;

/// How long a change may take (a pull may take long; everything else is bounded tighter).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(120);
pub(super) const PULL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Cri {
    pub(super) ctx: Ctx,
    /// `--root`, `--images`, `--rootfs` as given to `podbox cri`, passed on to workers.
    pub(super) globals: Vec<OsString>,
    /// Where Exec, Attach and PortForward send their clients.
    pub(super) streaming: super::streaming::Streaming,
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
    pub(super) async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Ctx) -> Result<T, CriError> + Send + 'static) -> Result<T, Status> {
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || f(&ctx)).await.map_err(|e| Status::internal(e.to_string()))?.map_err(Status::from)
    }

    pub(super) async fn work(&self, req: Work, timeout: Duration) -> Result<String, Status> {
        worker::call(&self.globals, &req, timeout).await
    }
}

pub(super) fn unimplemented<T>(call: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!("{call} is not implemented by podbox's CRI server yet (see README, CRI)")))
}

