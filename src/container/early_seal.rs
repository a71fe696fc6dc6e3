//! The re-execution from a read-only clone of the executable (`sealed_exe`), done at the ELF
//! entry point, before the C library starts, for the command lines that need it.
//!
//! Why before libc: a command that starts or enters a container runs podbox twice, once from
//! the file the user named and once from the clone. The first run does nothing but decide and
//! re-execute, yet it paid for a whole start-up: glibc's (relocating the static PIE, which
//! writes 84 pages, and detecting the CPU, some 30 CPUID instructions that each exit to the
//! hypervisor in a VM: 5 µs apiece measured here) and Rust's. Measured (issue 19): a `run` that
//! fails at once 1.8 → 1.3 ms; a whole container start 0.2 ms less. runc did the same for the
//! same reason: its binary clone was made in a C constructor that ran before the Go runtime.
//!
//! The code here runs with nothing set up: no relocations applied (so no static holding a
//! pointer may be read, no formatting, no panics taken), no IFUNCs resolved (so no call may
//! reach memcpy, memset, memcmp or strlen, which the compiler emits for copies and comparisons
//! of memory, or recognises in loops), no TLS (so no errno: system calls are made directly).
//! Whatever it does not expect, it leaves to the usual path: it returns and libc starts as if
//! nothing happened; `sealed_exe::ensure` then does the same work after start-up, or the memfd
//! copy.
//!
//! The entry point itself (`podbox_entry` in main.rs, x86-64) calls `early_reexec` with the
//! initial stack pointer and jumps to libc's `_start` when it returns.

//! Unoptimised builds add two more rules: any call to a function of another crate (core's
//! `read_volatile`, `ptr::add`, `is_null`, slice `len`) goes through the GOT, which is not
//! relocated yet either, so every function here is `#[inline(always)]` (inlined at every
//! optimisation level), memory is read and written by `asm!` (which the compiler cannot turn
//! into a library call, unoptimised or not), pointers move by integer arithmetic, and string
//! literals are NUL-terminated byte arrays reached by their address.

use core::arch::asm;

/// The marker `sealed_exe` expects in the environment of the re-executed copy (`sealed_exe::MARKER`,
/// as a test checks), and its name as an environment entry starts.
const MARKER_ASSIGNMENT: &[u8; 21] = b"_PODBOX_SEALED_EXE=1\0";
const MARKER_PREFIX: &[u8; 20] = b"_PODBOX_SEALED_EXE=\0";

/// The address of a byte-string literal or constant (written with its NUL), by casts only.
macro_rules! lit {
    ($s:expr) => {
        ($s as *const [u8] as *const u8)
    };
}

/// Byte `i` of the memory at `p`.
#[inline(always)]
unsafe fn byte(p: *const u8, i: usize) -> u8 {
    let v: u8;
    // SAFETY: the caller keeps p + i readable.
    unsafe { asm!("mov {v}, byte ptr [{p}]", p = in(reg) p as usize + i, v = out(reg_byte) v, options(nostack, readonly, preserves_flags)) };
    v
}

/// Word `i` of the array of words at `p`.
#[inline(always)]
unsafe fn word(p: *const usize, i: usize) -> usize {
    let v: usize;
    // SAFETY: the caller keeps the word readable.
    unsafe { asm!("mov {v}, qword ptr [{p}]", p = in(reg) p as usize + 8 * i, v = out(reg) v, options(nostack, readonly, preserves_flags)) };
    v
}

/// Store `v` as word `i` of the array of words at `p`.
#[inline(always)]
unsafe fn set_word(p: *mut usize, i: usize, v: usize) {
    // SAFETY: the caller keeps the word writable.
    unsafe { asm!("mov qword ptr [{p}], {v}", p = in(reg) p as usize + 8 * i, v = in(reg) v, options(nostack, preserves_flags)) };
}

/// Whether C string `s` starts with the characters of C string `lit`.
#[inline(always)]
unsafe fn starts_with(s: *const u8, lit: *const u8) -> bool {
    let mut i = 0;
    loop {
        // SAFETY: both are NUL-terminated and the walk stops at the first difference or at
        // lit's NUL, so neither is read past its end.
        let l = unsafe { byte(lit, i) };
        if l == 0 {
            return true;
        }
        if unsafe { byte(s, i) } != l {
            return false;
        }
        i += 1;
    }
}

/// The length of C string `s`.
#[inline(always)]
unsafe fn len(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: s is NUL-terminated.
    while unsafe { byte(s, n) } != 0 {
        n += 1;
    }
    n
}

/// Whether C string `s` is C string `lit`.
#[inline(always)]
unsafe fn equals(s: *const u8, lit: *const u8) -> bool {
    // SAFETY: starts_with read s up to lit's length, so that byte is within s.
    unsafe { starts_with(s, lit) && byte(s, len(lit)) == 0 }
}

/// Whether C string `s` ends with C string `lit`.
#[inline(always)]
unsafe fn ends_with(s: *const u8, lit: *const u8) -> bool {
    // SAFETY: the suffix starts within s.
    unsafe {
        let (n, m) = (len(s), len(lit));
        n >= m && equals((s as usize + n - m) as *const u8, lit)
    }
}

/// The file name of path `s` (after its last `/`).
#[inline(always)]
unsafe fn file_name(s: *const u8) -> *const u8 {
    let (mut i, mut start) = (0, 0);
    loop {
        // SAFETY: s is NUL-terminated.
        match unsafe { byte(s, i) } {
            0 => return (s as usize + start) as *const u8,
            b'/' => start = i + 1,
            _ => {}
        }
        i += 1;
    }
}

/// How a command line names its subcommand: which of its global options take a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// podbox's own: `--root`, `--rootfs`, `--images`.
    Podbox,
    /// runc's, which podman and containerd speak (OCI runtime mode): `--root`, `--log`,
    /// `--log-format`.
    Runc,
}

#[inline(always)]
unsafe fn takes_value(dialect: Dialect, a: *const u8) -> bool {
    // SAFETY: a is a C string of the command line.
    unsafe {
        equals(a, lit!(b"--root\0"))
            || match dialect {
                Dialect::Podbox => equals(a, lit!(b"--rootfs\0")) || equals(a, lit!(b"--images\0")),
                Dialect::Runc => equals(a, lit!(b"--log\0")) || equals(a, lit!(b"--log-format\0")),
            }
    }
}

#[inline(always)]
unsafe fn starts_or_enters(dialect: Dialect, sub: *const u8) -> bool {
    // SAFETY: sub is a C string of the command line.
    unsafe { equals(sub, lit!(b"run\0")) || equals(sub, lit!(b"exec\0")) || (dialect == Dialect::Runc && equals(sub, lit!(b"create\0"))) }
}

/// Whether the arguments `args[..n]` (without the program name) name, as their subcommand (the
/// first word that is not an option nor a global option's value), a command that starts or
/// enters a container in `dialect`: `run` or `exec`, and runc's `create`. A look at the words
/// only, before any parsing: a false hit (`--help run`) costs the re-execution, nothing else.
///
/// # Safety
/// `args` points to `n` valid C strings.
#[inline(always)]
pub unsafe fn enters_container(dialect: Dialect, args: *const *const u8, n: usize) -> bool {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n.
        let a = unsafe { word(args as *const usize, i) } as *const u8;
        // SAFETY: a is one of the C strings.
        unsafe {
            if takes_value(dialect, a) {
                i += 2;
            } else if byte(a, 0) != b'-' {
                return starts_or_enters(dialect, a);
            } else {
                i += 1;
            }
        }
    }
    false
}

/// The dialect of the command line, from the program's name (`argv[0]`): None for the CNI
/// plugin (`podbox-cni`), which enters no container.
///
/// # Safety
/// `argv0` is a C string.
#[inline(always)]
pub unsafe fn dialect_of(argv0: *const u8) -> Option<Dialect> {
    // SAFETY: argv0 is a C string, and so is its file name.
    unsafe {
        let name = file_name(argv0);
        if equals(name, lit!(b"podbox-cni\0")) {
            None
        } else if ends_with(name, lit!(b"runc\0")) || ends_with(name, lit!(b"-oci\0")) {
            Some(Dialect::Runc)
        } else {
            Some(Dialect::Podbox)
        }
    }
}

/// A system call with up to six arguments (the unused ones 0); returns the raw result (-errno
/// on failure).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sys(n: libc::c_long, a: usize, b: usize, c: usize, d: usize, e: usize, f: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes a valid system call and arguments.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// The scratch mapping: mount attributes at 0, statfs at 64, the copy's environment from 256.
/// A mapping, not the stack: a local buffer is moved and zeroed with memcpy and memset in
/// unoptimised builds, which cannot be called yet.
const SCRATCH: usize = 16384;
const MAX_ENV: usize = (SCRATCH - 256) / 8;

/// Re-execute from a read-only clone of the executable if the command line needs it and this
/// process does not already run from one; else return (the usual start follows).
///
/// # Safety
/// Called once, from the entry point, with the initial stack pointer (argc, argv, envp).
#[cfg(target_arch = "x86_64")]
pub unsafe extern "C" fn early_reexec(sp: *const usize) {
    // SAFETY: the System V initial process stack: argc, then argv[argc] and NULL, then envp
    // and NULL, all valid C strings.
    unsafe {
        let argc = word(sp, 0);
        let argv = (sp as usize + 8) as *const usize;
        let envp = (sp as usize + 8 * (argc + 2)) as *const usize;
        if argc < 2 {
            return;
        }
        let Some(dialect) = dialect_of(word(argv, 0) as *const u8) else { return };
        if !enters_container(dialect, (argv as usize + 8) as *const *const u8, argc - 1) {
            return;
        }
        // Already the copy, or a clone is asked of another kind: the usual path knows.
        let mut n = 0;
        loop {
            let e = word(envp, n) as *const u8;
            if e as usize == 0 {
                break;
            }
            if starts_with(e, lit!(MARKER_PREFIX)) || starts_with(e, lit!(b"PODBOX_EXE_CLONE=\0")) {
                return;
            }
            n += 1;
        }
        if n + 2 > MAX_ENV {
            return;
        }
        let mem = sys(libc::SYS_mmap, 0, SCRATCH, (libc::PROT_READ | libc::PROT_WRITE) as usize, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize, usize::MAX, 0);
        if mem < 0 {
            return;
        }
        let mem = mem as usize;
        if !runs_sealed(mem + 64) {
            reexec_from_clone(mem, argv, envp, n);
        }
        // Only a failed clone or exec comes back here.
        sys(libc::SYS_munmap, mem, SCRATCH, 0, 0, 0, 0);
    }
}

/// Clone the executable read-only (as `sealed_exe::read_only_clone`) and execute the clone
/// with `argv` and the `n` entries of `envp` plus the marker; returns if anything fails.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn reexec_from_clone(mem: usize, argv: *const usize, envp: *const usize, n: usize) {
    // SAFETY: mem is SCRATCH zeroed bytes of our own; argv and envp as `early_reexec` says.
    unsafe {
        let fd = sys(libc::SYS_open_tree, libc::AT_FDCWD as usize, lit!(b"/proc/self/exe\0") as usize, 1 /* OPEN_TREE_CLONE */ | libc::O_CLOEXEC as usize, 0, 0, 0);
        if fd < 0 {
            return;
        }
        let fd = fd as usize;
        // struct mount_attr { attr_set, attr_clr, propagation, userns_fd }: the rest is zero.
        set_word(mem as *mut usize, 0, super::mounts::MOUNT_ATTR_RDONLY as usize);
        if sys(libc::SYS_mount_setattr, fd, lit!(b"\0") as usize, libc::AT_EMPTY_PATH as usize, mem, 32, 0) == 0 {
            let env = (mem + 256) as *mut usize;
            let mut i = 0;
            while i < n {
                set_word(env, i, word(envp, i));
                i += 1;
            }
            set_word(env, n, lit!(MARKER_ASSIGNMENT) as usize);
            set_word(env, n + 1, 0);
            sys(libc::SYS_execveat, fd, lit!(b"\0") as usize, argv as usize, env as usize, libc::AT_EMPTY_PATH as usize, 0);
        }
        sys(libc::SYS_close, fd, 0, 0, 0, 0, 0);
    }
}

/// `sealed_exe::running_sealed` with raw system calls: the executable is a memfd with every
/// seal, or on a read-only mount. `buf` has room for a `struct statfs` (120 bytes).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn runs_sealed(buf: usize) -> bool {
    // SAFETY: system calls on a descriptor this function owns, into a buffer of the right size.
    unsafe {
        let fd = sys(libc::SYS_openat, libc::AT_FDCWD as usize, lit!(b"/proc/self/exe\0") as usize, (libc::O_RDONLY | libc::O_CLOEXEC) as usize, 0, 0, 0);
        if fd < 0 {
            return false;
        }
        let fd = fd as usize;
        let seals = sys(libc::SYS_fcntl, fd, libc::F_GET_SEALS as usize, 0, 0, 0, 0);
        // x86-64 `struct statfs`: nine 8-byte fields (type … frsize), then f_flags.
        let read_only = sys(libc::SYS_fstatfs, fd, buf, 0, 0, 0, 0) == 0 && word(buf as *const usize, 9) as u64 & libc::ST_RDONLY != 0;
        sys(libc::SYS_close, fd, 0, 0, 0, 0, 0);
        let all = super::sealed_exe::SEALS as isize;
        (seals >= 0 && seals & all == all) || read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn enters(dialect: Dialect, line: &str) -> bool {
        let words: Vec<CString> = line.split_whitespace().map(|w| CString::new(w).unwrap()).collect();
        let ptrs: Vec<*const u8> = words.iter().map(|w| w.as_ptr() as *const u8).collect();
        // SAFETY: ptrs holds valid C strings that outlive the call.
        unsafe { enters_container(dialect, ptrs.as_ptr(), ptrs.len()) }
    }

    fn dialect(argv0: &str) -> Option<&'static str> {
        let s = CString::new(argv0).unwrap();
        // SAFETY: a C string.
        unsafe { dialect_of(s.as_ptr() as *const u8) }.map(|d| match d {
            Dialect::Podbox => "podbox",
            Dialect::Runc => "runc",
        })
    }

    /// The subcommand is found past global options and their values, in both dialects.
    #[test]
    fn the_subcommand_is_found_past_the_global_options() {
        assert!(enters(Dialect::Podbox, "--root /r --rootfs /fs run --pod p -- true"));
        assert!(enters(Dialect::Podbox, "exec --pod p c ls"));
        assert!(!enters(Dialect::Podbox, "--root run pod create p"));
        assert!(!enters(Dialect::Podbox, "pod exec"));
        assert!(!enters(Dialect::Podbox, "create c"));
        assert!(!enters(Dialect::Podbox, "--root"));
        assert!(enters(Dialect::Runc, "--root /r --log l --systemd-cgroup exec c ls"));
        assert!(enters(Dialect::Runc, "create --bundle b c"));
        assert!(!enters(Dialect::Runc, "--log create state c"));
        assert!(!enters(Dialect::Runc, "--debug"));
    }

    #[test]
    fn the_dialect_comes_from_the_program_name() {
        assert_eq!(dialect("/usr/bin/podbox"), Some("podbox"));
        assert_eq!(dialect("podbox"), Some("podbox"));
        assert_eq!(dialect("/usr/local/bin/podbox-runc"), Some("runc"));
        assert_eq!(dialect("/x/podbox-oci"), Some("runc"));
        assert_eq!(dialect("/opt/cni/bin/podbox-cni"), None);
        assert_eq!(dialect("/a/runc/podbox"), Some("podbox"));
    }

    #[test]
    fn the_marker_is_the_one_sealed_exe_reads() {
        let name = super::super::sealed_exe::MARKER;
        assert_eq!(&MARKER_ASSIGNMENT[..], format!("{name}=1\0").as_bytes());
        assert_eq!(&MARKER_PREFIX[..], format!("{name}=\0").as_bytes());
    }

    /// The test binary runs from a writable file: not sealed.
    #[test]
    fn a_plain_file_is_not_sealed() {
        let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
        // SAFETY: raw system calls on our own descriptors, into a statfs-sized buffer.
        assert!(!unsafe { runs_sealed(buf.as_mut_ptr() as usize) });
    }
}
