//! Compiled seccomp programs kept on disk, so that starting a container reads its profile's
//! programs (~10 KB) instead of compiling them again: compiling the default profile of a pod costs
//! ~1 ms (seccompiler builds its syscall table and parses a JSON document per filter), a sixth of
//! a whole `podbox run`. crun likewise keeps the program it generated (`seccomp.bpf`) in its state.
//!
//! An entry is named by the SHA-256 of the profile's JSON together with the identity of the code
//! that compiles it (`src/container/seccomp.rs` and `Cargo.lock`, hashed by build.rs): a podbox
//! built from other compiling code never reads a program it did not make. The directory is
//! podbox's own state (`<root>/cache/seccomp`, mode 0700, in pod mode); an entry that is missing, short or
//! malformed is compiled again and rewritten. Entries are written whole (temporary file + rename),
//! and a directory that has grown past `MAX_ENTRIES` (profiles of long-gone builds) is emptied
//! before the next entry is written. Errors are never cached: a bad profile fails every time.
//! Without a directory (`use_dir` not called: tests, library users) every call compiles.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use oci_spec::runtime::LinuxSeccomp;
use seccompiler::{BpfProgram, sock_filter};
use sha2::{Digest, Sha256};

use super::Result;

/// The digest of the compiling code, made by build.rs.
const COMPILER: &str = env!("PODBOX_SECCOMP_COMPILER");
const MAGIC: &[u8] = b"podbox-seccomp-1\n";
/// The kernel's limit on one program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
const MAX_PROGRAMS: usize = 64;
const MAX_ENTRIES: usize = 64;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Keep compiled programs in `dir` from now on; the pod layer calls it when it opens its state
/// root (OCI runtime mode keeps no cache: its root holds nothing but containers). Later calls
/// are ignored.
pub fn use_dir(dir: PathBuf) {
    let _ = DIR.set(dir);
}

/// The programs of `profile`: from the cache directory if an entry is there, else from `compile`
/// (and then stored there, best effort).
pub(super) fn get_or_compile(profile: &LinuxSeccomp, compile: impl FnOnce(&LinuxSeccomp) -> Result<Vec<BpfProgram>>) -> Result<Vec<BpfProgram>> {
    match DIR.get() {
        Some(dir) => get_or_compile_in(dir, profile, compile),
        None => compile(profile),
    }
}

fn get_or_compile_in(dir: &Path, profile: &LinuxSeccomp, compile: impl FnOnce(&LinuxSeccomp) -> Result<Vec<BpfProgram>>) -> Result<Vec<BpfProgram>> {
    let Ok(json) = serde_json::to_vec(profile) else { return compile(profile) };
    let name = entry_name(&json);
    if let Some(programs) = fs::read(dir.join(&name)).ok().and_then(|b| decode(&b)) {
        return Ok(programs);
    }
    let programs = compile(profile)?;
    // A cache that cannot be written costs the next start a compile, nothing else.
    let _ = store(dir, &name, &programs);
    Ok(programs)
}

fn entry_name(profile_json: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(COMPILER.as_bytes());
    h.update(b"\n");
    h.update(profile_json);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn store(dir: &Path, name: &str, programs: &[BpfProgram]) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    if fs::read_dir(dir)?.count() >= MAX_ENTRIES {
        for e in fs::read_dir(dir)?.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(&encode(programs))).and_then(|_| fs::rename(&tmp, dir.join(name)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// MAGIC, the number of programs (u32), then per program its length in instructions (u32) and
/// the instructions as the kernel lays out `struct sock_filter` (code u16, jt u8, jf u8, k u32);
/// integers little-endian.
fn encode(programs: &[BpfProgram]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend((programs.len() as u32).to_le_bytes());
    for p in programs {
        out.extend((p.len() as u32).to_le_bytes());
        for i in p {
            out.extend(i.code.to_le_bytes());
            out.extend([i.jt, i.jf]);
            out.extend(i.k.to_le_bytes());
        }
    }
    out
}

/// The programs of an entry, or None unless it is exactly what `encode` writes.
fn decode(bytes: &[u8]) -> Option<Vec<BpfProgram>> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    let u32_le = |rest: &mut &[u8]| -> Option<usize> {
        let (n, r) = rest.split_first_chunk::<4>()?;
        *rest = r;
        Some(u32::from_le_bytes(*n) as usize)
    };
    let count = u32_le(&mut rest)?;
    if count > MAX_PROGRAMS {
        return None;
    }
    let mut programs = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32_le(&mut rest)?;
        if len == 0 || len > MAX_INSNS || rest.len() < len * 8 {
            return None;
        }
        let (insns, r) = rest.split_at(len * 8);
        rest = r;
        programs.push(
            insns
                .chunks_exact(8)
                .map(|c| sock_filter { code: u16::from_le_bytes([c[0], c[1]]), jt: c[2], jf: c[3], k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]) })
                .collect(),
        );
    }
    rest.is_empty().then_some(programs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

    /// A scratch directory removed on drop, also when the test fails.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("podbox-seccomp-cache-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn profile(name: &str) -> LinuxSeccomp {
        let sc = LinuxSyscallBuilder::default().names(vec![name.to_string()]).action(LinuxSeccompAction::ScmpActErrno).build().unwrap();
        LinuxSeccompBuilder::default().default_action(LinuxSeccompAction::ScmpActAllow).syscalls(vec![sc]).build().unwrap()
    }

    fn same(a: &[BpfProgram], b: &[BpfProgram]) -> bool {
        let flat = |p: &[BpfProgram]| p.iter().map(|x| x.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect::<Vec<_>>()).collect::<Vec<_>>();
        flat(a) == flat(b)
    }

    #[test]
    fn a_second_start_reads_what_the_first_compiled() {
        let dir = Scratch::new("second");
        let dir = dir.path().join("cache/seccomp");
        let compiles = Cell::new(0);
        let compile = |p: &LinuxSeccomp| {
            compiles.set(compiles.get() + 1);
            super::super::seccomp::compile_profile(p)
        };
        let first = get_or_compile_in(&dir, &profile("mount"), compile).unwrap();
        let second = get_or_compile_in(&dir, &profile("mount"), compile).unwrap();
        assert_eq!(compiles.get(), 1);
        assert!(!first.is_empty() && same(&first, &second));
        // Another profile is another entry.
        let other = get_or_compile_in(&dir, &profile("umount2"), compile).unwrap();
        assert_eq!(compiles.get(), 2);
        assert!(!same(&first, &other));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
    }

    #[test]
    fn a_damaged_entry_is_compiled_again_and_rewritten() {
        let dir = Scratch::new("damaged");
        let p = profile("mount");
        let good = get_or_compile_in(dir.path(), &p, super::super::seccomp::compile_profile).unwrap();
        let entry = dir.path().join(entry_name(&serde_json::to_vec(&p).unwrap()));
        let bytes = fs::read(&entry).unwrap();
        for damaged in [&bytes[..bytes.len() - 1], &bytes[1..], &[bytes.as_slice(), &[0]].concat()] {
            assert!(decode(damaged).is_none());
            fs::write(&entry, damaged).unwrap();
            let again = get_or_compile_in(dir.path(), &p, super::super::seccomp::compile_profile).unwrap();
            assert!(same(&good, &again));
            assert_eq!(fs::read(&entry).unwrap(), bytes);
        }
    }

    #[test]
    fn errors_are_not_cached() {
        let dir = Scratch::new("errors");
        let bad = LinuxSeccompBuilder::default().default_action(LinuxSeccompAction::ScmpActNotify).build().unwrap();
        assert!(get_or_compile_in(dir.path(), &bad, super::super::seccomp::compile_profile).is_err());
        assert!(get_or_compile_in(dir.path(), &bad, super::super::seccomp::compile_profile).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_directory_is_emptied_before_the_next_entry() {
        let dir = Scratch::new("full");
        for i in 0..MAX_ENTRIES {
            fs::write(dir.path().join(format!("old{i}")), b"x").unwrap();
        }
        get_or_compile_in(dir.path(), &profile("mount"), super::super::seccomp::compile_profile).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
