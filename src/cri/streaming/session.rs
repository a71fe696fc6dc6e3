//! One SPDY/3.1 connection, server side: a reader task that turns the peer's frames into
//! streams (each accepted with a SYN_REPLY, its data delivered in order, closed by FIN or
//! RST_STREAM) and answers PINGs, and a writer task that sends what the handlers queue. Flow
//! control is not enforced in either direction: client-go's spdystream neither sends nor
//! honours WINDOW_UPDATE.

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::spdy::{Codec, FLAG_FIN, Frame, Headers};

/// Data frames carry at most this much (what spdystream sends too).
const CHUNK: usize = 32 * 1024;
/// How long closing waits for queued frames to be sent.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A stream the peer opened: its headers and its data, which ends (None) at FIN or reset.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub data: mpsc::Receiver<Vec<u8>>,
}

impl Stream {
    pub fn kind(&self) -> &str {
        super::spdy::header(&self.headers, "streamtype").unwrap_or("")
    }
}

/// Queues frames for the connection; cheap to clone. Sending fails once the peer is gone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Frame>,
}

#[derive(Debug, thiserror::Error)]
#[error("the streaming connection is closed")]
pub struct Closed;

impl Writer {
    /// `bytes` on stream `id`, in frames of at most 32 KiB.
    pub async fn data(&self, id: u32, bytes: &[u8]) -> Result<(), Closed> {
        for chunk in bytes.chunks(CHUNK) {
            self.tx.send(Frame::Data { stream_id: id, flags: 0, data: chunk.to_vec() }).await.map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// The end of what we send on stream `id`.
    pub async fn fin(&self, id: u32) -> Result<(), Closed> {
        self.tx.send(Frame::Data { stream_id: id, flags: FLAG_FIN, data: vec![] }).await.map_err(|_| Closed)
    }

    pub async fn reset(&self, id: u32) {
        let _ = self.tx.send(Frame::RstStream { stream_id: id, status: super::spdy::RST_CANCEL }).await;
    }

    pub async fn go_away(&self) {
        let _ = self.tx.send(Frame::GoAway { last_good_stream_id: 0, status: 0 }).await;
    }
}

/// A running connection: the streams the peer opens arrive on `streams` (which ends when the
/// peer closes the connection or breaks the protocol).
pub struct Session {
    pub streams: mpsc::Receiver<Stream>,
    pub writer: Writer,
    reader: JoinHandle<()>,
    sender: JoinHandle<()>,
}

impl Session {
    /// Speak SPDY on `tcp`; `early` are bytes already read past the HTTP upgrade request.
    pub fn start(tcp: TcpStream, early: Vec<u8>) -> Session {
        let (rd, wr) = tcp.into_split();
        let (frames_tx, frames_rx) = mpsc::channel(64);
        let (streams_tx, streams) = mpsc::channel(16);
        let writer = Writer { tx: frames_tx };
        let sender = tokio::spawn(send_frames(wr, frames_rx));
        let reader = tokio::spawn(read_frames(rd, early, streams_tx, writer.clone()));
        Session { streams, writer, reader, sender }
    }

    /// Say goodbye and close: queued frames are sent first, then the connection is shut down.
    pub async fn close(self) {
        let Session { streams, writer, reader, sender } = self;
        writer.go_away().await;
        drop(writer);
        drop(streams);
        // The reader holds a writer (for PING replies): stop it so the sender can finish.
        reader.abort();
        let _ = reader.await;
        // The sender ends once every writer is dropped; one a handler leaked must not keep the
        // connection open for ever.
        let abort = sender.abort_handle();
        if tokio::time::timeout(CLOSE_TIMEOUT, sender).await.is_err() {
            abort.abort();
        }
    }
}

async fn send_frames(mut wr: OwnedWriteHalf, mut frames: mpsc::Receiver<Frame>) {
    let mut codec = Codec::default();
    let mut buf = Vec::new();
    while let Some(f) = frames.recv().await {
        buf.clear();
        if codec.encode(&f, &mut buf).is_err() || wr.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_frames(mut rd: OwnedReadHalf, mut buf: Vec<u8>, streams: mpsc::Sender<Stream>, writer: Writer) {
    let mut codec = Codec::default();
    let mut open: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            let (frame, used) = match codec.decode(&buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("podbox cri: streaming connection: {e}");
                    return;
                }
            };
            buf.drain(..used);
            match frame {
                Frame::SynStream { stream_id, flags, headers, .. } => {
                    if writer.tx.send(Frame::SynReply { stream_id, flags: 0, headers: vec![] }).await.is_err() {
                        return;
                    }
                    let (tx, data) = mpsc::channel(16);
                    if flags & FLAG_FIN == 0 {
                        open.insert(stream_id, tx);
                    }
                    if streams.send(Stream { id: stream_id, headers, data }).await.is_err() {
                        return;
                    }
                }
                Frame::Data { stream_id, flags, data } => {
                    if let Some(tx) = open.get(&stream_id) {
                        // A handler that stopped reading a stream just loses its data.
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            open.remove(&stream_id);
                        }
                    }
                    if flags & FLAG_FIN != 0 {
                        open.remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    open.remove(&stream_id);
                }
                Frame::Ping { id } => {
                    let _ = writer.tx.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => return,
                _ => {}
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
