//! PortForward over `portforward.k8s.io`: for each connection the client opens an `error` and a
//! `data` stream carrying the same `port` and `requestID`; the server connects to
//! localhost:PORT inside the pod's network namespace and copies bytes both ways, reporting a
//! failed connect on the error stream. The socket is made by a short-lived thread that joins
//! the pod's pinned netns (setns affects only the calling thread), so the rest of the server
//! never leaves the host's namespace; a socket keeps the namespace it was made in.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{Session, Stream, Writer};
use super::spdy::header;
use super::Env;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ForwardRequest {
    pub pod_id: String,
}

pub async fn serve(mut session: Session, r: ForwardRequest, env: Env) {
    // A pod in the node's network (hostNetwork) has no pinned netns: its localhost is the
    // node's, where this server runs. Asked of the record, never guessed from a missing pin.
    let host_network = crate::cri::find_pod(&env.ctx, &r.pod_id).is_ok_and(|p| p.node_namespaces.contains("net"));
    let netns = (!host_network).then(|| env.ctx.root.pod_dir(&r.pod_id).join("ns/net"));
    // Streams of one connection pair up by requestID; the first of the two waits here.
    let mut waiting: HashMap<String, Stream> = HashMap::new();
    let mut forwards = Vec::new();
    while let Some(s) = session.streams.recv().await {
        let Some(request_id) = header(&s.headers, "requestid").map(str::to_string) else {
            session.writer.reset(s.id).await;
            continue;
        };
        let Some(other) = waiting.remove(&request_id) else {
            waiting.insert(request_id, s);
            continue;
        };
        let (error, data) = if s.kind() == "error" { (s, other) } else { (other, s) };
        if error.kind() != "error" || data.kind() != "data" {
            session.writer.reset(error.id).await;
            session.writer.reset(data.id).await;
            continue;
        }
        forwards.push(tokio::spawn(forward(error, data, netns.clone(), session.writer.clone())));
    }
    // The client closed the connection: its forwards end with it.
    forwards.iter().for_each(|f| f.abort());
    session.close().await;
}

async fn forward(error: Stream, data: Stream, netns: Option<PathBuf>, w: Writer) {
    let port = header(&data.headers, "port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0);
    let Some(port) = port else {
        return fail(&w, &error, &data, format!("invalid port {:?}", header(&data.headers, "port"))).await;
    };
    let tcp = match tokio::task::spawn_blocking(move || connect_in(netns.as_deref(), port)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return fail(&w, &error, &data, e).await,
        Err(e) => return fail(&w, &error, &data, e.to_string()).await,
    };
    let tcp = match tcp.set_nonblocking(true).and_then(|_| tokio::net::TcpStream::from_std(tcp)) {
        Ok(t) => t,
        Err(e) => return fail(&w, &error, &data, e.to_string()).await,
    };
    let (mut rd, mut wr) = tcp.into_split();
    let mut incoming = data.data;
    let to_pod = tokio::spawn(async move {
        while let Some(d) = incoming.recv().await {
            if wr.write_all(&d).await.is_err() {
                return;
            }
        }
        // The client closed its side: the server in the pod sees EOF.
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.data(data.id, &buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.fin(data.id).await;
    let _ = w.fin(error.id).await;
    let _ = to_pod.await;
}

async fn fail(w: &Writer, error: &Stream, data: &Stream, msg: String) {
    let port = header(&data.headers, "port").unwrap_or("?");
    let _ = w.data(error.id, format!("error forwarding port {port} to pod: {msg}").as_bytes()).await;
    let _ = w.fin(error.id).await;
    let _ = w.fin(data.id).await;
}

/// Connect to localhost:`port` in the network namespace pinned at `netns` (IPv4, then IPv6, as
/// the kubelet does), or in this process's own with `None`. Runs on a thread of its own that
/// ends right after.
fn connect_in(netns: Option<&std::path::Path>, port: u16) -> Result<TcpStream, String> {
    let ns = match netns {
        Some(p) => Some((File::open(p).map_err(|e| format!("opening the pod's network namespace {}: {e}", p.display()))?, p.to_path_buf())),
        None => None,
    };
    std::thread::spawn(move || {
        if let Some((ns, netns)) = &ns {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining the pod's network namespace {}: {e}", netns.display()))?;
        }
        let v4 = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), CONNECT_TIMEOUT);
        v4.or_else(|e4| TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), CONNECT_TIMEOUT).map_err(|_| e4))
            .map_err(|e| format!("connecting to localhost:{port} in the pod: {e}"))
    })
    .join()
    .map_err(|_| "the connecting thread panicked".to_string())?
}
