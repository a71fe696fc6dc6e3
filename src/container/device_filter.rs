//! Device rules on cgroup v2, which has no devices controller: the spec's
//! `linux.resources.devices` list becomes an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`,
//! attached to the container's cgroup. The kernel runs it on every open and mknod of a device
//! node by a process in that cgroup (or below) and allows the access only if it returns 1.
//!
//! The rules keep their OCI (and cgroup v1) meaning: they are applied in order, so the last rule
//! that matches a device and access decides; a device no rule matches is denied. The program
//! therefore tests the rules from the last to the first and returns at the first match.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{ContainerError, Result};

/// One rule as the kernel sees devices: type (`None` = any), numbers (`None` = any) and the
/// access bits it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rule {
    allow: bool,
    typ: Option<i32>,
    major: Option<i32>,
    minor: Option<i32>,
    access: i32,
}

// From linux/bpf.h.
const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;
const BPF_DEVCG_ACC_MKNOD: i32 = 1;
const BPF_DEVCG_ACC_READ: i32 = 2;
const BPF_DEVCG_ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs of parent cgroups keep running too: a container can only narrow what its pod allows.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The rule of `d`, or None for a rule no device check can meet (fifos are not devices).
fn rule(d: &LinuxDeviceCgroup) -> Result<Option<Rule>> {
    let typ = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(BPF_DEVCG_DEV_BLOCK),
        LinuxDeviceType::C | LinuxDeviceType::U => Some(BPF_DEVCG_DEV_CHAR),
        LinuxDeviceType::P => return Ok(None),
    };
    let mut access = 0;
    for ch in d.access().as_deref().unwrap_or("rwm").chars() {
        access |= match ch {
            'r' => BPF_DEVCG_ACC_READ,
            'w' => BPF_DEVCG_ACC_WRITE,
            'm' => BPF_DEVCG_ACC_MKNOD,
            _ => {
                return Err(ContainerError::Spec { field: "linux.resources.devices".into(), msg: format!("access {:?} is not made of r, w and m", d.access()) });
            }
        };
    }
    let num = |n: Option<i64>| -> Result<Option<i32>> {
        match n {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            Some(n) => i32::try_from(n).map(Some).map_err(|_| ContainerError::Spec { field: "linux.resources.devices".into(), msg: format!("device number {n} is out of range") }),
        }
    };
    Ok(Some(Rule { allow: d.allow(), typ, major: num(d.major())?, minor: num(d.minor())?, access }))
}

/// One eBPF instruction (struct bpf_insn): opcode, dst register in the low nibble and src in the
/// high one, jump offset, immediate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Insn(u8, u8, i16, i32);

// Opcodes used here (class | op | source).
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND32_K: u8 = 0x54; // dst &= imm
const RSH32_K: u8 = 0x74; // dst >>= imm
const MOV32_X: u8 = 0xbc; // dst = src
const MOV64_K: u8 = 0xb7; // dst = imm
const JNE_K: u8 = 0x55; // if dst != imm goto +off
const JNE_X: u8 = 0x5d; // if dst != src goto +off
const EXIT: u8 = 0x95;

/// The program for `rules`. Registers: r2 = device type, r3 = requested access, r4 = major,
/// r5 = minor, all read from the context `struct bpf_cgroup_dev_ctx { u32 access_type; u32
/// major; u32 minor; }` whose access_type is access << 16 | type.
fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        Insn(LDX_W, 2 | 1 << 4, 0, 0),
        Insn(AND32_K, 2, 0, 0xffff),
        Insn(LDX_W, 3 | 1 << 4, 0, 0),
        Insn(RSH32_K, 3, 0, 16),
        Insn(LDX_W, 4 | 1 << 4, 4, 0),
        Insn(LDX_W, 5 | 1 << 4, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each test jumps past the end of this rule's block when it does not hold.
        let mut block = Vec::new();
        if let Some(t) = r.typ {
            block.push(Insn(JNE_K, 2, 0, t));
        }
        if r.access != ACC_ALL {
            // Every requested access bit must be covered: (requested & rule) == requested.
            block.push(Insn(MOV32_X, 1 | 3 << 4, 0, 0));
            block.push(Insn(AND32_K, 1, 0, r.access));
            block.push(Insn(JNE_X, 1 | 3 << 4, 0, 0));
        }
        if let Some(m) = r.major {
            block.push(Insn(JNE_K, 4, 0, m));
        }
        if let Some(m) = r.minor {
            block.push(Insn(JNE_K, 5, 0, m));
        }
        let unconditional = block.is_empty();
        block.push(Insn(MOV64_K, 0, 0, r.allow as i32));
        block.push(Insn(EXIT, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.0 == JNE_K || insn.0 == JNE_X {
                insn.2 = (len - i - 1) as i16;
            }
        }
        p.extend(block);
        // A rule that matches everything decides alone: the rules before it never get a say.
        if unconditional {
            return p;
        }
    }
    p.push(Insn(MOV64_K, 0, 0, 0));
    p.push(Insn(EXIT, 0, 0, 0));
    p
}

fn bpf_err(what: &str, e: std::io::Error) -> ContainerError {
    ContainerError::Io { what: format!("{what} (cgroup v2 device rules need a kernel with CONFIG_CGROUP_BPF and CAP_SYS_ADMIN)"), source: e }
}

/// Load the program for `devices` and attach it to the cgroup directory `cgroup`. The cgroup
/// keeps the program alive; it goes when the cgroup is removed.
pub fn attach(cgroup: &Path, devices: &[LinuxDeviceCgroup]) -> Result<()> {
    let mut rules = Vec::new();
    for d in devices {
        rules.extend(rule(d)?);
    }
    let insns: Vec<u8> = program(&rules).iter().flat_map(|i| [[i.0, i.1], i.2.to_le_bytes()].concat().into_iter().chain(i.3.to_le_bytes())).collect();
    let prog = load_program(&insns)?;
    let dir = std::fs::File::open(cgroup).map_err(|e| bpf_err(&format!("opening cgroup {}", cgroup.display()), e))?;
    #[repr(C)]
    struct ProgAttach {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    let attach = ProgAttach { target_fd: dir.as_raw_fd() as u32, attach_bpf_fd: prog.as_raw_fd() as u32, attach_type: BPF_CGROUP_DEVICE, attach_flags: BPF_F_ALLOW_MULTI, replace_bpf_fd: 0 };
    // SAFETY: bpf(2) reads the attribute we own for the duration of the call; both descriptors
    // it names are open.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attach as *const ProgAttach, std::mem::size_of::<ProgAttach>()) };
    if rc < 0 {
        return Err(bpf_err(&format!("attaching the device filter to {}", cgroup.display()), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// BPF_PROG_LOAD of the device program `insns` (8 bytes each); on failure loaded again with the
/// verifier's log, to say why.
fn load_program(insns: &[u8]) -> Result<OwnedFd> {
    let license = c"MIT";
    let mut log = vec![0u8; 64 * 1024];
    // union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type.
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: (insns.len() / 8) as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..6].copy_from_slice(b"podbox");
    // SAFETY: bpf(2) reads `size_of::<ProgLoad>()` bytes of the attribute we own, which outlives
    // the call; its instructions and log buffer pointers point into live buffers.
    let load = |attr: &ProgLoad| unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr as *const ProgLoad, std::mem::size_of::<ProgLoad>()) };
    let mut fd = load(&attr);
    if fd < 0 {
        let first = std::io::Error::last_os_error();
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        fd = load(&attr);
        if fd < 0 {
            let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).trim().to_string();
            let what = if text.is_empty() { "loading the device filter".to_string() } else { format!("loading the device filter: {text}") };
            return Err(bpf_err(&what, first));
        }
    }
    // SAFETY: `fd` is the new program descriptor bpf(2) just returned to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `p` the way the kernel would for one device access: a tiny interpreter of the
    /// opcodes the compiler emits, so the rule semantics are checked without root.
    fn run(p: &[Insn], typ: i32, access: i32, major: i32, minor: i32) -> i64 {
        let mut r = [0i64; 11];
        let ctx = [(access << 16 | typ) as u32, major as u32, minor as u32];
        let mut pc = 0usize;
        loop {
            let Insn(code, regs, off, imm) = p[pc];
            let (dst, src) = ((regs & 0xf) as usize, (regs >> 4) as usize);
            pc += 1;
            match code {
                LDX_W => r[dst] = ctx[off as usize / 4] as i64,
                AND32_K => r[dst] = (r[dst] as u32 & imm as u32) as i64,
                RSH32_K => r[dst] = (r[dst] as u32 >> imm) as i64,
                MOV32_X => r[dst] = r[src] as u32 as i64,
                MOV64_K => r[dst] = imm as i64,
                JNE_K if r[dst] != imm as i64 => pc += off as usize,
                JNE_X if r[dst] != r[src] => pc += off as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                _ => panic!("unknown opcode {code:#x}"),
            }
        }
    }

    use crate::container::cgroups::device_rule as dev;

    fn compile(devs: &[LinuxDeviceCgroup]) -> Vec<Insn> {
        program(&devs.iter().filter_map(|d| rule(d).unwrap()).collect::<Vec<_>>())
    }

    const C: i32 = BPF_DEVCG_DEV_CHAR;
    const B: i32 = BPF_DEVCG_DEV_BLOCK;
    const R: i32 = BPF_DEVCG_ACC_READ;
    const W: i32 = BPF_DEVCG_ACC_WRITE;
    const M: i32 = BPF_DEVCG_ACC_MKNOD;

    #[test]
    fn deny_all_then_allow_some() {
        let p = compile(&[
            dev(false, LinuxDeviceType::A, None, None, "rwm"),
            dev(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"), // /dev/null
            dev(true, LinuxDeviceType::C, Some(136), None, "rw"),   // any pty, no mknod
        ]);
        assert_eq!(run(&p, C, R | W, 1, 3), 1);
        assert_eq!(run(&p, C, M, 1, 3), 1);
        assert_eq!(run(&p, C, R, 1, 4), 0);
        assert_eq!(run(&p, B, R, 1, 3), 0, "a block device with a char device's numbers");
        assert_eq!(run(&p, B, R, 8, 0), 0, "/dev/sda");
        assert_eq!(run(&p, C, R | W, 136, 7), 1);
        assert_eq!(run(&p, C, M, 136, 7), 0);
    }

    #[test]
    fn the_last_matching_rule_wins() {
        let p = compile(&[
            dev(true, LinuxDeviceType::A, None, None, "rwm"),
            dev(false, LinuxDeviceType::B, Some(8), None, "rwm"),
            dev(true, LinuxDeviceType::B, Some(8), Some(1), "r"),
        ]);
        assert_eq!(run(&p, C, R, 5, 5), 1);
        assert_eq!(run(&p, B, R, 8, 0), 0);
        assert_eq!(run(&p, B, R, 8, 1), 1);
        assert_eq!(run(&p, B, W, 8, 1), 0);
        // A list that starts with "allow all" compiles to a program that ends at that rule.
        assert_eq!(p.last(), Some(&Insn(EXIT, 0, 0, 0)));
        assert!(compile(&[]).len() == 8 && run(&compile(&[]), C, R, 1, 3) == 0, "no rules: nothing is allowed");
    }

    #[test]
    fn bad_access_letters_are_refused() {
        assert!(rule(&dev(true, LinuxDeviceType::C, Some(1), Some(3), "rx")).is_err());
        assert_eq!(rule(&dev(true, LinuxDeviceType::P, None, None, "rwm")).unwrap(), None);
    }
}
