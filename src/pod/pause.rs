//! The embedded pause executable (built by build.rs from src/pause/pause.rs) and how to start it:
//! it is exec'd from a sealed memfd, so podbox installs no file and needs no path to it.

use std::ffi::CString;
use std::io;

pub static PAUSE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/podbox-pause"));

/// Replace the calling process with the pause. Returns only on error.
pub fn exec() -> io::Error {
    // SAFETY: plain syscalls on fds we own; argv/envp are valid NUL-terminated arrays.
    unsafe {
        let name = CString::new("pause").unwrap();
        let fd = libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
        if fd < 0 {
            return io::Error::last_os_error();
        }
        let mut off = 0;
        while off < PAUSE_ELF.len() {
            let n = libc::write(fd, PAUSE_ELF[off..].as_ptr().cast(), PAUSE_ELF.len() - off);
            if n <= 0 {
                return io::Error::last_os_error();
            }
            off += n as usize;
        }
        // Unsealed, the running pause could be rewritten through /proc/PID/exe: do not run it.
        if libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL) != 0 {
            return io::Error::last_os_error();
        }
        let argv = [name.as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        libc::fexecve(fd, argv.as_ptr(), envp.as_ptr());
        io::Error::last_os_error()
    }
}
