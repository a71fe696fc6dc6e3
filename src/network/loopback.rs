//! Bring `lo` up in the calling thread's network namespace. A plain SIOCSIFFLAGS ioctl: it runs in
//! a freshly unshared namespace before anything async exists, and needs no netlink socket.

use std::io;

pub fn up() -> io::Result<()> {
    // SAFETY: a throwaway datagram socket and an ifreq we own; both ioctls only read/write `req`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[..3].copy_from_slice(&[b'l' as libc::c_char, b'o' as libc::c_char, 0]);
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 { Err(err) } else { Ok(()) }
    }
}
