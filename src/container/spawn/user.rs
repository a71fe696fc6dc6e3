//! The user namespace step of `spawn`: the process joins one by descriptor, or unshares a new
//! one and asks for its uid/gid maps (`Msg::MapsDue`), which the spawner writes for the process
//! it forked before answering (`Msg::MapsWritten`, or `Msg::Error`): a process cannot map ids
//! for itself. It comes before every other namespace, so that those made after it (the PID one
//! included) are owned by it.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsFd;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::{CODE_RUNTIME, Channel, IdRange, Msg, SpawnError};

/// The user namespace the process runs in.
#[derive(Debug, Default)]
pub enum UserNs {
    /// The spawner's.
    #[default]
    Inherit,
    /// A new one with these maps, written by the spawner (`Msg::MapsDue` → `Msg::MapsWritten`).
    New { uid: Vec<IdRange>, gid: Vec<IdRange> },
    /// An existing one (a pod's, a running container's), opened by the spawner; never the
    /// spawner's own (joining one's own user namespace is EINVAL).
    Join(File),
}

/// Join the user namespace, or make a new one and wait until the spawner has written its maps.
/// The process keeps the host's uid 0 (unmapped inside, with every capability of the
/// namespace) until its `main` takes an id of the namespace (`userns::become_root`).
pub(super) fn enter_user(user: &UserNs, chan: &Channel) -> Result<(), String> {
    match user {
        UserNs::Inherit => Ok(()),
        UserNs::Join(ns) => nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWUSER).map_err(|e| format!("joining the user namespace: {e}")),
        UserNs::New { .. } => {
            // An undumpable process's /proc files are root's: an unprivileged spawner (spawn's
            // unit tests) could not write its maps. Dumpable only while it waits for them, as
            // runc's rootless mode does; nothing but this process is in the namespace yet.
            let unprivileged = !nix::unistd::geteuid().is_root();
            if unprivileged {
                // SAFETY: prctl with integer arguments.
                unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
            }
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("creating a user namespace: {e}"))?;
            chan.send(&Msg::MapsDue).map_err(|e| e.to_string())?;
            let answer = chan.recv();
            if unprivileged {
                super::super::sealed_exe::set_undumpable().map_err(|e| format!("PR_SET_DUMPABLE 0: {e}"))?;
            }
            match answer {
                Ok(Some(Msg::MapsWritten)) => Ok(()),
                Ok(Some(Msg::Error { msg, .. })) => Err(msg),
                Ok(other) => Err(format!("waiting for the user namespace maps: the spawner answered {other:?}")),
                Err(e) => Err(format!("waiting for the user namespace maps: {e}")),
            }
        }
    }
}

/// Answer the request of `child` (the process spawn forked, which made the user namespace) for
/// its maps: write them, reply `MapsWritten`, or the error, which the child reports as its own
/// failure. Returns what arrived before the request (an error of the child, then end-of-file).
pub(super) fn serve_maps(chan: &Channel, child: i32, uid: &[IdRange], gid: &[IdRange]) -> Result<VecDeque<Msg>, SpawnError> {
    let mut early = VecDeque::new();
    loop {
        match chan.recv()? {
            Some(Msg::MapsDue) => {
                answer_maps(chan, child, uid, gid);
                return Ok(early);
            }
            Some(m) => early.push_back(m),
            None => return Ok(early),
        }
    }
}

pub(super) fn answer_maps(chan: &Channel, child: i32, uid: &[IdRange], gid: &[IdRange]) {
    let reply = match super::super::userns::write_maps(Pid::from_raw(child), uid, gid) {
        Ok(()) => Msg::MapsWritten,
        Err(e) => Msg::Error { code: CODE_RUNTIME, msg: format!("mapping the user namespace: {e}") },
    };
    // A child gone already has reported its own error.
    let _ = chan.send(&reply);
}
