//! DEL's removal of a veth pair in two steps. Deleting a veth makes the kernel unregister both
//! ends, and unregistering waits for RCU grace periods (`netdev_run_todo`): 17–25 ms here, over
//! two thirds of a DEL. So DEL first makes the pair unobservable, synchronously, with one cheap
//! netlink request per end: the container end down (its routes go with that, the host end loses
//! its carrier), the host end off the bridge, both renamed `pbdel<ifindex>` so that the host veth
//! name and the container's interface name are free for the next ADD of the same container.
//! Only then is the pair's deletion left to a detached child process (stdio on /dev/null, no
//! inherited descriptors, a new session), which the node's init reaps; an alarm bounds its life.
//! What a runtime or user relies on after DEL returns — address free, no bridge port, no route,
//! names free, no NAT — holds when DEL returns; the dead pair itself is gone some tens of
//! milliseconds later. Should the child not finish, GC deletes every `pbdel*` link it finds.

use crate::network::{NetError, netlink};
use rtnetlink::LinkUnspec;

/// Names of pairs being deleted: the prefix plus the end's ifindex (unique in its namespace), at
/// most 5 + 10 characters, the kernel's limit of 15.
pub(super) const DYING_PREFIX: &str = "pbdel";
/// How long the deleting child may live; the kernel's deletion takes tens of milliseconds.
const CHILD_ALARM_SECS: u32 = 10;

fn dying_name(index: u32) -> String {
    format!("{DYING_PREFIX}{index}")
}

/// Rename link `index` `pbdel<index>`, and take it down (`down`) or off its bridge (otherwise),
/// in one request. Older kernels refuse to rename a running link (EBUSY): then it is taken down
/// first.
async fn retire_link(h: &rtnetlink::Handle, index: u32, down: bool) -> Result<(), NetError> {
    let msg = |rename: bool, down: bool| {
        let b = LinkUnspec::new_with_index(index);
        let b = if down { b.down() } else { b.nocontroller() };
        if rename { b.name(dying_name(index)).build() } else { b.build() }
    };
    let fail = |e: rtnetlink::Error| NetError::Netlink { what: format!("retiring link {index}"), msg: e.to_string() };
    match h.link().set(msg(true, down)).execute().await {
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EBUSY => {
            h.link().set(msg(false, true)).execute().await.map_err(fail)?;
            h.link().set(msg(true, down)).execute().await.map_err(fail)
        }
        r => r.map_err(fail),
    }
}

/// Make the pair whose host end is `host_veth` unobservable (see the module header) and return
/// the host end's new name, or None when there is no such link. The container end is `ifname` in
/// `netns`, touched only if it is the host end's peer; a namespace that is gone took the
/// container end with it. If a step fails, the pair is deleted here, the slow way.
pub(super) fn retire_pair(host_veth: &str, netns: &str, ifname: &str) -> Result<Option<String>, NetError> {
    // One runtime and connection for all of it (`netlink::Session`), gone before the fork.
    let nl = netlink::Session::new()?;
    let found = nl.run(|h| async move { Ok(netlink::link_by_name(&h, host_veth).await?.map(|l| (l.header.index, netlink::peer_index(&l)))) })?;
    let Some((index, peer)) = found else { return Ok(None) };
    // The container end first: down, it loses its routes, and the host end its carrier.
    let res = retire_peer(&nl, netns, ifname, peer);
    nl.run(|h| async move {
        match res.and(retire_link(&h, index, false).await) {
            Ok(()) => Ok(Some(dying_name(index))),
            Err(_) => delete_index(&h, index).await.map(|_| None),
        }
    })
}

/// The container end: `ifname` in `netns`, if it is the peer (index `peer` there).
fn retire_peer(nl: &netlink::Session, netns: &str, ifname: &str, peer: Option<u32>) -> Result<(), NetError> {
    let Some(peer) = peer else { return Ok(()) };
    let ns = match std::fs::File::open(netns) {
        Ok(ns) => ns,
        // A namespace that is gone took the container end with it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(NetError::Netlink { what: format!("opening network namespace {netns}"), msg: e.to_string() }),
    };
    nl.in_netns(&ns, |h| async move {
        match netlink::link_by_name(&h, ifname).await? {
            Some(l) if l.header.index == peer => retire_link(&h, peer, true).await,
            _ => Ok(()),
        }
    })
}

/// Delete link `index`; a missing link counts as deleted.
async fn delete_index(h: &rtnetlink::Handle, index: u32) -> Result<(), NetError> {
    match h.link().del(index).execute().await {
        Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(()),
        r => r.map_err(|e| NetError::Netlink { what: format!("deleting link {index}"), msg: e.to_string() }),
    }
}

/// Delete link `dying` (a retired pair) in a detached child and return at once; if no child can
/// be started, delete it here. Call it last, with no file open that others wait for (the
/// address store's lock): the child is forked from this process, which must be single-threaded
/// then (the netlink runtime is current-thread and gone).
pub(super) fn delete_detached(dying: String) -> Result<(), NetError> {
    if !single_threaded() {
        return netlink::run(|h| async move { netlink::delete_link(&h, &dying).await });
    }
    // SAFETY: the process is single-threaded here (see above), so the child may run any code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => Ok(()),
        Ok(nix::unistd::ForkResult::Child) => {
            detach();
            let ok = delete_blocking(&dying);
            // SAFETY: _exit ends the child without the parent's exit handlers and buffers.
            unsafe { libc::_exit(i32::from(!ok)) }
        }
        Err(_) => netlink::run(|h| async move { netlink::delete_link(&h, &dying).await }),
    }
}

/// RTM_DELLINK for `name` on a plain blocking socket: the child closed every inherited
/// descriptor, among them those of tokio's process-wide state, so it uses no runtime. True once
/// the link is gone (or was already).
fn delete_blocking(name: &str) -> bool {
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    use rtnetlink::packet_route::RouteNetlinkMessage;
    use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
    let mut link = LinkMessage::default();
    link.attributes.push(LinkAttribute::IfName(name.to_string()));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::DelLink(link));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.finalize();
    let mut buf = vec![0u8; req.header.length as usize];
    req.serialize(&mut buf);
    // SAFETY: a socket this function owns, and buffers of the lengths passed.
    let n = unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        if fd < 0 || libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) < 0 {
            return false;
        }
        buf.resize(4096, 0);
        libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0)
    };
    let Ok(n) = usize::try_from(n) else { return false };
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..n]).map(|m| m.payload) {
        Ok(NetlinkPayload::Error(e)) => e.code.is_none_or(|c| c.get() == -libc::ENODEV),
        _ => false,
    }
}

/// Whether this process has one thread (the kernel's count; a fork of a threaded process could
/// inherit a lock some other thread held).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.split_whitespace().eq(["Threads:", "1"])))
}

/// The child lets go of everything of the plugin's: stdio (a runtime reads the plugin's stdout
/// to its end, and must not wait for the child), every other descriptor (the address store's
/// flock would block the next ADD), the session (signals to the runtime's process group), and
/// it is killed by an alarm should the deletion hang.
fn detach() {
    // SAFETY: plain syscalls on descriptors and signal state this process owns.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        // The runtime may have left SIGALRM ignored or blocked for its children.
        libc::signal(libc::SIGALRM, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::alarm(CHILD_ALARM_SECS);
    }
}

/// Delete every retired pair on the node: GC's sweep for pairs whose child never finished.
pub(super) fn sweep() -> Result<(), NetError> {
    netlink::run(|h| async move {
        for l in netlink::links(&h).await? {
            if netlink::name(&l).starts_with(DYING_PREFIX) {
                netlink::delete_link(&h, &netlink::name(&l)).await?;
            }
        }
        Ok(())
    })
}
