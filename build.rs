//! Builds the pause process (`src/pause/pause.rs`) as a separate static, libc-free executable and
//! leaves it in OUT_DIR, where `src/pod/pause.rs` embeds it. It is compiled with its own flags
//! (no_std, panic=abort, -nostartfiles) that the rest of the crate must not get.
//! Also generates the CRI runtime.v1 messages and gRPC server traits (`src/cri/`) from the
//! vendored `proto/runtime/v1/api.proto` with protox, a protobuf compiler in Rust: building
//! podbox needs no `protoc`.
use std::{env, path::PathBuf, process::Command};

fn main() {
    cri_api();
    // Pack the executable's relative relocations (DT_RELR, glibc 2.36 + binutils 2.38): the
    // dynamic loader reads all of .rela.dyn at every start (~650 KB for podbox, resident in
    // every CLI process); packed it is a few KB.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    hot_functions_first();
    // The executable's entry point is main.rs's `podbox_entry`, which re-executes from the
    // sealed clone before libc starts when the command line needs it (container::early_seal),
    // then jumps to libc's `_start`. x86-64 only; elsewhere `_start` stays the entry.
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") && env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=podbox=-Wl,-e,podbox_entry");
    }
    seccomp_compiler_digest();
    let src = "src/pause/pause.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("podbox-pause");
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = env::var("TARGET").unwrap();
    let status = Command::new(rustc)
        .args(["--edition", "2024", "--crate-type", "bin", "--target", &target])
        .args(["-C", "opt-level=s", "-C", "panic=abort", "-C", "relocation-model=static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib", "-C", "link-arg=-static"])
        .args(["-C", "strip=symbols", "-o"])
        .arg(&out)
        .arg(src)
        .status()
        .expect("running rustc for the pause process");
    assert!(status.success(), "building {src} failed");
}

fn cri_api() {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["runtime/v1/api.proto"], ["proto"]).expect("compiling proto/runtime/v1/api.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_transport(false)
        .compile_fds(fds)
        .expect("generating the CRI gRPC code");
}

/// Release builds: the functions the everyday CLI commands enter (linker/hot-functions.txt, made by
/// scripts/hot-functions.sh) go first in .text, together. Text is mapped in 64 KiB fault-around
/// windows, so packed they cost each command far fewer resident pages than spread over the whole
/// binary (issue #19: peak RSS of `pod create` and `run`). Names the binary does not have (the
/// file is older than the code) are skipped: the code is then less packed, never different.
/// rust-lld, the default linker of x86_64-unknown-linux-gnu, reads the file; others may not.
fn hot_functions_first() {
    let list = "linker/hot-functions.txt";
    println!("cargo:rerun-if-changed={list}");
    if env::var("PROFILE").as_deref() != Ok("release") || env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return;
    }
    let path = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join(list);
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", path.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// The identity of the code that compiles seccomp profiles (our translation and the crates'
/// versions), for the cache of compiled programs (`src/container/seccomp_cache.rs`): a build
/// from other code never reads what this one compiled. A hash that changed for no reason (a
/// new toolchain) only costs one compile per profile.
fn seccomp_compiler_digest() {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    for f in ["src/container/seccomp.rs", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={f}");
        std::fs::read(f).unwrap_or_default().hash(&mut h);
    }
    println!("cargo:rustc-env=PODBOX_SECCOMP_COMPILER={:016x}", h.finish());
}
