//! Adds elements to podbox's own nf_tables sets over netlink, without running `nft`.
//!
//! Why: every pod needs three anti-spoofing elements (nft.rs). As an `nft -f` run that is a
//! process with its libraries and a ruleset cache fetch, 2–5 ms on the pod-create path; as one
//! netlink batch it is a few syscalls. Everything else — tables, chains, listing, deleting, host
//! ports — stays with `nft`, whose scripts are easier to read and debug; when this fast path
//! fails for any reason (an old kernel, the table removed from outside) the caller falls back to
//! the `nft` script, so a mistake here costs time, never protection.
//!
//! The wire format (linux/netfilter/nfnetlink.h, nf_tables.h): a batch is BATCH_BEGIN, the
//! NEWSETELEM messages and BATCH_END in one datagram, applied by the kernel as one transaction.
//! Keys are the concatenation of the set type's fields, each padded to 4 bytes; the element
//! comment is nft's user-data TLV (type 0 = comment, NUL-terminated), so `nft list` shows it.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, sockopt, socket};

use super::NetError;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
/// nf_tables' family number for `table bridge …` (NFPROTO_BRIDGE).
pub const FAMILY_BRIDGE: u8 = 7;

/// One element to add to set `set`: its key bytes (fields padded to 4 bytes) and a comment.
#[derive(Debug, Clone)]
pub struct Element {
    pub set: &'static str,
    pub key: Vec<u8>,
    pub comment: String,
}

/// Append a netlink attribute (header, payload, padding to 4 bytes).
fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    buf.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn strz(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Append a netlink message: header, nfgenmsg (family, version 0, res_id big-endian), attributes.
fn message(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) {
    let len = 16 + 4 + attrs.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

/// The batch adding `elems` to sets of table `table` (family `family`); returns it and the
/// sequence numbers whose acknowledgement the kernel will send.
fn batch(family: u8, table: &str, elems: &[Element], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut buf = Vec::new();
    message(&mut buf, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq, 0, NFNL_SUBSYS_NFTABLES, &[]);
    let mut acked = Vec::new();
    for (i, e) in elems.iter().enumerate() {
        let mut key = Vec::new();
        attr(&mut key, NFTA_DATA_VALUE, &e.key);
        let mut udata = vec![NFTNL_UDATA_SET_ELEM_COMMENT, (e.comment.len() + 1) as u8];
        udata.extend_from_slice(&strz(&e.comment));
        let mut elem = Vec::new();
        attr(&mut elem, NFTA_SET_ELEM_KEY | NLA_F_NESTED, &key);
        attr(&mut elem, NFTA_SET_ELEM_USERDATA, &udata);
        let mut list = Vec::new();
        attr(&mut list, NFTA_LIST_ELEM | NLA_F_NESTED, &elem);
        let mut attrs = Vec::new();
        attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &strz(table));
        attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &strz(e.set));
        attr(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, &list);
        let seq = first_seq + 1 + i as u32;
        let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
        message(&mut buf, kind, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq, family, 0, &attrs);
        acked.push(seq);
    }
    let end = first_seq + 1 + elems.len() as u32;
    message(&mut buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, end, 0, NFNL_SUBSYS_NFTABLES, &[]);
    (buf, acked)
}

fn err(what: &str, e: impl std::fmt::Display) -> NetError {
    NetError::Nft(format!("netlink {what}: {e}"))
}

/// Add `elems` in one transaction. An element that exists already with the same key is fine (as
/// with `nft add element`); any error fails the whole batch, which then changes nothing.
pub fn add_elements(family: u8, table: &str, elems: &[Element]) -> Result<(), NetError> {
    if elems.iter().any(|e| e.comment.len() > 250) {
        return Err(NetError::Nft("element comment too long".into()));
    }
    let sock = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
        .map_err(|e| err("socket", e))?;
    // Never hang a pod create on a kernel that does not answer: the caller falls back to nft.
    let timeout = nix::sys::time::TimeVal::new(1, 0);
    nix::sys::socket::setsockopt(&sock, sockopt::ReceiveTimeout, &timeout).map_err(|e| err("setsockopt", e))?;
    let first_seq = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs() as u32;
    let (buf, mut pending) = batch(family, table, elems, first_seq);
    nix::sys::socket::sendto(sock.as_raw_fd(), &buf, &NetlinkAddr::new(0, 0), nix::sys::socket::MsgFlags::empty())
        .map_err(|e| err("send", e))?;
    let mut rbuf = vec![0u8; 16384];
    while !pending.is_empty() {
        let n = nix::sys::socket::recv(sock.as_raw_fd(), &mut rbuf, nix::sys::socket::MsgFlags::empty()).map_err(|e| err("receive", e))?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(rbuf[off..off + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(rbuf[off + 4..off + 6].try_into().unwrap());
            let seq = u32::from_ne_bytes(rbuf[off + 8..off + 12].try_into().unwrap());
            if len < 16 || off + len > n {
                return Err(err("receive", "malformed reply"));
            }
            if kind == NLMSG_ERROR && len >= 20 {
                let code = i32::from_ne_bytes(rbuf[off + 16..off + 20].try_into().unwrap());
                if code != 0 {
                    return Err(err("add element", std::io::Error::from_raw_os_error(-code)));
                }
                pending.retain(|s| *s != seq);
            }
            off += len.next_multiple_of(4);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_begin_elements_end_with_acks_asked_for_the_elements() {
        let e = Element { set: "pod_ip", key: vec![5, 0, 0, 0, 10, 244, 0, 2], comment: "abc".into() };
        let (buf, acked) = batch(FAMILY_BRIDGE, "podbox", &[e], 100);
        assert_eq!(acked, vec![101]);
        // BATCH_BEGIN: 20 bytes, nfgenmsg res_id = NFTABLES (big-endian).
        assert_eq!(u32::from_ne_bytes(buf[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(buf[4..6].try_into().unwrap()), NFNL_MSG_BATCH_BEGIN);
        assert_eq!(&buf[18..20], &[0, 10]);
        // The element message: type NFTABLES<<8 | NEWSETELEM, bridge family, attributes aligned.
        let len = u32::from_ne_bytes(buf[20..24].try_into().unwrap()) as usize;
        assert_eq!(len % 4, 0);
        assert_eq!(u16::from_ne_bytes(buf[24..26].try_into().unwrap()), (10 << 8) | 12);
        assert_eq!(buf[36], FAMILY_BRIDGE);
        let msg = &buf[20..20 + len];
        assert!(msg.windows(7).any(|w| w == b"podbox\0") && msg.windows(7).any(|w| w == b"pod_ip\0"));
        assert!(msg.windows(6).any(|w| w == [0, 4, b'a', b'b', b'c', 0]), "comment TLV");
        // BATCH_END closes it.
        assert_eq!(buf.len(), 20 + len + 20);
        assert_eq!(u16::from_ne_bytes(buf[20 + len + 4..20 + len + 6].try_into().unwrap()), NFNL_MSG_BATCH_END);
    }
}
