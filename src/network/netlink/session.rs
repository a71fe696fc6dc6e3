//! One netlink runtime and connection for a whole operation (podbox-cni's ADD), instead of a
//! runtime and a socket per step (`run`), and a pod namespace's socket opened on the calling
//! thread instead of on a thread of its own (`in_netns`).
//!
//! Performance: building a current-thread runtime (epoll instance, eventfd, driver) and a netlink
//! socket, then tearing both down, costs a dozen syscalls and their allocations each time; a
//! thread costs a stack mapping, a malloc arena, clone and join. A CNI plugin is a process per
//! call whose time is mostly this kind of overhead around a few kernel requests. The runtime
//! keeps the connection tasks between `run` calls (a current-thread runtime polls its tasks only
//! inside `block_on`, and keeps them until it is dropped).

use std::fs::File;
use std::future::Future;
use std::os::fd::AsFd;

use rtnetlink::Handle;
use tokio::runtime::Runtime;

use super::NetError;

pub struct Session {
    rt: Runtime,
    handle: Handle,
}

fn fail(what: &str) -> impl FnOnce(std::io::Error) -> NetError + '_ {
    move |e| NetError::Netlink { what: what.into(), msg: e.to_string() }
}

impl Session {
    /// A runtime and a connection with strict checking in the calling thread's network
    /// namespace.
    pub fn new() -> Result<Session, NetError> {
        Session::checking(true)
    }

    /// `new`, with strict checking of requests or without (`netlink::run`'s, as pod create has
    /// always used it).
    pub(super) fn checking(strict: bool) -> Result<Session, NetError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(fail("starting the netlink runtime"))?;
        let handle = connect(&rt, strict)?;
        Ok(Session { rt, handle })
    }

    /// Run `f` with this session's connection.
    pub fn run<T, Fut>(&self, f: impl FnOnce(Handle) -> Fut) -> Result<T, NetError>
    where
        Fut: Future<Output = Result<T, NetError>>,
    {
        self.rt.block_on(f(self.handle.clone()))
    }

    /// Run `f` on this session's runtime with a connection whose socket belongs to the network
    /// namespace `ns`. A netlink socket works in the namespace it was created in, whichever
    /// namespace its user is in later: so the calling thread enters `ns` only to create the
    /// socket, and comes straight back (setns is per thread; nothing else runs on this thread
    /// in between, there is no await point).
    pub fn in_netns<T, Fut>(&self, ns: &File, f: impl FnOnce(Handle) -> Fut) -> Result<T, NetError>
    where
        Fut: Future<Output = Result<T, NetError>>,
    {
        let h = self.connect_in(ns)?;
        self.rt.block_on(f(h))
    }

    fn connect_in(&self, ns: &File) -> Result<Handle, NetError> {
        let home = File::open("/proc/thread-self/ns/net").map_err(fail("opening this thread's network namespace"))?;
        let enter = |to: &File| nix::sched::setns(to.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
        enter(ns).map_err(|e| NetError::Netlink { what: "entering the pod's network namespace".into(), msg: e.to_string() })?;
        let h = connect(&self.rt, true);
        if let Err(e) = enter(&home) {
            // This thread would go on in the pod's namespace, where nothing of ours belongs;
            // never seen (the namespace is our own, and its file is open), but not survivable.
            eprintln!("podbox: cannot return to the node's network namespace: {e}");
            std::process::abort();
        }
        h
    }
}

/// A connection, with strict checking (the kernel filters dumps by what the request names, see
/// `addresses_strict`) or not, its task spawned on `rt`.
fn connect(rt: &Runtime, strict: bool) -> Result<Handle, NetError> {
    // The socket registers with the runtime's reactor when created: inside its context.
    let _in = rt.enter();
    let made = if strict { rtnetlink::new_connection_with_strict_check() } else { rtnetlink::new_connection() };
    let (conn, handle, _) = made.map_err(fail("opening a netlink socket"))?;
    rt.spawn(conn);
    Ok(handle)
}
