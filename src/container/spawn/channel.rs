//! The typed sync protocol between a process podbox forks and the one that forked it: `Msg`
//! values, one per datagram of a SOCK_SEQPACKET socketpair (so several writers — an intermediate
//! and the process it forked — never interleave), each a little-endian u32 length followed by
//! that many bytes of JSON. Both ends may send: the child reports (its PID, an error before exec,
//! "stopped for hooks", "ready", "my user namespace needs its maps"), the parent answers (go
//! ahead, hooks done, maps written). The socket is
//! CLOEXEC, so the parent reads end-of-file once every child copy has exec'd or exited.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use serde::{Deserialize, Serialize};

/// Every message of the protocol. A round trip is two variants, sent with `send` and read with
/// `recv` (e.g. a user namespace's `MapsDue` → `MapsWritten`, or `Error` when they could not
/// be written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// Parent → child: go ahead (the monitor: its caller has recorded it).
    Go,
    /// Child → parent: the PID (in the parent's numbering) of the process that runs on; sent by
    /// an intermediate for the process it forked into a PID namespace, or by the monitor for
    /// the container's init.
    Pid { pid: i32 },
    /// Child → parent: it failed before exec; `code` is its exit code (127: not found, …).
    Error { code: i32, msg: String },
    /// Init → parent (OCI create): stopped before pivot_root, the prestart/createRuntime hooks
    /// are due.
    HooksDue,
    /// Parent → init: the hooks ran; the state JSON for the init's own createContainer and
    /// startContainer hooks.
    HooksDone { state: String },
    /// Init → parent (OCI create): everything is set up, the init waits for `start`. The pod's
    /// namespace pinner → parent: its namespaces exist, pin them (then `Go`: it may exit).
    Ready,
    /// Child → parent: it made a new user namespace and waits for its uid/gid maps (a process
    /// cannot map ids for itself); the parent writes them for the child it forked.
    MapsDue,
    /// Parent → child: the maps are written; the child goes on to make the namespaces the
    /// user namespace is to own.
    MapsWritten,
    /// Monitor → its caller (`monitor::start`): make the container's cgroup now; the init is
    /// forked and sets up meanwhile, unless it joins at birth.
    CgroupDue,
    /// Caller → monitor: the container's cgroup exists. Spawner → child
    /// (`Spawn::cgroups_later`): the child's cgroups exist, it may join them.
    CgroupsMade,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("sync socket: {what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("sync socket: malformed message ({0})")]
    Malformed(String),
}

/// The largest message: an error text or a state JSON is far below it.
const MAX_MSG: usize = 64 * 1024;

/// One end of the socketpair.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair: (parent's end, child's end), both CLOEXEC.
    pub fn pair() -> Result<(Channel, Channel), ChannelError> {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .map_err(|e| ChannelError::Io { what: "socketpair", source: e.into() })?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The bytes of one datagram: length prefix and JSON.
    pub fn encode(msg: &Msg) -> Vec<u8> {
        let body = serde_json::to_vec(msg).unwrap_or_default();
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(datagram: &[u8]) -> Result<Msg, ChannelError> {
        let (len, body) = datagram.split_at_checked(4).ok_or_else(|| ChannelError::Malformed("shorter than its length prefix".into()))?;
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
        if len != body.len() {
            return Err(ChannelError::Malformed(format!("length prefix {len}, body {} bytes", body.len())));
        }
        serde_json::from_slice(body).map_err(|e| ChannelError::Malformed(e.to_string()))
    }

    /// Send one message as one datagram.
    pub fn send(&self, msg: &Msg) -> Result<(), ChannelError> {
        let mut msg = msg.clone();
        if let Msg::Error { msg: text, .. } = &mut msg
            && text.len() > 4000
        {
            let mut cut = 4000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let bytes = Self::encode(&msg);
        loop {
            // SAFETY: sending our own buffer on a socket we own; MSG_NOSIGNAL: a gone peer is an
            // error, not a SIGPIPE.
            let n = unsafe { libc::send(self.raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(ChannelError::Io { what: "send", source: e });
            }
        }
    }

    /// The next message, or None at end-of-file (every peer copy exec'd or exited).
    pub fn recv(&self) -> Result<Option<Msg>, ChannelError> {
        let mut buf = vec![0u8; MAX_MSG];
        loop {
            // SAFETY: receiving into our own buffer of the given length; MSG_TRUNC makes the
            // return value the datagram's real length, so an oversized one is detected.
            let n = unsafe { libc::recv(self.raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_TRUNC) };
            match n {
                0 => return Ok(None),
                n if n > 0 && n as usize > buf.len() => return Err(ChannelError::Malformed(format!("{n} bytes, more than {MAX_MSG}"))),
                n if n > 0 => return Self::decode(&buf[..n as usize]).map(Some),
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(ChannelError::Io { what: "recv", source: e });
                    }
                }
            }
        }
    }

    /// End the conversation for every holder of this end (a copy inherited by a child
    /// included): the peer reads end-of-file.
    /// True once the other end is closed (its process ended, or dropped it).
    pub fn peer_closed(&self) -> bool {
        let mut pfd = libc::pollfd { fd: self.raw_fd(), events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: poll on one descriptor we own, without waiting.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0
    }

    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on a socket we own.
        unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_RDWR) };
    }

    /// In a forked child: report an error and end the process with `code`.
    pub fn fail(&self, code: i32, msg: &str) -> ! {
        let _ = self.send(&Msg::Error { code, msg: msg.to_string() });
        // SAFETY: _exit skips destructors and atexit handlers that belong to the parent's image.
        unsafe { libc::_exit(code) }
    }
}

/// A child's failure before exec, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct Failure {
    pub code: i32,
    pub msg: String,
}
