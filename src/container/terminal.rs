//! A container's terminal: allocate a pseudo-terminal, hand its master to whoever supervises the
//! container (over a unix socket, with SCM_RIGHTS, as conmon and containerd expect), and make
//! the slave the controlling terminal and standard streams of the container's process.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::pty::{Winsize, openpty};
use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, connect, sendmsg, socket, AddressFamily, SockFlag, SockType};

use super::{Result, io, sys};

/// Open a pty of `size` (rows, cols) and send its master to the unix socket `console_socket`;
/// returns the slave, for the container's process.
pub fn open_for(console_socket: &Path, size: Option<(u16, u16)>) -> Result<OwnedFd> {
    let ws = size.map(|(rows, cols)| Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 });
    let pty = openpty(ws.as_ref(), None).map_err(sys("allocating a pseudo-terminal (openpty)"))?;
    send_fd(console_socket, pty.master.as_raw_fd())?;
    // The master is the supervisor's now; ours closes here.
    Ok(pty.slave)
}

/// Send `fd` over the unix stream socket at `path`, with the pty's name as payload (what
/// runc sends, and conmon ignores).
fn send_fd(path: &Path, fd: RawFd) -> Result<()> {
    let sock = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).map_err(sys("creating a unix socket"))?;
    let addr = UnixAddr::new(path).map_err(sys(format!("console socket path {}", path.display())))?;
    connect(sock.as_raw_fd(), &addr).map_err(sys(format!("connecting to the console socket {}", path.display())))?;
    let name = std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "/dev/ptmx".into());
    let fds = [fd];
    sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(name.as_bytes())], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map_err(sys(format!("sending the terminal to {}", path.display())))?;
    Ok(())
}

/// In the container's process: a new session whose controlling terminal is `slave`, which
/// also becomes stdin, stdout and stderr.
pub fn attach(slave: RawFd) -> Result<()> {
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // SAFETY: ioctl on a descriptor we hold; 0 = do not steal a terminal from another session.
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } != 0 {
        return Err(io("making the pty the controlling terminal")(std::io::Error::last_os_error()));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        if unsafe { libc::dup2(slave, target) } < 0 {
            return Err(io("attaching the terminal to stdio")(std::io::Error::last_os_error()));
        }
    }
    if slave > 2 {
        // SAFETY: closing our own duplicate.
        unsafe { libc::close(slave) };
    }
    Ok(())
}

pub fn console_size(process: &oci_spec::runtime::Process) -> Option<(u16, u16)> {
    process.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16))
}
