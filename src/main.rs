//! The podbox binary: parse the command line, run it, print errors, choose the exit code
//! (0 ok, 1 runtime error, 2 usage error; `run` in the foreground and `exec` exit with the
//! container's own status).
use clap::Parser;

use podbox::container::early_seal::{self, Dialect};

/// The entry point of the executable (build.rs names it to the linker): before the C library
/// starts, a command line that starts or enters a container re-executes from a read-only clone
/// of the executable (`early_seal`), then `_start` runs as usual (in the clone, or here if
/// nothing was done or it failed: `seal_or_exit` below does it then). The initial stack is
/// handed over untouched, and `rdx` (the dynamic linker's exit hook, which `_start` reads) is
/// kept in a register the call preserves.
///
/// # Safety
/// Only the kernel calls it, as the process's first instruction.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn podbox_entry() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "mov r12, rdx",
        "mov r13, rsp",
        "mov rdi, rsp",
        "call {early}",
        "mov rsp, r13",
        "mov rdx, r12",
        "jmp _start",
        early = sym early_seal::early_reexec,
    )
}

/// How command line `argv` (with the program name) speaks (see `early_seal::dialect_of`).
fn dialect(argv0: &str) -> Option<Dialect> {
    let c = std::ffi::CString::new(argv0).unwrap_or_default();
    // SAFETY: a C string.
    unsafe { early_seal::dialect_of(c.as_ptr().cast()) }
}

/// Whether `args` (without the program name) name a command that starts or enters a
/// container: the test `early_seal` made at the entry point, made again here for when it did
/// not re-execute (a memfd copy is asked for, or the clone failed).
fn enters_container(dialect: Dialect, args: &[String]) -> bool {
    let words: Vec<std::ffi::CString> = args.iter().map(|a| std::ffi::CString::new(a.as_str()).unwrap_or_default()).collect();
    let ptrs: Vec<*const u8> = words.iter().map(|w| w.as_ptr().cast()).collect();
    // SAFETY: ptrs are valid C strings that outlive the call.
    unsafe { early_seal::enters_container(dialect, ptrs.as_ptr(), ptrs.len()) }
}

/// Commands that start or enter a container run from a sealed copy of the executable (see
/// `container::sealed_exe`); the others (state, ps, kill, …) need not pay for the copy.
fn seal_or_exit() {
    if let Err(e) = podbox::container::sealed_exe::ensure() {
        eprintln!("podbox: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map_or(Some(Dialect::Podbox), |a| dialect(a)) {
        None => std::process::exit(podbox::network::cni::plugin::main()),
        Some(Dialect::Runc) => {
            if enters_container(Dialect::Runc, rest) {
                seal_or_exit();
            }
            std::process::exit(podbox::cli::oci::main(args));
        }
        Some(Dialect::Podbox) => {}
    }
    // Before clap builds and parses the whole command tree (~0.5 ms), not after it and then
    // again in the copy. Only a shortcut: a miss is sealed after parsing.
    let sealed = enters_container(Dialect::Podbox, rest);
    if sealed {
        seal_or_exit();
    }
    let cli = podbox::cli::Cli::parse();
    {
        use podbox::cli::{Cmd, pod::PodCmd};
        if !sealed && match &cli.cmd {
            Cmd::Run(_) | Cmd::Exec(_) | Cmd::Pod(PodCmd::Apply { .. }) => true,
            // The CRI server's workers start containers (the server itself enters none, and
            // spawns its workers and `exec`s from the installed binary).
            Cmd::Cri(a) => a.worker && !a.worker_outside_containers,
            Cmd::Oci { args } => enters_container(Dialect::Runc, args),
            _ => false,
        } {
            seal_or_exit();
        }
    }
    let code = match podbox::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podbox: {e:#}");
            e.downcast_ref::<podbox::pod::PodError>().map(|p| p.exit_code()).unwrap_or(1)
        }
    };
    std::process::exit(code);
}
