//! Builds the pause process (`src/pause/pause.rs`) as a separate static, libc-free executable and
//! leaves it in OUT_DIR, where `src/pod/pause.rs` embeds it. It is compiled with its own flags
//! (no_std, panic=abort, -nostartfiles) that the rest of the crate must not get.
use std::{env, path::PathBuf, process::Command};

fn main() {
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
