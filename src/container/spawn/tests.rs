//! Each spawn variant and the protocol, without root. libtest runs tests on threads, so a test
//! that spawns does so from a forked helper (single-threaded by construction) and reports back
//! through a pipe; the helper's verdict is the test's.

use std::io::Read;
use std::time::Duration;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use super::*;

/// Run `check` in a forked, single-threaded helper; panic with its message if it fails.
fn in_helper(check: impl FnOnce() -> std::result::Result<(), String>) {
    let (r, w) = nix::unistd::pipe().unwrap();
    // SAFETY: the helper only runs `check` (ordinary Rust code; glibc's malloc is fork-safe)
    // and leaves with _exit.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(r);
            let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).unwrap_or_else(|_| Err("panicked".into()));
            let code = match verdict {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = nix::unistd::write(&w, msg.as_bytes());
                    1
                }
            };
            // SAFETY: leave the forked helper without running the test harness's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0), "{msg}");
        }
    }
}

fn ensure(cond: bool, what: impl Into<String>) -> std::result::Result<(), String> {
    if cond { Ok(()) } else { Err(what.into()) }
}

#[test]
fn messages_round_trip_through_their_encoding() {
    let all = [
        Msg::Go,
        Msg::Pid { pid: 42 },
        Msg::Error { code: 127, msg: "executable \"x\" not found\nin PATH".into() },
        Msg::HooksDue,
        Msg::HooksDone { state: r#"{"ociVersion":"1.0.2","status":"creating"}"#.into() },
        Msg::Ready,
        Msg::MapsDue,
        Msg::MapsWritten,
        Msg::CgroupDue,
        Msg::CgroupsMade,
    ];
    for m in all {
        let bytes = Channel::encode(&m);
        assert_eq!(u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
        assert_eq!(Channel::decode(&bytes).unwrap(), m);
    }
    let good = Channel::encode(&Msg::Ready);
    assert!(matches!(Channel::decode(&good[..good.len() - 1]), Err(ChannelError::Malformed(_))), "a short body is refused");
    assert!(matches!(Channel::decode(&[1, 0]), Err(ChannelError::Malformed(_))), "a short prefix is refused");
}

#[test]
fn a_channel_carries_messages_both_ways_and_reads_eof_once_closed() {
    let (a, b) = Channel::pair().unwrap();
    a.send(&Msg::HooksDue).unwrap();
    b.send(&Msg::HooksDone { state: "s".into() }).unwrap();
    assert_eq!(b.recv().unwrap(), Some(Msg::HooksDue));
    assert_eq!(a.recv().unwrap(), Some(Msg::HooksDone { state: "s".into() }));
    // An oversized error text is cut, not refused.
    b.send(&Msg::Error { code: 1, msg: "é".repeat(5000) }).unwrap();
    assert!(matches!(a.recv().unwrap(), Some(Msg::Error { msg, .. }) if msg.len() <= 4000));
    drop(b);
    assert_eq!(a.recv().unwrap(), None);
}

#[test]
fn spawn_refuses_to_fork_with_a_second_thread() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let err = spawn(Spawn::default(), |_| Ok(())).expect_err("forked with two threads");
    assert!(matches!(err, SpawnError::Threaded { threads } if threads >= 2), "{err}");
    assert!(err.to_string().contains("single thread"), "{err}");
    tx.send(()).unwrap();
    let _ = other.join();
}

#[test]
fn a_plain_child_runs_and_is_reaped_through_its_pidfd() {
    in_helper(|| {
        let child = spawn(Spawn::default(), |_| Ok(())).map_err(|e| e.to_string())?;
        ensure(child.pidfd.is_some(), "no pidfd")?;
        ensure(child.outcome() == Ok(None), "a clean exit reports nothing")?;
        let status = child.wait();
        ensure(status == WaitStatus::Exited(nix::unistd::Pid::from_raw(child.pid), 0), format!("{status:?}"))
    });
}

#[test]
fn an_error_before_exec_arrives_with_its_code() {
    in_helper(|| {
        let child = spawn(Spawn::default(), |_| Err(Failure { code: 127, msg: "executable \"nope\" not found".into() })).map_err(|e| e.to_string())?;
        let outcome = child.outcome();
        ensure(outcome == Err(Failure { code: 127, msg: "executable \"nope\" not found".into() }), format!("{outcome:?}"))?;
        let status = child.wait();
        ensure(matches!(status, WaitStatus::Exited(_, 127)), format!("exit status {status:?}"))
    });
}

#[test]
fn the_parent_answers_the_child_over_the_same_channel() {
    in_helper(|| {
        let child = spawn(Spawn::default(), |chan| {
            let fail = |msg: &str| Failure { code: 3, msg: msg.into() };
            chan.send(&Msg::HooksDue).map_err(|_| fail("send"))?;
            match chan.recv() {
                Ok(Some(Msg::HooksDone { state })) if state == "the state" => chan.send(&Msg::Ready).map_err(|_| fail("send")),
                other => Err(fail(&format!("child got {other:?}"))),
            }
        })
        .map_err(|e| e.to_string())?;
        let mut asked = Vec::new();
        let served = child.serve(|m| {
            asked.push(m.clone());
            Ok(match m {
                Msg::HooksDue => Some(Msg::HooksDone { state: "the state".into() }),
                _ => None,
            })
        });
        ensure(served == Ok(None), format!("{served:?}"))?;
        ensure(asked == [Msg::HooksDue, Msg::Ready], format!("{asked:?}"))?;
        ensure(matches!(child.wait(), WaitStatus::Exited(_, 0)), "exit 0")
    });
}

#[test]
fn a_pidfd_signal_reaches_exactly_the_child() {
    in_helper(|| {
        let child = spawn(Spawn::default(), |_| {
            // SAFETY: pause(2) until a signal ends the process.
            unsafe { libc::pause() };
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        let pidfd = child.pidfd.as_ref().ok_or("no pidfd")?;
        ensure(!pidfd.wait_exited(Some(Duration::from_millis(50))), "exited before the signal")?;
        pidfd.signal(libc::SIGTERM).map_err(|e| e.to_string())?;
        ensure(pidfd.wait_exited(Some(Duration::from_secs(5))), "the signal did not end it")?;
        let status = child.wait();
        ensure(matches!(status, WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGTERM, _)), format!("{status:?}"))?;
        // Reaped: the descriptor still names the dead process, never a new one with its PID.
        ensure(pidfd.signal(libc::SIGTERM).is_err(), "signalled a reaped process")
    });
}

#[test]
fn a_process_born_in_a_new_pid_namespace_is_pid_1_there_and_our_child_here() {
    // A PID namespace without root: inside a user namespace of its own.
    in_helper(|| {
        let desc = Spawn { unshare: CloneFlags::CLONE_NEWUSER, pid_ns: PidNs::New, ..Spawn::default() };
        let child = spawn(desc, |_| Err(Failure { code: 9, msg: std::process::id().to_string() })).map_err(|e| e.to_string())?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.pid)).map_err(|e| e.to_string())?;
        let ppid: i32 = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok()).ok_or("no ppid")?;
        ensure(ppid == std::process::id() as i32, format!("parent {ppid}, not the spawner"))?;
        let outcome = child.outcome();
        ensure(outcome == Err(Failure { code: 9, msg: "1".into() }), format!("its own PID as it sees it: {outcome:?}"))?;
        ensure(matches!(child.wait(), WaitStatus::Exited(_, 9)), "reaped by the spawner")
    });
}

#[test]
#[ignore = "needs root (a PID namespace without a user namespace): scripts/test.sh runs it (cargo test -- --include-ignored)"]
fn without_a_user_namespace_the_process_is_cloned_straight_into_its_pid_namespace() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    in_helper(|| {
        let desc = Spawn { new_session: true, pid_ns: PidNs::New, ..Spawn::default() };
        ensure(born_in_new_pid_ns(&desc), "no intermediate expected")?;
        let child = spawn(desc, |chan| {
            // PID 1 of its namespace, parent outside it, its own session: every step ran.
            let (sid, ppid) = (nix::unistd::getsid(None).map(|p| p.as_raw()).unwrap_or(-1), nix::unistd::getppid().as_raw());
            chan.send(&Msg::Pid { pid: std::process::id() as i32 * 1000 + ppid * 100 + (sid == 1) as i32 }).map_err(|e| Failure { code: 8, msg: e.to_string() })
        })
        .map_err(|e| e.to_string())?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.pid)).map_err(|e| e.to_string())?;
        let ppid: i32 = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|p| p.parse().ok()).ok_or("no ppid")?;
        ensure(ppid == std::process::id() as i32, format!("parent {ppid}, not the spawner"))?;
        let outcome = child.outcome();
        ensure(outcome == Ok(Some(1001)), format!("pid 1, ppid 0, session leader expected: {outcome:?}"))?;
        ensure(matches!(child.wait(), WaitStatus::Exited(_, 0)), "reaped by the spawner")?;
        // A user namespace to make first still takes the intermediate.
        ensure(!born_in_new_pid_ns(&Spawn { unshare: CloneFlags::CLONE_NEWUSER, pid_ns: PidNs::New, ..Spawn::default() }), "userns first")
    });
}

#[test]
fn a_failing_intermediate_is_reported_by_spawn_itself() {
    in_helper(|| {
        // A regular file is no namespace: setns fails in the intermediate, before any clone.
        let not_ns = File::open("/proc/self/status").map_err(|e| e.to_string())?;
        match spawn(Spawn { pid_ns: PidNs::Join(not_ns), ..Spawn::default() }, |_| Ok(())) {
            Err(SpawnError::Failed(f)) => ensure(f.code == CODE_RUNTIME && f.msg.contains("joining the PID namespace"), f.msg),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn a_child_that_cannot_join_its_cgroup_says_which() {
    in_helper(|| {
        let missing = [PathBuf::from("/nonexistent/podbox-test/cgroup.procs")];
        let child = spawn(Spawn { cgroups: &missing, ..Spawn::default() }, |_| Ok(())).map_err(|e| e.to_string())?;
        match child.outcome() {
            Err(f) => ensure(f.msg.contains("joining cgroup /nonexistent/podbox-test/cgroup.procs"), f.msg),
            Ok(p) => Err(format!("no error: {p:?}")),
        }
    });
}

/// `cgroups_later`: the process joins its cgroups (here a directory with a `tasks` file, as a
/// v1 cgroup has) only once the spawner says they are made, dying with the spawner until then
/// (also when an intermediate clones it into its PID namespace: a clone starts without a
/// parent-death signal); a spawner that gives up instead ends it quietly, having joined nothing.
#[test]
fn a_process_joins_its_cgroups_later_only_once_they_are_made() {
    in_helper(|| {
        let dir = std::env::temp_dir().join(format!("podbox-cgroups-later-{}", std::process::id()));
        let tasks = dir.join("tasks");
        let _ = std::fs::create_dir_all(&dir);
        let result = (|| {
            let procs = [dir.join("cgroup.procs")];
            let pdeathsig = || {
                let mut sig: libc::c_int = -1;
                // SAFETY: prctl writes the signal number to our own int.
                unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int, 0, 0, 0) };
                sig
            };
            let main = |chan: &Channel| -> std::result::Result<(), Failure> {
                let before = pdeathsig();
                join_when_made(chan, &procs).map_err(|msg| Failure { code: 2, msg })?;
                let code = 10 * i32::from(before == libc::SIGKILL) + i32::from(pdeathsig() == 0);
                // SAFETY: leave the spawned process with the verdict as its exit code.
                unsafe { libc::_exit(code) }
            };
            // The second kind goes through an intermediate: a user namespace must own the PID one.
            for (made, intermediate) in [(true, false), (false, false), (true, true), (false, true)] {
                std::fs::write(&tasks, "").map_err(|e| e.to_string())?;
                let desc = match intermediate {
                    false => Spawn { cgroups_later: true, ..Spawn::default() },
                    true => Spawn { cgroups_later: true, user: own_ids(), pid_ns: PidNs::New, ..Spawn::default() },
                };
                let child = spawn(desc, main).map_err(|e| e.to_string())?;
                std::thread::sleep(Duration::from_millis(20));
                ensure(std::fs::read_to_string(&tasks).map_err(|e| e.to_string())?.is_empty(), "joined before the cgroups were made")?;
                let Child { pid, chan, .. } = child;
                if made {
                    chan.send(&Msg::CgroupsMade).map_err(|e| e.to_string())?;
                }
                drop(chan);
                let status = waitpid(Pid::from_raw(pid), None).map_err(|e| e.to_string())?;
                let joined = std::fs::read_to_string(&tasks).map_err(|e| e.to_string())?;
                match made {
                    true => ensure(status == WaitStatus::Exited(Pid::from_raw(pid), 11) && joined == "0", format!("made (intermediate {intermediate}): {status:?}, tasks {joined:?}"))?,
                    false => ensure(status == WaitStatus::Exited(Pid::from_raw(pid), CODE_RUNTIME) && joined.is_empty(), format!("given up (intermediate {intermediate}): {status:?}, tasks {joined:?}"))?,
                }
            }
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    });
}

/// The map of our own ids (the one map an unprivileged spawner may write): 0 inside is us.
fn own_ids() -> UserNs {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    UserNs::New { uid: vec![IdRange { inside: 0, outside: uid, size: 1 }], gid: vec![IdRange { inside: 0, outside: gid, size: 1 }] }
}

/// In a spawned process: "UID PID OWNED", OWNED whether its PID namespace belongs to its user
/// namespace (NS_GET_USERNS on the PID namespace names the user namespace it is in).
fn who_am_i() -> String {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;
    let pid_ns = File::open("/proc/self/ns/pid").expect("open pid ns");
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: an ioctl without argument on a descriptor we own; it returns a new descriptor.
    let owner = unsafe { libc::ioctl(pid_ns.as_raw_fd(), NS_GET_USERNS) };
    let owned = owner >= 0 && {
        // SAFETY: the ioctl returned a new descriptor that nothing else owns.
        let owner = File::from(unsafe { OwnedFd::from_raw_fd(owner) });
        owner.metadata().map(|m| m.ino()).ok() == std::fs::metadata("/proc/self/ns/user").map(|m| m.ino()).ok()
    };
    format!("{} {} {owned}", nix::unistd::getuid(), std::process::id())
}

#[test]
fn a_new_user_namespace_is_mapped_by_the_spawner_and_owns_the_pid_namespace() {
    in_helper(|| {
        let desc = Spawn { user: own_ids(), pid_ns: PidNs::New, ..Spawn::default() };
        let child = spawn(desc, |_| Err(Failure { code: 9, msg: who_am_i() })).map_err(|e| e.to_string())?;
        let outcome = child.outcome();
        ensure(outcome == Err(Failure { code: 9, msg: "0 1 true".into() }), format!("uid 0 (mapped), PID 1, PID namespace owned by the user namespace: {outcome:?}"))?;
        ensure(matches!(child.wait(), WaitStatus::Exited(_, 9)), "reaped by the spawner")
    });
}

#[test]
fn a_new_user_namespace_without_a_pid_namespace_is_mapped_before_main_runs() {
    in_helper(|| {
        let child = spawn(Spawn { user: own_ids(), ..Spawn::default() }, |chan| {
            // Whoever sees this message has been mapped (no MapsDue is left for the caller).
            let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
            chan.send(&Msg::Error { code: 9, msg: format!("{} {}", nix::unistd::getuid(), map.split_whitespace().next().unwrap_or("")) }).ok();
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        let first = child.recv().map_err(|e| e.to_string())?;
        ensure(first == Some(Msg::Error { code: 9, msg: "0 0".into() }), format!("the caller's first message: {first:?}"))?;
        ensure(matches!(child.wait(), WaitStatus::Exited(_, 0)), "exit 0")
    });
}

#[test]
fn maps_the_kernel_refuses_fail_the_spawn_naming_the_map() {
    in_helper(|| {
        // Two lines mapping the same id inside: the kernel refuses the write with EINVAL.
        let uid = nix::unistd::geteuid().as_raw();
        let bad = || UserNs::New { uid: vec![IdRange { inside: 0, outside: uid, size: 1 }, IdRange { inside: 0, outside: uid + 1, size: 1 }], gid: vec![IdRange { inside: 0, outside: 0, size: 1 }] };
        let direct = spawn(Spawn { user: bad(), ..Spawn::default() }, |_| Ok(())).map_err(|e| e.to_string())?;
        match direct.outcome() {
            Err(f) => ensure(f.msg.contains("mapping the user namespace") && f.msg.contains("uid_map"), f.msg)?,
            Ok(p) => return Err(format!("no error: {p:?}")),
        }
        ensure(!matches!(direct.wait(), WaitStatus::Exited(_, 0)), "the child went on unmapped")?;
        match spawn(Spawn { user: bad(), pid_ns: PidNs::New, ..Spawn::default() }, |_| Ok(())) {
            Err(SpawnError::Failed(f)) => ensure(f.msg.contains("mapping the user namespace") && f.msg.contains("uid_map"), f.msg),
            other => Err(format!("the intermediate's failure: {other:?}")),
        }
    });
}

#[test]
fn a_user_namespace_is_joined_before_the_other_namespaces() {
    in_helper(|| {
        use std::os::unix::fs::MetadataExt;
        // A holder in a new user namespace with a UTS namespace it owns.
        let holder = spawn(Spawn { user: own_ids(), unshare: CloneFlags::CLONE_NEWUTS, ..Spawn::default() }, |chan| {
            // Dumpable, so that an unprivileged test may open its /proc/PID/ns files.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
            let _ = chan.send(&Msg::Ready);
            // SAFETY: pause(2) until a signal ends the process.
            unsafe { libc::pause() };
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        let joined = (|| {
            // Its namespaces are made once its main runs.
            ensure(holder.recv().map_err(|e| e.to_string())? == Some(Msg::Ready), "the holder did not start")?;
            let open = |name: &str| File::open(format!("/proc/{}/ns/{name}", holder.pid)).map_err(|e| format!("opening its {name} namespace: {e}"));
            let want = open("user")?.metadata().map_err(|e| e.to_string())?.ino();
            // Joining its UTS namespace needs its user namespace's capabilities: joined first.
            let desc = Spawn { user: UserNs::Join(open("user")?), join: vec![(CloneFlags::CLONE_NEWUTS, open("uts")?)], ..Spawn::default() };
            let joiner = spawn(desc, |_| {
                let ino = std::fs::metadata("/proc/self/ns/user").map(|m| m.ino()).unwrap_or(0);
                Err(Failure { code: 9, msg: ino.to_string() })
            })
            .map_err(|e| e.to_string())?;
            let outcome = joiner.outcome();
            joiner.wait();
            ensure(outcome == Err(Failure { code: 9, msg: want.to_string() }), format!("in the holder's user namespace ({want}): {outcome:?}"))
        })();
        let _ = holder.pidfd.as_ref().map(|p| p.signal(libc::SIGKILL));
        holder.wait();
        joined
    });
}
