//! Attach over `v4.channel.k8s.io`: the same streams as exec, joined to a running container's
//! own stdin/stdout/stderr (or tty) through the attach socket its monitor serves (see
//! container::attach). The stream ends when the container does (its monitor closes the
//! socket) or when the client goes; the container runs on either way.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::Env;
use super::exec::{collect_streams, expected_streams, for_each_size, status_json};
use super::session::{Session, Stream, Writer};
use crate::container::attach::{self, frame};

#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// The container's state directory, where its monitor's attach socket is.
    pub state_dir: PathBuf,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

pub async fn serve(mut session: Session, r: AttachRequest, _env: Env) {
    let mut streams = collect_streams(&mut session, &expected_streams(r.stdin, r.stdout, r.stderr, r.tty)).await;
    let Some(error) = streams.remove("error") else {
        return session.close().await;
    };
    let w = session.writer.clone();
    let socket = match connect(r.state_dir.clone()).await {
        Ok(s) => s,
        Err(e) => {
            let _ = w.data(error.id, status_json(&[], Err(e)).as_bytes()).await;
            let _ = w.fin(error.id).await;
            return session.close().await;
        }
    };
    let (mut from_monitor, mut to_monitor) = socket.into_split();
    // Input and resizes, framed, through one writer.
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(f) = frames.recv().await {
            if to_monitor.write_all(&f).await.is_err() {
                break;
            }
        }
        // Dropping the write half would shut it down, which the monitor takes for a client
        // that left: held until the attach ends.
        std::future::pending::<()>().await;
        drop(to_monitor);
    });
    let helpers = forward_input(&mut streams, frames_tx);
    let (stdout, stderr) = (streams.remove("stdout").map(|s| s.id), streams.remove("stderr").map(|s| s.id));
    let output = copy_output(&mut from_monitor, stdout, stderr, &w);
    // Until the container ends, or the client closes the connection.
    let client_gone = async { while session.streams.recv().await.is_some() {} };
    tokio::select! {
        _ = output => {}
        _ = client_gone => {}
    }
    for id in [stdout, stderr].into_iter().flatten() {
        let _ = w.fin(id).await;
    }
    helpers.iter().for_each(|h| h.abort());
    writer.abort();
    let _ = w.data(error.id, status_json(&[], Ok(0)).as_bytes()).await;
    let _ = w.fin(error.id).await;
    session.close().await;
}

/// Tasks that frame the client's stdin (then its end) and terminal resizes for the monitor.
fn forward_input(streams: &mut HashMap<String, Stream>, frames_tx: mpsc::Sender<Vec<u8>>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut helpers = Vec::new();
    if let Some(s) = streams.remove("stdin") {
        let tx = frames_tx.clone();
        let mut data = s.data;
        helpers.push(tokio::spawn(async move {
            while let Some(d) = data.recv().await {
                if tx.send(attach::encode(frame::STDIN, &d)).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(attach::encode(frame::STDIN_EOF, &[])).await;
        }));
    }
    if let Some(s) = streams.remove("resize") {
        helpers.push(tokio::spawn(for_each_size(s.data, move |width, height| {
            let _ = frames_tx.try_send(attach::encode(frame::RESIZE, &[width.to_be_bytes(), height.to_be_bytes()].concat()));
        })));
    }
    helpers
}

async fn connect(state_dir: PathBuf) -> Result<UnixStream, String> {
    let std = tokio::task::spawn_blocking(move || attach::connect(&state_dir).map_err(|e| format!("connecting to the container's attach socket in {}: {e} (is it running, and was it created with stdin or tty?)", state_dir.display())))
        .await
        .map_err(|e| e.to_string())??;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    UnixStream::from_std(std).map_err(|e| e.to_string())
}

/// The monitor's output frames onto the client's stdout and stderr streams (what the client
/// did not ask for is dropped), until the monitor closes the socket.
async fn copy_output(from: &mut tokio::net::unix::OwnedReadHalf, stdout: Option<u32>, stderr: Option<u32>, w: &Writer) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut at = 0;
        while let Some((kind, payload, used)) = attach::decode(&buf[at..]) {
            let target = match kind {
                frame::STDOUT => stdout,
                frame::STDERR => stderr,
                _ => None,
            };
            if let Some(id) = target
                && w.data(id, payload).await.is_err() {
                    return;
                }
            at += used;
        }
        buf.drain(..at);
    }
}
