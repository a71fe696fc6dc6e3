//! Makes the kubelet's and crictl's HTTP/2 requests acceptable to the h2 server under tonic.
//! Their gRPC client dials the unix socket with the socket's *path* as target, and so sends
//! `:authority: /run/podbox/cri.sock`; h2 refuses an authority containing '/' as a malformed
//! request (RST_STREAM PROTOCOL_ERROR) before any handler runs. Each accepted connection
//! therefore goes through a small relay that rewrites, in the client's HEADERS frames, the value
//! of every literal `:authority` field (HPACK static name index 1) to `x`. Nothing else is
//! decoded: representations are walked by their lengths, Huffman strings are skipped whole.
//! The server's HPACK dynamic table then holds an entry no larger than the client's at the same
//! position (one character is the shortest value a non-empty original can have, Huffman-coded
//! or not); entries are only ever evicted oldest-first, so the server evicts no earlier than the
//! client, and every index the client uses names the same entry on the server.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE_LEN: usize = 24;
const HEADERS: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const REPLACEMENT: &[u8] = b"x";

/// Relay `conn` (the client) to the returned stream (for the server), rewriting as above.
pub fn relay<S>(conn: S) -> tokio::io::DuplexStream
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (server_side, ours) = tokio::io::duplex(64 * 1024);
    let (mut client_r, mut client_w) = tokio::io::split(conn);
    let (mut ours_r, mut ours_w) = tokio::io::split(ours);
    tokio::spawn(async move {
        let _ = rewrite_stream(&mut client_r, &mut ours_w).await;
        let _ = ours_w.shutdown().await;
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut ours_r, &mut client_w).await;
        let _ = client_w.shutdown().await;
    });
    server_side
}

async fn rewrite_stream<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(r: &mut R, w: &mut W) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE_LEN];
    r.read_exact(&mut preface).await?;
    w.write_all(&preface).await?;
    loop {
        let mut head = [0u8; 9];
        r.read_exact(&mut head).await?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        if head[3] == HEADERS && head[4] & END_HEADERS != 0
            && let Some(new) = rewrite_headers_payload(&payload, head[4])
        {
            let n = (new.len() as u32).to_be_bytes();
            head[..3].copy_from_slice(&n[1..]);
            payload = new;
        }
        w.write_all(&head).await?;
        w.write_all(&payload).await?;
        w.flush().await?;
    }
}

/// A HEADERS frame's payload with `:authority` values replaced; None if there is none (or the
/// block cannot be walked: it is then passed on as it is).
fn rewrite_headers_payload(p: &[u8], flags: u8) -> Option<Vec<u8>> {
    let mut start = 0;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = *p.first()? as usize;
        start = 1;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    let end = p.len().checked_sub(pad)?;
    if start > end {
        return None;
    }
    let block = rewrite_block(&p[start..end])?;
    let mut out = p[..start].to_vec();
    out.extend_from_slice(&block);
    out.extend_from_slice(&p[end..]);
    Some(out)
}

/// An HPACK integer with an `n`-bit prefix at `pos`: (value, position after it).
fn int(b: &[u8], pos: usize, n: u32) -> Option<(usize, usize)> {
    let mask = (1usize << n) - 1;
    let mut v = (*b.get(pos)? as usize) & mask;
    let mut i = pos + 1;
    if v < mask {
        return Some((v, i));
    }
    let mut shift = 0;
    loop {
        let x = *b.get(i)? as usize;
        i += 1;
        v += (x & 0x7f) << shift;
        shift += 7;
        if x & 0x80 == 0 || shift > 28 {
            return (shift <= 28).then_some((v, i));
        }
    }
}

/// The end of the string literal at `pos`.
fn skip_string(b: &[u8], pos: usize) -> Option<usize> {
    let (len, i) = int(b, pos, 7)?;
    (i + len <= b.len()).then_some(i + len)
}

fn rewrite_block(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut pos = 0;
    let mut changed = false;
    while pos < b.len() {
        let first = b[pos];
        let (prefix_bits, literal) = if first & 0x80 != 0 {
            (7, false) // indexed field
        } else if first & 0xc0 == 0x40 {
            (6, true) // literal with incremental indexing
        } else if first & 0xe0 == 0x20 {
            (5, false) // dynamic table size update
        } else {
            (4, true) // literal without indexing / never indexed
        };
        let (index, after) = int(b, pos, prefix_bits)?;
        if !literal {
            out.extend_from_slice(&b[pos..after]);
            pos = after;
            continue;
        }
        let value_at = if index == 0 { skip_string(b, after)? } else { after };
        let value_end = skip_string(b, value_at)?;
        if index == 1 {
            out.extend_from_slice(&b[pos..value_at]);
            out.push(REPLACEMENT.len() as u8);
            out.extend_from_slice(REPLACEMENT);
            changed = true;
        } else {
            out.extend_from_slice(&b[pos..value_end]);
        }
        pos = value_end;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_authority_becomes_x_and_the_rest_stays() {
        // :method POST (indexed 3), :path literal-incremental name 4 "/a", :authority
        // literal-incremental name 1 "/run/x.sock" (raw), a Huffman-flagged value of another
        // field kept byte for byte, then an indexed reference (62).
        let mut block = vec![0x83, 0x44, 0x02, b'/', b'a', 0x41, 11];
        block.extend_from_slice(b"/run/x.sock");
        block.extend_from_slice(&[0x40, 0x01, b'x', 0x83, 0xaa, 0xbb, 0xcc, 0xbe]);
        let out = rewrite_block(&block).unwrap();
        let mut want = vec![0x83, 0x44, 0x02, b'/', b'a', 0x41, 1, b'x'];
        want.extend_from_slice(&[0x40, 0x01, b'x', 0x83, 0xaa, 0xbb, 0xcc, 0xbe]);
        assert_eq!(out, want);
        // Nothing to change: None, the frame goes on untouched.
        assert!(rewrite_block(&[0x83, 0x86, 0xbe]).is_none());
        // A truncated block is not walked.
        assert!(rewrite_block(&[0x41, 20, b'/']).is_none());
    }

    #[test]
    fn padding_and_priority_are_kept_around_the_rewritten_block() {
        let mut p = vec![2u8, 0, 0, 0, 1, 16]; // pad length 2, priority (5 bytes)
        p.extend_from_slice(&[0x41, 3, b'/', b'r', b's']);
        p.extend_from_slice(&[0, 0]);
        let out = rewrite_headers_payload(&p, PADDED | PRIORITY | END_HEADERS).unwrap();
        let mut want = vec![2u8, 0, 0, 0, 1, 16, 0x41, 1, b'x'];
        want.extend_from_slice(&[0, 0]);
        assert_eq!(out, want);
    }
}
