//! `podbox-cni` as a binary of its own: the CNI plugin and nothing else (the same code as
//! `podbox` invoked through a `podbox-cni` symlink, which keeps working).
//!
//! Why a second binary: a container engine starts the plugin once per ADD, DEL and CHECK, and
//! at that scale the start of a process is a good part of the call. podbox is a static PIE of
//! ~17 MB: at start the C library applies its relocations, which writes to (and so copies) every
//! page of its relocated data, ~85 pages, before main; the code the plugin runs is spread over
//! the whole text. Linked with only what the plugin reaches, the binary is ~4 MB, with ~16
//! such pages and denser text: ~55 page faults at start instead of ~130.
//!
//! For the same reason the C `main` is ours (`no_main`): Rust's runtime start-up is skipped,
//! which the plugin does not need — it finds the main thread's stack bounds for the overflow
//! message (reading /proc/self/maps), installs that handler on an alternate stack, checks that
//! fds 0–2 are open (a runtime gives the plugin all three) and ignores SIGPIPE (with the default,
//! a plugin whose runtime stopped reading ends, as it would end writing into the error). A panic
//! aborts instead of exiting with 101: either way the call fails.
// Under `cargo test` the harness brings its own main (the unit-test build has no tests).
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    podbox::network::cni::plugin::main()
}
