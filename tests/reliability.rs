//! Reliability end to end (issue 12), as root, each test inside its own throwaway node: the CLI
//! killed at every point of `run -d` and `rm` must leave nothing `gc` and `rm -f` cannot clean
//! up; logs and writable layers are bounded; hostile numbers and names are refused.
mod common;

use std::path::{Path, PathBuf};

use common::{Node, PODBOX};

/// The syscalls `podbox args` makes (the CLI process only, not its children), in order.
fn syscall_sequence(node: &Node, args: &str) -> Vec<String> {
    let trace = node.dir.join("trace");
    node.sh(&format!("strace -o {} {PODBOX} --root {} {args}", trace.display(), node.root.display()));
    let text = std::fs::read_to_string(&trace).unwrap();
    let _ = std::fs::remove_file(&trace);
    text.lines()
        .filter(|l| !l.starts_with("+++") && !l.starts_with("---"))
        .filter_map(|l| l.split_once('(').map(|(name, _)| name.to_string()))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .collect()
}

/// Positions to kill at: every `stride`-th of the sequence plus its last 20 (the CLI's final
/// steps); `PODBOX_CRASH_SWEEP_ALL=1` takes every one.
fn positions(len: usize, stride: usize) -> Vec<usize> {
    if std::env::var("PODBOX_CRASH_SWEEP_ALL").is_ok_and(|v| v == "1") {
        return (0..len).collect();
    }
    let mut p: Vec<usize> = (0..len).step_by(stride).chain(len.saturating_sub(20)..len).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// Run `podbox args` in the node and SIGKILL it when it enters the `k`-th syscall of `seq`
/// (strace counts each syscall separately, so the k-th call overall is the n-th of its name).
fn kill_at(node: &Node, args: &str, seq: &[String], k: usize) {
    let name = &seq[k];
    let n = seq[..=k].iter().filter(|s| *s == name).count();
    node.sh(&format!("strace -o /dev/null -e inject={name}:signal=KILL:when={n} {PODBOX} --root {} {args}", node.root.display()));
}

/// The pod's cgroup directory in every v1 hierarchy, from the pause's own (`…/<pod>/_pause`).
fn pod_cgroups(pause_machine_pid: i32) -> Vec<PathBuf> {
    std::fs::read_to_string(format!("/proc/{pause_machine_pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            if ctrls.is_empty() || ctrls.starts_with("name=") || !path.ends_with("/_pause") {
                return None;
            }
            Some(Path::new("/sys/fs/cgroup").join(ctrls).join(path.trim_start_matches('/')).parent()?.to_path_buf())
        })
        .filter(|p| p.is_dir())
        .collect()
}

/// What a pod without containers consists of, to compare against after each crash.
struct Baseline {
    pod_dir: PathBuf,
    processes: usize,
    pause: i32,
    mounts: usize,
}

fn baseline(node: &Node, pod_id: &str) -> Baseline {
    let procs = node.processes();
    assert_eq!(procs.len(), 1, "a fresh pod has only its pause: {procs:?}");
    let pause: i32 = procs[0].split_whitespace().next().unwrap().parse().unwrap();
    Baseline { pod_dir: node.root.join("pods").join(pod_id), processes: procs.len(), pause, mounts: mounts_under_root(node) }
}

fn mounts_under_root(node: &Node) -> usize {
    let table = std::fs::read_to_string(format!("/proc/{}/mountinfo", node.init_pid)).unwrap();
    let root = node.root.to_string_lossy().into_owned();
    table.lines().filter(|l| l.contains(&root)).count()
}

/// Nothing of any container left: processes, mounts, cgroups, records, directories.
fn assert_only_the_pod_left(node: &Node, b: &Baseline, what: &str) {
    // Killed processes are zombies until the node's init has reaped them: a moment.
    common::wait_until(2, || node.processes().len() == b.processes);
    let procs = node.processes();
    assert_eq!(procs.len(), b.processes, "{what}: processes left besides the pause: {procs:?}");
    assert_eq!(mounts_under_root(node), b.mounts, "{what}: mounts left under the root");
    for cg in pod_cgroups(b.pause) {
        let children: Vec<String> = std::fs::read_dir(&cg).unwrap().flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(children, vec!["_pause".to_string()], "{what}: cgroups left in {}", cg.display());
    }
    for sub in ["containers", "trash"] {
        let d = b.pod_dir.join(sub);
        let left: Vec<_> = std::fs::read_dir(&d).map(|rd| rd.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "{what}: left in {}: {left:?}", d.display());
    }
}

/// After a crash: `gc`, then `rm -f` of the container if it is still there (a container that
/// got started is legitimately running); both must succeed.
/// `ps` must tell the truth meanwhile: a container whose process runs shows as running with
/// its PID, never as "created".
fn recover(node: &Node, what: &str) {
    let gc = node.podbox(&["gc"]);
    assert!(gc.status.success(), "{what}: gc failed: {}", String::from_utf8_lossy(&gc.stderr));
    let listed = || {
        let ps = common::json(&node.podbox_ok(&["ps", "--pod", "p", "--json"]));
        ps.as_array().unwrap().iter().map(|x| x["container"].clone()).find(|c| c["name"] == "c")
    };
    if let Some(c) = listed() {
        // (The monitor and a not yet exec'd init carry the CLI's command line: look for the
        // program itself.)
        if node.processes().iter().any(|p| p.split_whitespace().nth(2) == Some("sleep")) {
            let truthful = || listed().is_some_and(|c| c["state"] == "running" && c["pid"].is_object());
            assert!(common::wait_until(2, truthful), "{what}: the container runs, but ps says {c}");
        }
        let rm = node.podbox(&["rm", "-f", "p", "c"]);
        assert!(rm.status.success(), "{what}: rm -f after the crash failed: {}", String::from_utf8_lossy(&rm.stderr));
    }
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn cli_killed_anywhere_in_run_or_rm_leaves_nothing_behind() {
    require_root!();
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is needed (scripts/setup.sh installs it)");
    }
    let node = Node::new("crash");
    let pod_id = node.podbox_ok(&["pod", "create", "p", "--network", "none"]).trim().to_string();
    let b = baseline(&node, &pod_id);
    let run = "run --pod p --name c -d -- sleep 1000";

    // `run -d` killed at one syscall after another.
    let seq = syscall_sequence(&node, run);
    assert!(seq.len() > 50, "strace saw too little: {seq:?}");
    node.podbox_ok(&["rm", "-f", "p", "c"]);
    let stride = std::env::var("PODBOX_CRASH_STRIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(seq.len() / 300 + 1);
    for k in positions(seq.len(), stride) {
        kill_at(&node, run, &seq, k);
        let what = format!("run killed at syscall #{k} ({})", seq[k]);
        recover(&node, &what);
        assert_only_the_pod_left(&node, &b, &what);
    }

    // `rm -f` of a running container killed at one syscall after another.
    node.podbox_ok(&run.split(' ').collect::<Vec<_>>());
    let rm = "rm -f p c";
    let seq = syscall_sequence(&node, rm);
    let stride = std::env::var("PODBOX_CRASH_STRIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(seq.len() / 150 + 1);
    for k in positions(seq.len(), stride) {
        node.podbox_ok(&run.split(' ').collect::<Vec<_>>());
        kill_at(&node, rm, &seq, k);
        let what = format!("rm -f killed at syscall #{k} ({})", seq[k]);
        recover(&node, &what);
        assert_only_the_pod_left(&node, &b, &what);
    }

    // The name is still usable, and the pod goes cleanly.
    node.podbox_ok(&run.split(' ').collect::<Vec<_>>());
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

/// The children of `pid` (machine PID numbering).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn cli_and_monitor_killed_together_at_random_moments_of_run_leave_nothing_behind() {
    require_root!();
    let node = Node::new("crash2");
    let pod_id = node.podbox_ok(&["pod", "create", "p", "--network", "none"]).trim().to_string();
    let b = baseline(&node, &pod_id);
    let trials: u64 = std::env::var("PODBOX_CRASH_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(80);
    let mut monitors_killed = 0;
    for i in 0..trials {
        let mut cli = node.podbox_spawn(&["run", "--pod", "p", "--name", "c", "-d", "--", "sleep", "1000"]);
        // A spread of moments over the CLI's first ~25 ms (a fixed sequence: reproducible).
        let delay = std::time::Duration::from_micros((i * 7919) % 25_000);
        std::thread::sleep(delay);
        // nsenter → podbox CLI → monitor: kill the monitor (if forked yet), then the CLI.
        for podbox in children(cli.id()) {
            for monitor in children(podbox) {
                unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
                monitors_killed += 1;
            }
            unsafe { libc::kill(podbox as i32, libc::SIGKILL) };
        }
        let _ = cli.wait();
        let what = format!("CLI and monitor killed after {delay:?}");
        recover(&node, &what);
        assert_only_the_pod_left(&node, &b, &what);
    }
    eprintln!("monitors killed in {monitors_killed} of {trials} trials");
    assert!(monitors_killed > 0, "no trial hit a monitor: the moments do not cover run");
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "-d", "--", "sleep", "1000"]);
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn removal_finds_every_process_through_the_cgroup_even_without_a_monitor() {
    require_root!();
    let node = Node::new("monitorkill");
    // A shared PID namespace: the container's init is not a namespace init, so its children
    // outlive it, and only the cgroup still knows them.
    let pod_id = node.podbox_ok(&["pod", "create", "p", "--network", "none", "--share-pid"]).trim().to_string();
    let b = baseline(&node, &pod_id);
    let start = |name: &str| {
        node.podbox_ok(&["run", "--pod", "p", "--name", name, "-d", "--", "sh", "-c", "sleep 1000 & sleep 1000"]);
        let rec = common::json(&std::fs::read_to_string(b.pod_dir.join(format!("containers/{name}/container.json"))).unwrap());
        assert!(common::wait_until(5, || node.processes().len() >= b.processes + 3), "{:?}", node.processes());
        // The monitor dies (OOM killer, an admin): the container runs on.
        node.sh_ok(&format!("kill -KILL {}", rec["monitor"]["pid"].as_i64().unwrap()));
    };
    start("c");
    node.podbox_ok(&["rm", "-f", "p", "c"]);
    assert_only_the_pod_left(&node, &b, "after rm -f");
    // The same through `pod rm -f`.
    start("c");
    start("d");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn containers_start_with_default_signal_dispositions_and_nothing_blocked() {
    require_root!();
    let node = Node::new("sigpipe");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    // The process podbox starts, as it is before it changes anything itself (no shell).
    let status = node.podbox_ok(&["run", "--pod", "p", "--name", "fg", "--", "cat", "/proc/self/status"]);
    assert!(status.contains("SigIgn:\t0000000000000000") && status.contains("SigBlk:\t0000000000000000"), "{status}");
    // `yes` must die of SIGPIPE once `head` is done, not loop on EPIPE forever.
    let script = "timeout 10 sh -c 'yes | head -c 1000 >/dev/null'; echo rc=$?";
    let out = node.podbox_ok(&["run", "--pod", "p", "--name", "pipe", "--", "sh", "-c", script]);
    assert!(out.contains("rc=0"), "yes | head did not end: {out}");
    // The same for a process exec'd into a running container.
    node.podbox_ok(&["run", "--pod", "p", "--name", "bg", "-d", "--", "sleep", "1000"]);
    let status = node.podbox_ok(&["exec", "p", "bg", "--", "cat", "/proc/self/status"]);
    assert!(status.contains("SigIgn:\t0000000000000000") && status.contains("SigBlk:\t0000000000000000"), "{status}");
    assert!(node.podbox_ok(&["exec", "p", "bg", "--", "sh", "-c", script]).contains("rc=0"));
    // And in OCI mode (the runc command line), started from a process that ignores SIGPIPE.
    let b = node.dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    node.sh_ok(&format!("{PODBOX} oci spec --bundle {}", b.display()));
    std::os::unix::fs::symlink(common::rootfs(), b.join("rootfs")).unwrap();
    let mut c = common::json(&std::fs::read_to_string(b.join("config.json")).unwrap());
    c["process"]["terminal"] = serde_json::json!(false);
    c["process"]["args"] = serde_json::json!(["cat", "/proc/self/status"]);
    std::fs::write(b.join("config.json"), c.to_string()).unwrap();
    let status = node.sh_ok(&format!("{PODBOX} oci --root {} run --bundle {} s1 </dev/null", node.dir.join("oci").display(), b.display()));
    assert!(status.contains("SigIgn:\t0000000000000000") && status.contains("SigBlk:\t0000000000000000"), "{status}");
    node.sh(&format!("{PODBOX} oci --root {} delete --force s1", node.dir.join("oci").display()));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

/// Sizes (bytes) of the container's log files, live one first.
fn log_sizes(node: &Node, pod_id: &str, name: &str) -> Vec<u64> {
    let dir = format!("{}/pods/{pod_id}/containers/{name}", node.root.display());
    let out = node.sh_ok(&format!("cd {dir} && for f in container.log container.log.*; do [ -e \"$f\" ] && stat -c %s \"$f\"; done; true"));
    out.lines().map(|l| l.trim().parse().unwrap()).collect()
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn logs_rotate_at_their_cap_and_logs_reads_across_the_files() {
    require_root!();
    let node = Node::new("logrotate");
    let pod_id = node.podbox_ok(&["pod", "create", "p", "--network", "none"]).trim().to_string();
    // 20000 numbered lines (~190 KB) through a log of 3 × 32 KiB.
    let script = "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done";
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "--log-max-size", "32k", "--log-max-files", "3", "-d", "--", "sh", "-c", script]);
    // `logs -f` follows across rotations and ends when the container does.
    let followed = node.podbox_ok(&["logs", "-f", "p", "c"]);
    let sizes = log_sizes(&node, &pod_id, "c");
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert!(sizes.iter().all(|s| *s <= 32 << 10), "{sizes:?}");
    let logs = node.podbox_ok(&["logs", "p", "c"]);
    // (The oldest file may begin in the middle of a line: its start was rotated away.)
    let nums: Vec<u32> = logs.lines().skip(1).map(|l| l.strip_prefix("line ").unwrap_or_else(|| panic!("{l:?}")).parse().unwrap()).collect();
    assert_eq!(*nums.last().unwrap(), 19999, "the newest line comes last");
    assert!(nums[0] > 0, "the oldest lines were rotated away");
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "lines in order, none lost between the files");
    // What -f printed ends the same way, in order.
    let fnums: Vec<u32> = followed.lines().filter_map(|l| l.strip_prefix("line ")?.parse().ok()).collect();
    assert_eq!(*fnums.last().unwrap(), 19999);
    assert!(fnums.windows(2).all(|w| w[1] > w[0]), "-f printed lines out of order");
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn a_log_flood_and_a_full_writable_layer_do_not_fill_the_state_root() {
    require_root!();
    let node = Node::new("flood");
    // The state root on a small tmpfs, as /run is.
    node.sh_ok(&format!("mkdir -p {0} && mount -t tmpfs -o size=24m podbox-root {0}", node.root.display()));
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    let root = node.root.display().to_string();
    let used = || node.sh_ok(&format!("df -k {root} | tail -1")).split_whitespace().nth(2).unwrap().parse::<u64>().unwrap();
    // A log flood (tens of MB/s) for a few seconds, through a 2 × 1 MiB log.
    node.podbox_ok(&["run", "--pod", "p", "--name", "flood", "--log-max-size", "1m", "--log-max-files", "2", "-d", "--", "yes", "a line of output that goes on and on"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(used() < 8 << 10, "the flood filled the root: {} KiB used", used());
    node.podbox_ok(&["rm", "-f", "p", "flood"]);
    // dd into the container's / stops at the writable layer's cap with ENOSPC.
    let out = node.podbox(&["run", "--pod", "p", "--name", "dd", "--writable-size", "8m", "--", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=40"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"), "{}", String::from_utf8_lossy(&out.stderr));
    // With the default cap (256 MiB) 40 MiB fit, and still not in the 24 MiB root.
    node.podbox_ok(&["run", "--pod", "p", "--name", "dd2", "--", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=40"]);
    assert!(used() < 8 << 10, "the writable layer went into the root: {} KiB used", used());
    // The node still works.
    node.podbox_ok(&["pod", "create", "q", "--network", "none"]);
    node.podbox_ok(&["pod", "rm", "-f", "p", "q"]);
    node.sh_ok(&format!("umount {root}"));
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn the_kernels_no_id_is_refused_as_user_group_and_in_oci_specs() {
    require_root!();
    let node = Node::new("uid");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    for flags in [&["-u", "4294967295"][..], &["-u", "1000:4294967295"], &["-u", "4294967295:1000"], &["-u", "1000", "--group-add", "4294967295"]] {
        let mut args = vec!["run", "--pod", "p", "--name", "u"];
        args.extend_from_slice(flags);
        args.extend(["--", "id"]);
        let out = node.podbox(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?} accepted: {}", String::from_utf8_lossy(&out.stdout));
        assert!(err.contains("4294967295 is not an ID"), "{flags:?}: {err}");
    }
    assert!(!node.podbox_ok(&["ps"]).contains(" u "), "a refused container left a record");
    // The largest real ID is fine.
    assert_eq!(node.podbox_ok(&["run", "--pod", "p", "--name", "u", "-u", "4294967294", "--", "id", "-u"]).trim(), "4294967294");
    // Defence in depth: an OCI spec with uid (uid_t)-1 is refused by the container layer.
    let b = node.dir.join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    node.sh_ok(&format!("{PODBOX} oci spec --bundle {}", b.display()));
    std::os::unix::fs::symlink(common::rootfs(), b.join("rootfs")).unwrap();
    let mut c = common::json(&std::fs::read_to_string(b.join("config.json")).unwrap());
    c["process"]["terminal"] = serde_json::json!(false);
    c["process"]["args"] = serde_json::json!(["id", "-u"]);
    c["process"]["user"]["uid"] = serde_json::json!(4294967295u32);
    std::fs::write(b.join("config.json"), c.to_string()).unwrap();
    let oci_root = node.dir.join("oci");
    let out = node.sh(&format!("{PODBOX} oci --root {} run --bundle {} u1 </dev/null", oci_root.display(), b.display()));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && !stdout.contains('0'), "ran: {stdout}");
    assert!(stderr.contains("process.user") && stderr.contains("4294967295"), "{stderr}");
    node.sh(&format!("{PODBOX} oci --root {} delete --force u1", oci_root.display()));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn environment_names_with_line_breaks_nul_or_equals_are_refused() {
    require_root!();
    let node = Node::new("envnames");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    for bad in ["A\nB=1", "A\rB=1", "=1"] {
        let out = node.podbox(&["run", "--pod", "p", "--name", "e", "-e", bad, "--", "env"]);
        assert_eq!(out.status.code(), Some(1), "{bad:?} accepted: {}", String::from_utf8_lossy(&out.stdout));
    }
    // In a manifest too.
    let manifest = node.dir.join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata: {name: m}\nspec:\n  containers:\n  - name: c\n    command: [env]\n    env: [{name: \"A\\nFORGED\", value: \"1\"}]\n").unwrap();
    let out = node.podbox(&["pod", "apply", "-f", manifest.to_str().unwrap(), "--network", "none"]);
    assert!(!out.status.success(), "manifest accepted: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("environment variable name"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(node.podbox_ok(&["run", "--pod", "p", "--name", "ok", "-e", "A_1=x=y", "--", "env"]).contains("A_1=x=y"));
    node.podbox_ok(&["pod", "rm", "-f", "p"]);
    node.assert_clean();
}

#[test]
#[ignore = "needs root: scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn hostile_numbers_names_and_paths_get_clear_errors() {
    require_root!();
    let node = Node::new("small");
    node.podbox_ok(&["pod", "create", "p", "--network", "none"]);
    let refused_out = |out: std::process::Output, args: &[&str], says: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    };
    let refused = |args: &[&str], says: &str| refused_out(node.podbox(args), args, says);
    // With global flags of its own (the harness gives --root).
    let refused_raw = |args: &[&str], says: &str| refused_out(node.sh(&format!("{PODBOX} {}", args.join(" "))), args, says);
    // CPU and memory limits whose numbers overflowed into a tiny quota or "no limit".
    for cpus in ["184467440737.096", "1e30"] {
        refused(&["run", "--pod", "p", "--name", "c", "--cpus", cpus, "--", "true"], "at most 1000000 CPUs");
    }
    refused(&["run", "--pod", "p", "--name", "c", "--memory", "1e100", "--", "true"], "larger than the kernel can limit");
    // A grace period past the clock's range: no panic; a container that ends on SIGTERM stops.
    node.podbox_ok(&["run", "--pod", "p", "--name", "c", "-d", "--", "sh", "-c", "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done"]);
    assert!(common::wait_until(5, || node.podbox_ok(&["logs", "p", "c"]).contains("ready")));
    node.podbox_ok(&["stop", "-t", "18446744073709551615", "p", "c"]);
    assert!(node.podbox_ok(&["ps"]).lines().any(|l| l.contains(" c ") && l.contains("exited")));
    // Stopping a container that does not exist names it.
    refused(&["stop", "p", "ghost"], "no container \"ghost\" in pod p");
    // A root or rootfs path an overlay mount cannot name.
    let comma_root = node.dir.join("a,b");
    refused_raw(&["--root", comma_root.to_str().unwrap(), "pod", "ls"], "--root");
    assert!(!comma_root.exists(), "the refused root was created");
    let colon_rootfs = node.dir.join("rootfs:x");
    std::os::unix::fs::symlink(common::rootfs(), &colon_rootfs).unwrap();
    let root = node.root.to_str().unwrap().to_string();
    refused_raw(&["--root", &root, "--rootfs", colon_rootfs.to_str().unwrap(), "run", "--pod", "p", "--name", "d", "--", "true"], "cannot name");
    // pod apply: a container that cannot start makes it fail, naming the container.
    let manifest = node.dir.join("pod.yaml");
    std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata: {name: m}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: good\n    command: [sleep, '1000']\n  - name: bad\n    command: [/no/such/program]\n").unwrap();
    refused(&["pod", "apply", "-f", manifest.to_str().unwrap(), "--network", "none"], "container bad of pod m failed to start");
    node.podbox_ok(&["pod", "rm", "-f", "p", "m"]);
    node.assert_clean();
}
