//! The HTTP/1.1 side of a streaming request: read the request head (the path carries the
//! token; `Upgrade` and `X-Stream-Protocol-Version` say what the client speaks) and answer
//! `101 Switching Protocols` to SPDY/3.1 with the chosen subprotocol, or an error status.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A request head larger than this is refused (client-go's are a few hundred bytes).
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
    #[error("no request head within {} s", HEAD_TIMEOUT.as_secs())]
    Timeout,
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// `Upgrade`, lowercased (`spdy/3.1`, `websocket`).
    pub upgrade: String,
    /// Every `X-Stream-Protocol-Version` offered, in order.
    pub protocols: Vec<String>,
}

/// Read the request head; returns it and any bytes read past it.
pub async fn read_head(tcp: &mut TcpStream) -> Result<(RequestHead, Vec<u8>), HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let end = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i + 4);
            }
            if buf.len() > MAX_HEAD {
                return Err(HttpError::TooLarge);
            }
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(HttpError::Malformed("connection closed inside the request head".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| HttpError::Timeout)??;
    let head = parse_head(&String::from_utf8_lossy(&buf[..end]))?;
    Ok((head, buf[end..].to_vec()))
}

pub fn parse_head(text: &str) -> Result<RequestHead, HttpError> {
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(HttpError::Malformed(format!("request line {first:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("{version} (only HTTP/1.1 upgrades are served)")));
    }
    let mut head = RequestHead { method: method.into(), path: target.split('?').next().unwrap_or("").into(), ..Default::default() };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else { return Err(HttpError::Malformed(format!("header line {line:?}"))) };
        let value = value.trim();
        if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade = value.to_ascii_lowercase();
        } else if name.eq_ignore_ascii_case("x-stream-protocol-version") {
            head.protocols.extend(value.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()));
        }
    }
    Ok(head)
}

/// The first protocol the client offers that we speak, as the kubelet chooses.
pub fn choose<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    offered.iter().find_map(|o| supported.iter().find(|s| **s == o.as_str()).copied())
}

pub async fn switch_to_spdy(tcp: &mut TcpStream, protocol: &str) -> std::io::Result<()> {
    let resp = format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n");
    tcp.write_all(resp.as_bytes()).await
}

/// An error answer with `msg` as its text body; the connection closes after it.
pub async fn respond_error(tcp: &mut TcpStream, status: u16, reason: &str, msg: &str) {
    let body = format!("{msg}\n");
    let resp = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = tcp.write_all(resp.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_go_upgrade_request_is_understood() {
        // What client-go 1.29's SPDY executor (crictl's, critest's) sent, captured on the wire.
        let req = "POST /exec/abc HTTP/1.1\r\nHost: 127.0.0.1:18099\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v5.channel.k8s.io\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io\r\nX-Stream-Protocol-Version: v2.channel.k8s.io\r\nX-Stream-Protocol-Version: channel.k8s.io\r\n\r\n";
        let h = parse_head(req).unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str(), h.upgrade.as_str()), ("POST", "/exec/abc", "spdy/3.1"));
        assert_eq!(h.protocols, ["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]);
        assert_eq!(parse_head("POST /attach/t?stdin=1 HTTP/1.1\r\nX-Stream-Protocol-Version: a, b\r\n\r\n").unwrap().protocols, ["a", "b"]);
        assert_eq!(choose(&h.protocols, &["v4.channel.k8s.io"]), Some("v4.channel.k8s.io"));
        assert_eq!(choose(&["v1.channel.k8s.io".to_string()], &["v4.channel.k8s.io"]), None);
        assert!(parse_head("garbage\r\n\r\n").is_err());
        assert!(parse_head("GET / HTTP/2\r\n\r\n").is_err());
    }
}
