//! The spec's `linux.seccomp` → BPF programs (compiled by the seccompiler crate) and their
//! installation. Whatever the spec asks for that podbox cannot express is an error naming the
//! field: a container never runs with less confinement than its spec says.
//!
//! seccompiler filters have one action for "matched" and one for "not matched", while an OCI
//! profile maps each syscall to its own action. So a profile becomes a stack of filters, which
//! the kernel evaluates all, taking the most restrictive answer:
//! - a base filter: listed syscalls → ALLOW, the rest → defaultAction (only if the default is
//!   not ALLOW);
//! - one filter per other (action, errno) group: its syscalls → that action, the rest → ALLOW.
//!
//! A syscall of a non-ALLOW group is listed in the base filter too (with the same conditions),
//! so that the base filter does not shadow the group's action with a more restrictive default.
//!
//! On x86_64 a guard filter comes first: x32 ABI syscalls (the x86_64 audit arch, number with
//! bit 30 set) match no rule of the others, so a deny list would let them all through. The
//! guard denies every one of them, as libseccomp treats a profile for the native arch only.

use std::collections::BTreeMap;

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, LinuxSyscall};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{Value, json};

use super::{ContainerError, Result};

fn spec_err(field: &str, msg: impl Into<String>) -> ContainerError {
    ContainerError::Spec { field: field.into(), msg: msg.into() }
}

fn native() -> Result<(TargetArch, Arch)> {
    match std::env::consts::ARCH {
        "x86_64" => Ok((TargetArch::x86_64, Arch::ScmpArchX86_64)),
        "aarch64" => Ok((TargetArch::aarch64, Arch::ScmpArchAarch64)),
        other => Err(spec_err("linux.seccomp", format!("seccomp filters are not supported on {other}"))),
    }
}

/// The seccompiler JSON action of an OCI action.
fn action(field: &str, a: LinuxSeccompAction, errno: Option<u32>) -> Result<Value> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        // libseccomp's default errno for SCMP_ACT_ERRNO without errnoRet is EPERM.
        LinuxSeccompAction::ScmpActErrno => json!({ "errno": errno.unwrap_or(libc::EPERM as u32) }),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => json!("kill_thread"),
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        LinuxSeccompAction::ScmpActTrace => json!({ "trace": errno.unwrap_or(0) }),
        LinuxSeccompAction::ScmpActNotify => return Err(spec_err(field, "SCMP_ACT_NOTIFY (a user-space seccomp agent) is not supported by podbox")),
    })
}

fn known_syscall(arch: TargetArch, name: &str) -> bool {
    probe_names(arch, &[name]).is_ok()
}

/// Compile a filter naming every one of `names`: Ok if the architecture has them all.
fn probe_names(arch: TargetArch, names: &[&str]) -> std::result::Result<(), seccompiler::Error> {
    let filter: Vec<Value> = names.iter().map(|n| json!({ "syscall": n })).collect();
    let probe = json!({ "p": { "mismatch_action": "allow", "match_action": "log", "filter": filter } });
    seccompiler::compile_from_json(probe.to_string().as_bytes(), arch).map(|_| ())
}

/// The names among `names` that `arch` has. seccompiler builds its whole syscall table for
/// every compile, so probing names one by one cost ~1 ms per container for a profile of a few
/// dozen names; instead all of them are compiled at once, and each failure, which names the
/// unknown syscall, drops that name and tries again (profiles lack few names of the arch). An
/// error that names none of them (another seccompiler version's wording) falls back to one
/// probe per name: same answer, only slower.
fn known_syscalls<'a>(arch: TargetArch, names: &[&'a str]) -> std::collections::HashSet<&'a str> {
    let mut left: Vec<&str> = names.to_vec();
    left.sort_unstable();
    left.dedup();
    while !left.is_empty() {
        let Err(e) = probe_names(arch, &left) else { break };
        let msg = e.to_string();
        match left.iter().position(|n| msg.contains(&format!("Invalid syscall name: {n} for given arch"))) {
            Some(i) => {
                left.remove(i);
            }
            None => return left.into_iter().filter(|n| known_syscall(arch, n)).collect(),
        }
    }
    left.into_iter().collect()
}

/// The seccompiler rules of one OCI syscall entry: conditions on distinct arguments are ANDed in
/// one rule; several conditions on the same argument become alternative rules (as runc does),
/// since one rule cannot test an argument twice in libseccomp's model.
fn rules_of(field: &str, sc: &LinuxSyscall, known: &std::collections::HashSet<&str>) -> Result<Vec<Value>> {
    let mut conds = Vec::new();
    for (i, a) in sc.args().iter().flatten().enumerate() {
        let f = format!("{field}.args[{i}]");
        if a.index() > 5 {
            return Err(spec_err(&f, format!("argument index {} out of range 0-5", a.index())));
        }
        let (op, val) = match a.op() {
            LinuxSeccompOperator::ScmpCmpNe => (json!("ne"), a.value()),
            LinuxSeccompOperator::ScmpCmpLt => (json!("lt"), a.value()),
            LinuxSeccompOperator::ScmpCmpLe => (json!("le"), a.value()),
            LinuxSeccompOperator::ScmpCmpEq => (json!("eq"), a.value()),
            LinuxSeccompOperator::ScmpCmpGe => (json!("ge"), a.value()),
            LinuxSeccompOperator::ScmpCmpGt => (json!("gt"), a.value()),
            // libseccomp: (arg & value) == valueTwo.
            LinuxSeccompOperator::ScmpCmpMaskedEq => (json!({ "masked_eq": a.value() }), a.value_two().unwrap_or(0)),
        };
        conds.push((a.index(), json!({ "index": a.index(), "type": "qword", "op": op, "val": val })));
    }
    let distinct: std::collections::HashSet<_> = conds.iter().map(|c| c.0).collect();
    let groups: Vec<Vec<Value>> =
        if distinct.len() == conds.len() { vec![conds.into_iter().map(|c| c.1).collect()] } else { conds.into_iter().map(|c| vec![c.1]).collect() };
    let mut out = Vec::new();
    for name in sc.names() {
        if !known.contains(name.as_str()) {
            // Profiles list syscalls of every architecture; one this one lacks cannot be called.
            continue;
        }
        for g in &groups {
            out.push(if g.is_empty() { json!({ "syscall": name }) } else { json!({ "syscall": name, "args": g }) });
        }
    }
    Ok(out)
}

/// Compile `linux.seccomp` for this machine's architecture. The programs are to be installed in
/// order; none at all means no seccomp entry in the spec. Read from the cache of compiled
/// programs when it has them (`seccomp_cache`).
pub fn compile(profile: Option<&LinuxSeccomp>) -> Result<Vec<BpfProgram>> {
    match profile {
        Some(p) => super::seccomp_cache::get_or_compile(p, compile_profile),
        None => Ok(vec![]),
    }
}

pub(super) fn compile_profile(p: &LinuxSeccomp) -> Result<Vec<BpfProgram>> {
    let (arch, scmp_arch) = native()?;
    if let Some(archs) = p.architectures()
        && !archs.is_empty() && !archs.contains(&scmp_arch) && !archs.contains(&Arch::ScmpArchNative) {
            return Err(spec_err("linux.seccomp.architectures", format!("{archs:?} does not include this machine's {scmp_arch}")));
        }
        // Other (compat) architectures in the list: seccompiler's filters kill any syscall made
        // with another architecture's ABI, which is stricter than the profile, never looser.
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(spec_err("linux.seccomp.flags", format!("{:?} are not supported by podbox", p.flags().as_ref().unwrap())));
    }
    if p.listener_path().is_some() || p.listener_metadata().is_some() {
        return Err(spec_err("linux.seccomp.listenerPath", "seccomp agents (SCMP_ACT_NOTIFY) are not supported by podbox"));
    }
    let default = action("linux.seccomp.defaultAction", p.default_action(), p.default_errno_ret())?;
    let default_allows = p.default_action() == LinuxSeccompAction::ScmpActAllow;
    let mut base_allow = Vec::new();
    // (action as JSON text) → rules; a BTreeMap keeps the installation order stable.
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    let names: Vec<&str> = p.syscalls().iter().flatten().flat_map(|sc| sc.names().iter().map(String::as_str)).collect();
    let known = known_syscalls(arch, &names);
    for (i, sc) in p.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let act = action(&format!("{field}.action"), sc.action(), sc.errno_ret())?;
        let rules = rules_of(&field, sc, &known)?;
        if sc.action() != LinuxSeccompAction::ScmpActAllow {
            groups.entry(act.to_string()).or_insert_with(|| (act.clone(), vec![])).1.extend(rules.iter().cloned());
        }
        if !default_allows {
            base_allow.extend(rules);
        }
    }
    let mut filters = Vec::new();
    if !default_allows {
        filters.push(json!({ "mismatch_action": default, "match_action": "allow", "filter": base_allow }));
    }
    for (_, (act, rules)) in groups {
        if !rules.is_empty() {
            filters.push(json!({ "mismatch_action": "allow", "match_action": act, "filter": rules }));
        }
    }
    let mut out = Vec::new();
    if arch == TargetArch::x86_64 {
        out.push(x32_guard(p.default_action(), p.default_errno_ret()));
    }
    for (i, f) in filters.into_iter().enumerate() {
        let doc = json!({ "f": f });
        let mut map = seccompiler::compile_from_json(doc.to_string().as_bytes(), arch)
            .map_err(|e| spec_err("linux.seccomp", format!("compiling filter {i}: {e}")))?;
        out.push(map.remove("f").unwrap_or_default());
    }
    Ok(out)
}

/// `__X32_SYSCALL_BIT` of the x86_64 syscall ABI.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `AUDIT_ARCH_X86_64` (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// The answer for an x32 syscall: the profile's default action when it denies (kill, trap,
/// errno); otherwise (allow, log, trace: a deny list) ERRNO with the default errno, EPERM unless
/// the profile names one. Never allow: no rule of the profile was written for the x32 numbers.
fn x32_action(default: LinuxSeccompAction, errno: Option<u32>) -> u32 {
    let errno = errno.unwrap_or(libc::EPERM as u32) & libc::SECCOMP_RET_DATA;
    match default {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        _ => libc::SECCOMP_RET_ERRNO | errno,
    }
}

/// A filter that answers every x32 syscall with `x32_action` and lets everything else on to
/// the profile's filters (which judge other architectures themselves).
fn x32_guard(default: LinuxSeccompAction, errno: Option<u32>) -> BpfProgram {
    use seccompiler::sock_filter;
    let stmt = |code: u32, k: u32| sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| sock_filter { code: code as u16, jt, jf, k };
    // struct seccomp_data: nr at offset 0, arch at offset 4.
    vec![
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
        jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, AUDIT_ARCH_X86_64, 0, 3), // other arch → allow
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        jump(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, X32_SYSCALL_BIT, 0, 1), // x32 → deny
        stmt(libc::BPF_RET | libc::BPF_K, x32_action(default, errno)),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Install `filters` in the calling thread. Without no_new_privs this needs CAP_SYS_ADMIN, so
/// the init calls it before dropping capabilities in that case.
pub fn install(filters: &[BpfProgram]) -> Result<()> {
    for f in filters {
        let prog = libc::sock_fprog { len: f.len() as u16, filter: f.as_ptr() as *mut libc::sock_filter };
        // SAFETY: the kernel copies the program; `f` outlives the call. seccompiler's
        // sock_filter has the kernel's layout, as libc's does.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const libc::sock_fprog) };
        if rc != 0 {
            return Err(ContainerError::Io { what: "installing the seccomp filter".into(), source: std::io::Error::last_os_error() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSyscallBuilder};

    const X32_GUARDS: usize = cfg!(target_arch = "x86_64") as usize;

    fn syscall(names: &[&str], act: LinuxSeccompAction) -> LinuxSyscall {
        LinuxSyscallBuilder::default().names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).action(act).build().unwrap()
    }

    #[test]
    fn denylist_compiles_to_one_filter_and_skips_unknown_names() {
        let p = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![syscall(&["mount", "no_such_syscall"], LinuxSeccompAction::ScmpActErrno)])
            .build()
            .unwrap();
        // The x32 guard (x86_64) and the errno group.
        assert_eq!(compile(Some(&p)).unwrap().len(), X32_GUARDS + 1);
        assert!(compile(None).unwrap().is_empty());
    }

    #[test]
    fn known_syscalls_in_one_pass_match_one_probe_per_name() {
        let arch = native().unwrap().0;
        let names = ["mount", "no_such_syscall", "read", "arm_fadvise64_64", "mount", "also_not_one", "openat"];
        let known = known_syscalls(arch, &names);
        let one_by_one: std::collections::HashSet<&str> = names.iter().copied().filter(|n| known_syscall(arch, n)).collect();
        assert_eq!(known, one_by_one);
        assert!(known.contains("mount") && known.contains("read") && !known.contains("no_such_syscall"));
    }

    #[test]
    fn allowlist_with_errno_groups_compiles_to_a_stack() {
        let arg = LinuxSeccompArgBuilder::default().index(0usize).value(1u64).op(LinuxSeccompOperator::ScmpCmpEq).build().unwrap();
        let mut clone3 = syscall(&["clone3"], LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        let mut pers = syscall(&["personality"], LinuxSeccompAction::ScmpActAllow);
        pers.set_args(Some(vec![arg, arg]));
        let p = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActErrno)
            .syscalls(vec![syscall(&["read", "write"], LinuxSeccompAction::ScmpActAllow), clone3, pers])
            .build()
            .unwrap();
        assert_eq!(compile(Some(&p)).unwrap().len(), X32_GUARDS + 2);
    }

    #[test]
    fn x32_syscalls_are_denied_never_allowed() {
        assert_eq!(x32_action(LinuxSeccompAction::ScmpActAllow, None), libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
        assert_eq!(x32_action(LinuxSeccompAction::ScmpActLog, Some(38)), libc::SECCOMP_RET_ERRNO | 38);
        assert_eq!(x32_action(LinuxSeccompAction::ScmpActKillProcess, None), libc::SECCOMP_RET_KILL_PROCESS);
        let guard = x32_guard(LinuxSeccompAction::ScmpActAllow, None);
        // Both branches of each jump stay inside the program and end in a return.
        for (i, ins) in guard.iter().enumerate() {
            if ins.code as u32 & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < guard.len());
            }
        }
        assert!(guard.last().is_some_and(|i| i.code as u32 == libc::BPF_RET | libc::BPF_K));
    }

    #[test]
    fn unsupported_features_name_the_field() {
        let p = LinuxSeccompBuilder::default().default_action(LinuxSeccompAction::ScmpActNotify).build().unwrap();
        assert!(matches!(compile(Some(&p)), Err(ContainerError::Spec { field, .. }) if field == "linux.seccomp.defaultAction"));
        let p = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .architectures(vec![Arch::ScmpArchS390x])
            .build()
            .unwrap();
        assert!(matches!(compile(Some(&p)), Err(ContainerError::Spec { field, .. }) if field == "linux.seccomp.architectures"));
        let p = LinuxSeccompBuilder::default()
            .default_action(LinuxSeccompAction::ScmpActAllow)
            .syscalls(vec![syscall(&["mount"], LinuxSeccompAction::ScmpActNotify)])
            .build()
            .unwrap();
        assert!(matches!(compile(Some(&p)), Err(ContainerError::Spec { field, .. }) if field == "linux.seccomp.syscalls[0].action"));
    }
}
