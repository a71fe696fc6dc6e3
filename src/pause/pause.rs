//! The pause process: holds a pod's namespaces, reaps zombies, exits 0 on SIGTERM/SIGINT.
//!
//! Built by `build.rs` as its own static, libc-free ELF (no_std, raw syscalls) so that a pause
//! costs a few KiB of resident memory instead of the ~1 MiB a std binary maps. It blocks the
//! signals it cares about and waits for them synchronously: blocked signals are delivered even to
//! a PID-namespace init, and no handler or allocation is needed.
#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

const SIGINT: usize = 2;
const SIGTERM: usize = 15;
const SIGCHLD: usize = 17;
const WNOHANG: usize = 1;
const PR_SET_NAME: usize = 15;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const WAIT4: usize = 61;
    pub const EXIT_GROUP: usize = 231;
    pub const PRCTL: usize = 157;
}
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const RT_SIGPROCMASK: usize = 135;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const WAIT4: usize = 260;
    pub const EXIT_GROUP: usize = 94;
    pub const PRCTL: usize = 167;
}

#[cfg(target_arch = "x86_64")]
global_asm!(".globl _start", "_start:", "xor rbp, rbp", "and rsp, -16", "call pause_main", "ud2");
#[cfg(target_arch = "aarch64")]
global_asm!(".globl _start", "_start:", "mov x29, xzr", "mov x30, xzr", "bl pause_main", "brk #0");

#[cfg(target_arch = "x86_64")]
/// # Safety
/// A raw system call: the arguments must be valid for syscall `n` (pointers to live memory).
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the kernel's system-call instruction and register convention; clobbers declared.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}
#[cfg(target_arch = "aarch64")]
/// # Safety
/// A raw system call: the arguments must be valid for syscall `n` (pointers to live memory).
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the kernel's system-call instruction and register convention; clobbers declared.
    unsafe {
        asm!("svc 0", in("x8") n, inlateout("x0") a as isize => ret, in("x1") b, in("x2") c,
             in("x3") d, options(nostack));
    }
    ret
}

fn exit(code: usize) -> ! {
    // SAFETY: exit_group takes no pointers.
    unsafe { syscall4(nr::EXIT_GROUP, code, 0, 0, 0) };
    loop {}
}

#[unsafe(no_mangle)]
pub extern "C" fn pause_main() -> ! {
    // Exec'd from a memfd, the process would be named "memfd:pause"; `ps` should say "pause".
    let name = *b"pause\0";
    // SAFETY: PR_SET_NAME reads the NUL-terminated name on our stack.
    unsafe { syscall4(nr::PRCTL, PR_SET_NAME, name.as_ptr() as usize, 0, 0) };
    let mask: u64 = (1 << (SIGINT - 1)) | (1 << (SIGTERM - 1)) | (1 << (SIGCHLD - 1));
    let mask_ptr = &mask as *const u64 as usize;
    // SIG_BLOCK = 0; sigset size 8.
    // SAFETY: reads the 8-byte mask on our stack; no old mask is written.
    if unsafe { syscall4(nr::RT_SIGPROCMASK, 0, mask_ptr, 0, 8) } < 0 {
        exit(1);
    }
    loop {
        // SAFETY: reads the mask on our stack; no siginfo or timeout pointer.
        let sig = unsafe { syscall4(nr::RT_SIGTIMEDWAIT, mask_ptr, 0, 0, 8) };
        match sig as usize {
            // SAFETY: wait4 with no status or rusage pointer.
            SIGCHLD => while unsafe { syscall4(nr::WAIT4, usize::MAX, 0, WNOHANG, 0) } > 0 {},
            SIGINT | SIGTERM => exit(0),
            _ => {} // EINTR and the like: wait again
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}
