//! Attach: a container started with `stdin` and/or `tty` keeps them reachable after it started,
//! by any number of clients over time, as conmon does for CRI-O. Its monitor keeps the
//! container's stdin open (the write end of a pipe, or the master of its pty) and listens on a
//! unix socket `attach.sock` in the container's state directory; every client connected there
//! gets the container's output as it comes, and what clients send goes to the container's
//! stdin. The monitor's poll loop (tee) drives the `Hub`; `connect` is the client side.
//!
//! Wire format, both ways: frames of one type byte, a big-endian u32 length and the payload.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::poll::PollFlags;
use serde::{Deserialize, Serialize};

pub const SOCKET: &str = "attach.sock";
/// What the hub buffers for a container that does not read its stdin, at most.
const MAX_PENDING: usize = 1 << 20;

/// Frame types.
pub mod frame {
    /// client → container: input.
    pub const STDIN: u8 = 0;
    /// container → client: output.
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// client → container: this client's input has ended (with `stdin_once`, the container's
    /// stdin is closed).
    pub const STDIN_EOF: u8 = 3;
    /// client → container: the terminal's size, width and height as big-endian u16.
    pub const RESIZE: u8 = 4;
}

/// What a container keeps open for attaching (CRI's ContainerConfig stdin, stdin_once, tty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The first whole frame in `buf`: its type, payload and length on the wire.
pub fn decode(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let len = u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize;
    let payload = buf.get(5..5 + len)?;
    Some((buf[0], payload, 5 + len))
}

/// The socket's path through an open descriptor of its directory: state directories can be
/// longer than the 108 bytes a unix socket address holds.
fn via(dir: &File) -> String {
    format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd())
}

/// Connect to the attach socket of the container whose state directory is `state_dir`.
pub fn connect(state_dir: &Path) -> io::Result<UnixStream> {
    let dir = File::open(state_dir)?;
    UnixStream::connect(via(&dir))
}

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    sent_input: bool,
}

/// The monitor's side.
pub struct Hub {
    opts: AttachOptions,
    listener: UnixListener,
    clients: Vec<Client>,
    /// Where input goes (stdin pipe's write end, or the pty master); None once closed.
    input: Option<OwnedFd>,
    pending: Vec<u8>,
    /// stdin_once and the input ended: close it once `pending` is written.
    closing: bool,
    /// The init's side: the stdin pipe's read end, or the pty slave.
    child_side: OwnedFd,
    /// With a tty: the master, read for output and resized.
    master: Option<OwnedFd>,
}

fn nonblocking(fd: &impl AsFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl Hub {
    /// Listen at `<state_dir>/attach.sock` and make the container's stdin (a pipe, or a pty
    /// with `tty`).
    pub fn open(state_dir: &Path, opts: AttachOptions) -> io::Result<Hub> {
        let dir = File::open(state_dir)?;
        let _ = std::fs::remove_file(state_dir.join(SOCKET));
        let listener = UnixListener::bind(via(&dir))?;
        listener.set_nonblocking(true)?;
        let (input, child_side, master) = if opts.tty {
            let pty = nix::pty::openpty(None, None)?;
            // Neither end may leak into the container's processes (the init gets the slave
            // as its terminal through dup2, which clears close-on-exec).
            for fd in [&pty.master, &pty.slave] {
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
            }
            let input = pty.master.try_clone()?;
            (input, pty.slave, Some(pty.master))
        } else {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            (w, r, None)
        };
        nonblocking(&input)?;
        Ok(Hub { opts, listener, clients: Vec::new(), input: Some(input), pending: Vec::new(), closing: false, child_side, master })
    }

    /// In the init, before it runs: stdin from the hub's pipe (without a tty).
    pub fn attach_child_stdin(&self) {
        if self.master.is_none() {
            let _ = nix::unistd::dup2_stdin(&self.child_side);
        }
    }

    /// With a tty: the slave, to become the init's terminal.
    pub fn terminal_slave(&self) -> Option<RawFd> {
        self.master.as_ref().map(|_| self.child_side.as_raw_fd())
    }

    /// With a tty: a descriptor of the master to read the container's output from.
    pub fn terminal_output(&self) -> Option<io::Result<OwnedFd>> {
        self.master.as_ref().map(|m| m.try_clone())
    }

    /// What the poll loop watches for the hub, in the order `service` expects.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut v = vec![(self.listener.as_fd(), PollFlags::POLLIN)];
        v.extend(self.clients.iter().map(|c| (c.stream.as_fd(), PollFlags::POLLIN)));
        if let (false, Some(i)) = (self.pending.is_empty(), &self.input) {
            v.push((i.as_fd(), PollFlags::POLLOUT));
        }
        v
    }

    /// Act on what poll found ready (`ready` in the order of `poll_fds`).
    pub fn service(&mut self, ready: &[bool]) {
        let clients_ready: Vec<bool> = (0..self.clients.len()).map(|i| ready.get(1 + i).copied().unwrap_or(false)).collect();
        for i in (0..clients_ready.len()).rev() {
            if clients_ready[i] && !self.read_client(i) {
                let gone = self.clients.remove(i);
                if gone.sent_input && self.opts.stdin_once {
                    self.close_input();
                }
            }
        }
        if ready.first().copied().unwrap_or(false) {
            while let Ok((stream, _)) = self.listener.accept() {
                if nonblocking(&stream).is_ok() {
                    self.clients.push(Client { stream, inbuf: Vec::new(), sent_input: false });
                }
            }
        }
        self.flush_input();
    }

    /// Read what client `i` sent; false when it is gone.
    fn read_client(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let n = match self.clients[i].stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
        };
        self.clients[i].inbuf.extend_from_slice(&buf[..n]);
        let inbuf = std::mem::take(&mut self.clients[i].inbuf);
        let mut at = 0;
        while let Some((kind, payload, used)) = decode(&inbuf[at..]) {
            match kind {
                frame::STDIN if self.opts.stdin && self.pending.len() + payload.len() <= MAX_PENDING => {
                    self.clients[i].sent_input = true;
                    self.pending.extend_from_slice(payload);
                }
                frame::STDIN_EOF if self.opts.stdin_once => self.close_input(),
                frame::RESIZE if payload.len() == 4 => {
                    if let Some(m) = &self.master {
                        let ws = libc::winsize { ws_col: u16::from_be_bytes([payload[0], payload[1]]), ws_row: u16::from_be_bytes([payload[2], payload[3]]), ws_xpixel: 0, ws_ypixel: 0 };
                        // SAFETY: TIOCSWINSZ reads a winsize; the master is ours.
                        unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    }
                }
                _ => {}
            }
            at += used;
        }
        self.clients[i].inbuf = inbuf[at..].to_vec();
        true
    }

    /// Write what is pending to the container's stdin, as far as it takes it now; then close it
    /// if that was asked for.
    fn flush_input(&mut self) {
        while let (false, Some(input)) = (self.pending.is_empty(), &self.input) {
            match nix::unistd::write(input, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::Error::EAGAIN) => return,
                Err(nix::Error::EINTR) => {}
                // EPIPE: nobody in the container reads its stdin any more.
                Err(_) => {
                    self.input = None;
                    self.pending.clear();
                }
            }
        }
        if self.closing && self.pending.is_empty() {
            self.input = None;
        }
    }

    /// stdin_once: the container is to see the end of its input (a pipe only: closing a pty's
    /// master would hang up its terminal).
    fn close_input(&mut self) {
        if self.master.is_none() {
            self.closing = true;
        }
    }

    /// Send output to every client; one that cannot take it now is dropped rather than
    /// allowed to stall the container (its socket buffer holds a few hundred KiB).
    pub fn broadcast(&mut self, stream: &str, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let f = encode(if stream == "stderr" { frame::STDERR } else { frame::STDOUT }, data);
        self.clients.retain(|c| {
            let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
            matches!(nix::sys::socket::send(c.stream.as_raw_fd(), &f, flags), Ok(n) if n == f.len())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_type_and_length() {
        let mut wire = encode(frame::STDOUT, b"hello");
        wire.extend(encode(frame::RESIZE, &[0, 80, 0, 24]));
        let (k, p, n) = decode(&wire).unwrap();
        assert_eq!((k, p, n), (frame::STDOUT, &b"hello"[..], 10));
        let (k, p, _) = decode(&wire[n..]).unwrap();
        assert_eq!((k, p), (frame::RESIZE, &[0u8, 80, 0, 24][..]));
        assert!(decode(&wire[..7]).is_none());
    }

    #[test]
    fn input_reaches_the_container_and_output_every_client() {
        let dir = std::env::temp_dir().join(format!("podbox-attach-{}-{}", std::process::id(), "x".repeat(90)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut hub = Hub::open(&dir, AttachOptions { stdin: true, stdin_once: true, tty: false }).unwrap();
        let mut a = connect(&dir).unwrap();
        let mut b = connect(&dir).unwrap();
        hub.service(&[true]);
        assert_eq!(hub.clients.len(), 2);
        hub.broadcast("stderr", b"out");
        for c in [&mut a, &mut b] {
            let mut got = [0u8; 8];
            c.read_exact(&mut got).unwrap();
            assert_eq!(decode(&got).unwrap().1, b"out");
        }
        std::io::Write::write_all(&mut a, &[encode(frame::STDIN, b"in\n"), encode(frame::STDIN_EOF, b"")].concat()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        hub.service(&[false, true, false]);
        let mut stdin = File::from(hub.child_side.try_clone().unwrap());
        let mut got = String::new();
        // stdin_once: after the input, the container sees its end.
        stdin.read_to_string(&mut got).unwrap();
        assert_eq!(got, "in\n");
        drop(hub);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
