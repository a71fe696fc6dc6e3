//! CRI streaming (Exec, Attach, PortForward), as the kubelet's streaming server does it: the
//! RPC stores what was asked under a random single-use token that expires soon and answers a
//! URL `http://127.0.0.1:PORT/{exec,attach,portforward}/TOKEN`; the client (crictl, critest,
//! the kubelet's proxy; all client-go) then opens that URL with an HTTP/1.1 upgrade to SPDY/3.1
//! and speaks the `v4.channel.k8s.io` (exec, attach) or `portforward.k8s.io` protocol over it.
//! client-go 1.29's executors and port forwarder use SPDY only (its WebSocket executor is
//! behind a kubectl feature gate), so WebSocket upgrades are refused with a clear answer.
//!
//! This file: the token cache and the HTTP listener that hands each connection to its handler.

pub mod attach;
pub mod exec;
pub mod http;
pub mod portforward;
pub mod pty;
pub mod rpc;
pub mod session;
pub mod spdy;
mod spdy_dictionary;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::pod::Ctx;

/// How long a URL can be used (the kubelet's streaming server: one minute).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// exec/attach subprotocols served (v5 is WebSocket-only, v1–v3 predate the Status error).
pub const EXEC_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];
pub const PORT_FORWARD_PROTOCOLS: &[&str] = &["portforward.k8s.io"];

/// What a token stands for.
#[derive(Debug, Clone)]
pub enum Pending {
    Exec(exec::ExecRequest),
    Attach(attach::AttachRequest),
    PortForward(portforward::ForwardRequest),
}

impl Pending {
    fn path_kind(&self) -> &'static str {
        match self {
            Pending::Exec(_) => "exec",
            Pending::Attach(_) => "attach",
            Pending::PortForward(_) => "portforward",
        }
    }
}

/// What the handlers need from the server: its state root (for lookups) and the global options
/// to run `podbox exec` with.
#[derive(Clone)]
pub struct Env {
    pub ctx: Ctx,
    pub globals: Vec<OsString>,
}

/// The streaming server: where it listens and the tokens not yet used.
#[derive(Clone)]
pub struct Streaming {
    addr: SocketAddr,
    tokens: Arc<Mutex<HashMap<String, (Pending, Instant)>>>,
}

/// An HTTP answer refusing a streaming request.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: &'static str,
    msg: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("listening for streaming connections on 127.0.0.1:{port}: {source}")]
    Listen { port: u16, source: std::io::Error },
    #[error("reading /dev/urandom for a streaming token: {0}")]
    Random(std::io::Error),
}

impl Streaming {
    /// Listen on 127.0.0.1:`port` (0: an ephemeral port) and serve connections in the background.
    pub async fn start(port: u16, env: Env) -> Result<Streaming, StreamingError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|source| StreamingError::Listen { port, source })?;
        let addr = listener.local_addr().map_err(|source| StreamingError::Listen { port, source })?;
        let s = Streaming { addr, tokens: Arc::default() };
        let server = s.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        let (server, env) = (server.clone(), env.clone());
                        tokio::spawn(async move { server.serve_connection(tcp, env).await });
                    }
                    // Out of descriptors and the like: wait rather than spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ok(s)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A URL for `p`, usable once within TOKEN_TTL.
    pub fn url_for(&self, p: Pending) -> Result<String, StreamingError> {
        let mut raw = [0u8; 16];
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut raw)).map_err(StreamingError::Random)?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let kind = p.path_kind();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        tokens.insert(token.clone(), (p, Instant::now()));
        Ok(format!("http://{}/{kind}/{token}", self.addr))
    }

    /// The request behind `token` if it is still valid; it cannot be used again.
    fn take(&self, kind: &str, token: &str) -> Option<Pending> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let fits = tokens.get(token).is_some_and(|(p, at)| p.path_kind() == kind && at.elapsed() < TOKEN_TTL);
        if fits { tokens.remove(token).map(|(p, _)| p) } else { None }
    }

    async fn serve_connection(&self, mut tcp: TcpStream, env: Env) {
        let _ = tcp.set_nodelay(true);
        let (head, early) = match http::read_head(&mut tcp).await {
            Ok(h) => h,
            Err(e) => return http::respond_error(&mut tcp, 400, "Bad Request", &e.to_string()).await,
        };
        let (pending, protocol) = match self.admit(&head) {
            Ok(a) => a,
            Err(Refusal { status, reason, msg }) => return http::respond_error(&mut tcp, status, reason, &msg).await,
        };
        if http::switch_to_spdy(&mut tcp, protocol).await.is_err() {
            return;
        }
        let session = session::Session::start(tcp, early);
        match pending {
            Pending::Exec(r) => exec::serve(session, r, env).await,
            Pending::Attach(r) => attach::serve(session, r, env).await,
            Pending::PortForward(r) => portforward::serve(session, r, env).await,
        }
    }

    /// Whether a request may upgrade: a valid token for its path, SPDY/3.1, a protocol we speak.
    /// The token is used up either way.
    fn admit(&self, head: &http::RequestHead) -> Result<(Pending, &'static str), Refusal> {
        let mut parts = head.path.trim_start_matches('/').splitn(2, '/');
        let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let Some(pending) = self.take(kind, token) else {
            return Err(Refusal { status: 404, reason: "Not Found", msg: "unknown or expired streaming URL (a URL from Exec, Attach or PortForward can be used once, within a minute)".into() });
        };
        if head.upgrade != "spdy/3.1" {
            let msg = format!("podbox's streaming server speaks SPDY/3.1 only (asked to upgrade to {:?})", head.upgrade);
            return Err(Refusal { status: 400, reason: "Bad Request", msg });
        }
        let supported = match pending {
            Pending::Exec(_) | Pending::Attach(_) => EXEC_PROTOCOLS,
            Pending::PortForward(_) => PORT_FORWARD_PROTOCOLS,
        };
        match http::choose(&head.protocols, supported) {
            Some(protocol) => Ok((pending, protocol)),
            None => {
                let msg = format!("none of the offered stream protocols {:?} is supported (podbox speaks {supported:?})", head.protocols);
                Err(Refusal { status: 403, reason: "Forbidden", msg })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(path: &str, upgrade: &str, protocols: &[&str]) -> http::RequestHead {
        http::RequestHead { method: "POST".into(), path: path.into(), upgrade: upgrade.into(), protocols: protocols.iter().map(|p| p.to_string()).collect() }
    }

    #[test]
    fn tokens_are_single_use_per_kind_and_only_spdy_v4_is_admitted() {
        let s = Streaming { addr: "127.0.0.1:1".parse().unwrap(), tokens: Arc::default() };
        let exec = || Pending::Exec(exec::ExecRequest { pod_id: "p".into(), container: "c".into(), cmd: vec!["true".into()], tty: false, stdin: false, stdout: true, stderr: true });
        let path = |url: String| url.trim_start_matches("http://127.0.0.1:1").to_string();
        let v4 = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
        let p = path(s.url_for(exec()).unwrap());
        assert!(p.starts_with("/exec/") && p.len() == "/exec/".len() + 32, "{p}");
        assert_eq!(s.admit(&head(&p, "spdy/3.1", &v4)).unwrap().1, "v4.channel.k8s.io");
        assert_eq!(s.admit(&head(&p, "spdy/3.1", &v4)).unwrap_err().status, 404, "used twice");
        // An exec token does not open an attach.
        let p = path(s.url_for(exec()).unwrap());
        assert_eq!(s.admit(&head(&p.replace("/exec/", "/attach/"), "spdy/3.1", &v4)).unwrap_err().status, 404);
        let p = path(s.url_for(exec()).unwrap());
        let ws = s.admit(&head(&p, "websocket", &["v5.channel.k8s.io"])).unwrap_err();
        assert!(ws.status == 400 && ws.msg.contains("SPDY/3.1 only"), "{ws:?}");
        let p = path(s.url_for(exec()).unwrap());
        assert_eq!(s.admit(&head(&p, "spdy/3.1", &["channel.k8s.io"])).unwrap_err().status, 403);
        // Expired tokens are refused (and dropped).
        let p = path(s.url_for(exec()).unwrap());
        for (_, at) in s.tokens.lock().unwrap().values_mut() {
            *at = at.checked_sub(TOKEN_TTL).expect("the machine has been up for over a minute");
        }
        assert_eq!(s.admit(&head(&p, "spdy/3.1", &v4)).unwrap_err().status, 404);
    }
}
