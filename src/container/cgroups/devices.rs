//! Device cgroup rules: building them, the devices every container may use, and their text form
//! for v1's `devices.allow`/`devices.deny` (v2 compiles them to eBPF in device_filter.rs).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// One device cgroup rule.
pub fn device_rule(allow: bool, typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow).set_typ(Some(typ)).set_major(major).set_minor(minor).set_access(Some(access.into()));
    d
}

/// The devices every container may use, whatever else its rules say: runc's built-in allow list
/// (runc 1.1 writes it to devices.list as: c *:* m, b *:* m, c 1:3, 1:5, 1:7, 1:8, 1:9, 5:0, 5:2,
/// 10:200, 136:* rwm) — creating any node, harmless when it cannot be opened, and /dev/null, zero,
/// full, random, urandom, tty, ptmx and the ptys — with one deliberate difference: no tun/tap
/// (10:200), which runc 1.2.0 dropped too as an accident of Docker's history; a container that
/// needs it is given it by its spec. Never /dev/console (5:1): that is the machine's console; a
/// container's terminal is its pty.
pub fn standard_device_allows() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut rules = vec![device_rule(true, C, None, None, "m"), device_rule(true, B, None, None, "m")];
    for (major, minor) in [(1, Some(3)), (1, Some(5)), (1, Some(7)), (1, Some(8)), (1, Some(9)), (5, Some(0)), (5, Some(2)), (136, None)] {
        rules.push(device_rule(true, C, Some(major), minor, "rwm"));
    }
    rules
}

/// A rule as v1 writes it to devices.allow or devices.deny: `c 1:3 rwm`, `*` for any number.
pub fn device_rule_text(r: &LinuxDeviceCgroup) -> String {
    let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => "p",
    };
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "*".into());
    format!("{typ} {}:{} {}", num(r.major()), num(r.minor()), r.access().clone().unwrap_or_else(|| "rwm".into()))
}
