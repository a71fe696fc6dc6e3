//! Where the cgroup hierarchies are: the mounted ones (from `/sys/fs/cgroup`, or from
//! /proc/self/mountinfo where that is not the usual layout) and the caller's own cgroup in each
//! (/proc/self/cgroup), read into structs; and where a container's cgroup goes in each (`plan`).

use std::fs;
use std::path::{Component, Path, PathBuf};

use super::{Dir, io_err, spec_err, v1, v2};
use crate::container::Result;

/// v1 controllers podbox creates a cgroup in. A new cpuset cgroup has no CPUs and no memory
/// nodes, so nothing could join it: `v1::init_cpuset` copies them down from the parent first.
pub const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc"];

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub point: PathBuf,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A v1 hierarchy: its controllers (those podbox knows), and its `name=` if it has one
    /// (systemd's hierarchy has a name and no controller).
    V1 { controllers: Vec<String>, name: Option<String> },
    /// The unified (v2) hierarchy.
    V2,
}

impl Mount {
    /// The controllers of a v1 hierarchy; empty for v2 and for a named one without controllers.
    pub fn v1_controllers(&self) -> &[String] {
        match &self.kind {
            Kind::V1 { controllers, .. } => controllers,
            Kind::V2 => &[],
        }
    }

    /// What names this hierarchy in /proc/self/cgroup, and the options a fresh mount of it
    /// takes: its controllers and `name=`, comma-separated; empty for v2.
    pub fn key(&self) -> String {
        match &self.kind {
            Kind::V1 { controllers, name } => controllers.iter().cloned().chain(name.iter().map(|n| format!("name={n}"))).collect::<Vec<_>>().join(","),
            Kind::V2 => String::new(),
        }
    }
}

/// The cgroup hierarchies in one /proc/self/mountinfo text; other file systems are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let point = PathBuf::from(left.split(' ').nth(4)?);
    let mut r = right.split(' ');
    let fstype = r.next()?;
    let opts = r.nth(1).unwrap_or("");
    let kind = match fstype {
        "cgroup2" => Kind::V2,
        "cgroup" => {
            let controllers = opts.split(',').filter(|o| V1_CONTROLLERS.contains(o)).map(String::from).collect();
            let name = opts.split(',').find_map(|o| o.strip_prefix("name=")).map(String::from);
            Kind::V1 { controllers, name }
        }
        _ => return None,
    };
    Some(Mount { point, kind })
}

/// One line of /proc/self/cgroup: the hierarchy's controllers (with `name=…`; empty for v2) and
/// the caller's cgroup in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            Some(Membership { controllers: ctrls.split(',').filter(|c| !c.is_empty()).map(String::from).collect(), path: path.to_string() })
        })
        .collect()
}

/// The cgroup hierarchies of this machine. The usual places are looked at first —
/// `/sys/fs/cgroup` itself (pure v2) or its subdirectories, one per v1 hierarchy named after
/// its controllers — by their file system magic: the kernel serves mountinfo 4 KiB per read and
/// walks the mount list from the start on each read, so on a node with hundreds of pods (each
/// with its pins) reading it would cost milliseconds per pod. Only where nothing is found there
/// is the mount table read.
pub fn mounts() -> Result<Vec<Mount>> {
    let found = mounts_under_sys_fs_cgroup();
    if !found.is_empty() {
        return Ok(found);
    }
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(io_err("reading /proc/self/mountinfo".into()))?;
    Ok(parse_mountinfo(&text))
}

fn mounts_under_sys_fs_cgroup() -> Vec<Mount> {
    const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let magic = |p: &Path| nix::sys::statfs::statfs(p).ok().map(|s| s.filesystem_type().0);
    let base = Path::new("/sys/fs/cgroup");
    let mut out = Vec::new();
    match magic(base) {
        Some(CGROUP2_SUPER_MAGIC) => out.push(Mount { point: base.into(), kind: Kind::V2 }),
        Some(_) => {
            for e in fs::read_dir(base).into_iter().flatten().flatten() {
                // "cpu" and "cpuacct" are symlinks to "cpu,cpuacct": the real directory counts.
                if e.file_type().map(|t| !t.is_dir()).unwrap_or(true) {
                    continue;
                }
                let (point, name) = (e.path(), e.file_name().to_string_lossy().into_owned());
                match magic(&point) {
                    Some(CGROUP2_SUPER_MAGIC) => out.push(Mount { point, kind: Kind::V2 }),
                    Some(CGROUP_SUPER_MAGIC) => {
                        // A named hierarchy without controllers ("systemd") is mounted name=...
                        let known = name.split(',').all(|c| V1_CONTROLLERS.contains(&c));
                        let kind = if known { Kind::V1 { controllers: name.split(',').map(String::from).collect(), name: None } } else { Kind::V1 { controllers: vec![], name: Some(name) } };
                        out.push(Mount { point, kind });
                    }
                    _ => {}
                }
            }
        }
        None => {}
    }
    out
}

/// The caller's own cgroups, from /proc/self/cgroup.
pub fn own_memberships() -> Result<Vec<Membership>> {
    let text = fs::read_to_string("/proc/self/cgroup").map_err(io_err("reading /proc/self/cgroup".into()))?;
    Ok(parse_proc_cgroup(&text))
}

/// The caller's own cgroup in the v1 hierarchy with `controllers`.
fn own_v1_path<'a>(own: &'a [Membership], controllers: &[String]) -> Option<&'a str> {
    own.iter().find(|m| m.controllers.iter().any(|c| controllers.contains(c))).map(|m| m.path.as_str())
}

/// Where cgroup `cgroups_path` lives in each hierarchy, from the mounts and the caller's own
/// cgroups. A relative path is placed below the caller's own cgroup on v1 (the OCI spec leaves
/// relative paths to the runtime) and below the root on v2, whose "no processes in inner
/// cgroups" rule forbids delegating controllers below the cgroup the caller itself runs in.
pub fn plan(mounts: &[Mount], own: &[Membership], cgroups_path: &str) -> Result<Vec<Dir>> {
    let rel = Path::new(cgroups_path.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(spec_err("linux.cgroupsPath", format!("{cgroups_path:?} must name a cgroup below the root without '..'")));
    }
    // Unified mode when no v1 hierarchy has controllers: hybrid layouts also mount a cgroup2
    // (sometimes with a stray controller such as hugetlb), but keep the limits in v1.
    let v1: Vec<&Mount> = mounts.iter().filter(|m| !m.v1_controllers().is_empty()).collect();
    let mut dirs = Vec::new();
    if v1.is_empty() {
        if let Some(m) = mounts.iter().find(|m| m.kind == Kind::V2) {
            dirs.push(Dir::V2(v2::Dir::new_v2(&m.point, rel)));
        }
    } else {
        let mut seen: Vec<&[String]> = Vec::new();
        for m in v1 {
            let ctrls = m.v1_controllers();
            if seen.contains(&ctrls) {
                continue;
            }
            seen.push(ctrls);
            let base = if cgroups_path.starts_with('/') { m.point.clone() } else { m.point.join(own_v1_path(own, ctrls).unwrap_or("/").trim_start_matches('/')) };
            dirs.push(Dir::V1(v1::Dir { mount: m.point.clone(), path: base.join(rel), controllers: ctrls.to_vec() }));
        }
    }
    if dirs.is_empty() {
        return Err(spec_err("linux.cgroupsPath", "no cgroup hierarchy is mounted (looked for cgroup and cgroup2 in /proc/self/mountinfo)"));
    }
    Ok(dirs)
}

/// (subdirectory name, our cgroup's directory, hierarchy options for a fresh mount: its v1
/// controllers or `name=`, empty for v2).
pub type View = (String, PathBuf, String);

/// What a container's `/sys/fs/cgroup` shows of the caller's own cgroups: one view per mounted
/// hierarchy, named like its mount point ("memory", "cpu,cpuacct", "unified"), or a single
/// ("", dir) when the machine is pure v2.
pub fn views(mounts: &[Mount], own: &[Membership]) -> Vec<View> {
    let mut out = Vec::new();
    for m in mounts {
        let key = m.key();
        let mut wanted: Vec<&str> = key.split(',').filter(|c| !c.is_empty()).collect();
        wanted.sort_unstable();
        let Some(own) = own.iter().find(|o| {
            let mut have: Vec<&str> = o.controllers.iter().map(String::as_str).collect();
            have.sort_unstable();
            have == wanted
        }) else {
            continue;
        };
        let name = m.point.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.push((name, m.point.join(own.path.trim_start_matches('/')), key));
    }
    if !mounts.iter().any(|m| matches!(m.kind, Kind::V1 { .. })) {
        out.truncate(1);
        if let Some(v) = out.first_mut() {
            v.0 = String::new();
        }
    }
    out
}

/// The v1 controllers of the hierarchy that cgroup directory `dir` belongs to (empty for v2):
/// those of the hierarchy mounted at the longest prefix of `dir`.
pub fn controllers_of(mounts: &[Mount], dir: &Path) -> Vec<String> {
    let best = mounts.iter().filter(|m| dir.starts_with(&m.point)).max_by_key(|m| m.point.components().count());
    best.map(|m| m.v1_controllers().to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
";
    const OWN: &str = "4:memory:/session/x\n1:cpu:/\n9:name=systemd:/\n0::/\n";

    fn own(text: &str) -> Vec<Membership> {
        parse_proc_cgroup(text)
    }

    #[test]
    fn the_hierarchies_found_without_mountinfo_match_it() {
        // Both describe the same hierarchies (where /sys/fs/cgroup is the usual layout).
        let mut fast = mounts_under_sys_fs_cgroup();
        let full = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut slow: Vec<_> = parse_mountinfo(&full).into_iter().filter(|m| m.point.starts_with("/sys/fs/cgroup")).collect();
        fast.sort_by(|x, y| x.point.cmp(&y.point));
        slow.sort_by(|x, y| x.point.cmp(&y.point));
        assert_eq!(fast, slow);
    }

    #[test]
    fn a_hybrid_layout_is_read_into_hierarchies() {
        let m = parse_mountinfo(HYBRID);
        let v1 = |c: &[&str], name: Option<&str>| Kind::V1 { controllers: c.iter().map(|s| s.to_string()).collect(), name: name.map(String::from) };
        let kinds: Vec<_> = m.iter().map(|m| (m.point.to_string_lossy().into_owned(), m.kind.clone())).collect();
        assert_eq!(
            kinds,
            vec![
                ("/sys/fs/cgroup/cpu".into(), v1(&["cpu"], None)),
                ("/sys/fs/cgroup/memory".into(), v1(&["memory"], None)),
                ("/sys/fs/cgroup/systemd".into(), v1(&[], Some("systemd"))),
                ("/sys/fs/cgroup/unified".into(), Kind::V2),
                ("/sys/fs/cgroup/cpuset".into(), v1(&["cpuset"], None)),
            ]
        );
        assert_eq!(m[2].key(), "name=systemd");
        assert_eq!(own("9:name=systemd:/s\n0::/u\n"), vec![Membership { controllers: vec!["name=systemd".into()], path: "/s".into() }, Membership { controllers: vec![], path: "/u".into() }]);
        assert_eq!(controllers_of(&m, Path::new("/sys/fs/cgroup/memory/podbox/p")), vec!["memory".to_string()]);
        assert!(controllers_of(&m, Path::new("/sys/fs/cgroup/unified/podbox")).is_empty());
    }

    #[test]
    fn relative_paths_nest_below_our_own_v1_cgroups() {
        let mounts = parse_mountinfo(HYBRID);
        let paths = |dirs: Vec<Dir>| dirs.iter().map(|d| d.path().to_path_buf()).collect::<Vec<_>>();
        let dirs = plan(&mounts, &own(OWN), "podbox/p1/c").unwrap();
        assert!(dirs.iter().all(|d| matches!(d, Dir::V1(_))), "a hybrid layout keeps its limits in v1");
        assert_eq!(paths(dirs), vec![PathBuf::from("/sys/fs/cgroup/cpu/podbox/p1/c"), PathBuf::from("/sys/fs/cgroup/memory/session/x/podbox/p1/c"), PathBuf::from("/sys/fs/cgroup/cpuset/podbox/p1/c")]);
        let dirs = plan(&mounts, &own(OWN), "/podbox/p1").unwrap();
        assert_eq!(dirs[1].path(), Path::new("/sys/fs/cgroup/memory/podbox/p1"));
        assert!(plan(&mounts, &own(OWN), "../x").is_err());
        let v2 = parse_mountinfo("40 30 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let dirs = plan(&v2, &own("0::/user/session\n"), "podbox/p1/c").unwrap();
        assert_eq!(dirs.len(), 1);
        assert!(matches!(&dirs[0], Dir::V2(d) if d.path == Path::new("/sys/fs/cgroup/podbox/p1/c")));
        assert!(plan(&[], &own(OWN), "x").is_err());
    }

    #[test]
    fn container_views_of_own_cgroups() {
        let v = views(&parse_mountinfo(HYBRID), &own("4:memory:/session/x\n1:cpu:/\n9:name=systemd:/s\n0::/u\n3:cpuset:/\n"));
        let names: Vec<_> = v.iter().map(|x| (x.0.as_str(), x.1.to_string_lossy().into_owned())).collect();
        assert!(v.iter().any(|x| x.2 == "name=systemd"));
        assert!(names.contains(&("memory", "/sys/fs/cgroup/memory/session/x".into())), "{names:?}");
        assert!(names.contains(&("systemd", "/sys/fs/cgroup/systemd/s".into())));
        assert!(names.contains(&("unified", "/sys/fs/cgroup/unified/u".into())));
        let v2 = views(&parse_mountinfo("40 30 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"), &own("0::/a/b\n"));
        assert_eq!(v2, vec![(String::new(), PathBuf::from("/sys/fs/cgroup/a/b"), String::new())]);
    }
}
