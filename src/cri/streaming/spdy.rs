//! SPDY/3.1 framing, the part client-go's streams use: parse and build SYN_STREAM, SYN_REPLY,
//! RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE and DATA frames, with the
//! name/value header blocks zlib-compressed against the spec's dictionary — one compression
//! context per direction for the whole connection, as SPDY/3 requires. No I/O here.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::spdy_dictionary::HEADER_DICTIONARY;

pub const VERSION: u16 = 3;
/// The last frame of its stream in this direction.
pub const FLAG_FIN: u8 = 0x01;
/// A frame body longer than this is refused: client-go sends at most 32 KiB of data per frame.
pub const MAX_FRAME_LEN: usize = 1 << 20;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status: the stream is refused or cancelled by its receiver.
pub const RST_CANCEL: u32 = 5;

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream { stream_id: u32, associated_to: u32, priority: u8, flags: u8, headers: Headers },
    SynReply { stream_id: u32, flags: u8, headers: Headers },
    RstStream { stream_id: u32, status: u32 },
    Settings { flags: u8, entries: Vec<(u8, u32, u32)> },
    Ping { id: u32 },
    GoAway { last_good_stream_id: u32, status: u32 },
    Headers { stream_id: u32, flags: u8, headers: Headers },
    WindowUpdate { stream_id: u32, delta: u32 },
    Data { stream_id: u32, flags: u8, data: Vec<u8> },
    /// A control frame type this server has no use for (skipped, as the spec asks).
    Unknown { kind: u16 },
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("SPDY frame of {0} bytes is larger than the {MAX_FRAME_LEN} bytes accepted")]
    TooLarge(usize),
    #[error("SPDY version {0} is not spoken here (only SPDY/3.1)")]
    Version(u16),
    #[error("malformed SPDY frame: {0}")]
    Malformed(String),
    #[error("SPDY header block compression: {0}")]
    Zlib(String),
}

/// One connection's header compression state: an inflater for what the peer sends, a deflater
/// for what we send.
pub struct Codec {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for Codec {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(HEADER_DICTIONARY).expect("a fresh zlib stream takes a dictionary");
        Codec { inflate: Decompress::new(true), deflate }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn malformed(msg: impl Into<String>) -> SpdyError {
    SpdyError::Malformed(msg.into())
}

impl Codec {
    /// The first whole frame in `buf` and how many bytes it took; `None` until one is there.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let flags = buf[4];
        let len = (be32(&buf[4..8]) & 0x00ff_ffff) as usize;
        if len > MAX_FRAME_LEN {
            return Err(SpdyError::TooLarge(len));
        }
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let body = &buf[8..8 + len];
        let frame = if buf[0] & 0x80 == 0 {
            Frame::Data { stream_id: be32(&buf[0..4]) & 0x7fff_ffff, flags, data: body.to_vec() }
        } else {
            let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
            if version != VERSION {
                return Err(SpdyError::Version(version));
            }
            self.decode_control(u16::from_be_bytes([buf[2], buf[3]]), flags, body)?
        };
        Ok(Some((frame, 8 + len)))
    }

    fn decode_control(&mut self, kind: u16, flags: u8, body: &[u8]) -> Result<Frame, SpdyError> {
        let need = |n: usize| if body.len() < n { Err(malformed(format!("control frame type {kind} of {} bytes, at least {n} needed", body.len()))) } else { Ok(()) };
        Ok(match kind {
            SYN_STREAM => {
                need(10)?;
                Frame::SynStream { stream_id: be32(body) & 0x7fff_ffff, associated_to: be32(&body[4..]) & 0x7fff_ffff, priority: body[8] >> 5, flags, headers: self.inflate_headers(&body[10..])? }
            }
            SYN_REPLY | HEADERS => {
                need(4)?;
                let (stream_id, headers) = (be32(body) & 0x7fff_ffff, self.inflate_headers(&body[4..])?);
                if kind == SYN_REPLY { Frame::SynReply { stream_id, flags, headers } } else { Frame::Headers { stream_id, flags, headers } }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream { stream_id: be32(body) & 0x7fff_ffff, status: be32(&body[4..]) }
            }
            SETTINGS => {
                need(4)?;
                let n = be32(body) as usize;
                if body.len() != 4 + n * 8 {
                    return Err(malformed(format!("SETTINGS with {n} entries in {} bytes", body.len())));
                }
                let entries = body[4..].chunks(8).map(|e| (e[0], be32(e) & 0x00ff_ffff, be32(&e[4..]))).collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(4)?;
                Frame::Ping { id: be32(body) }
            }
            GOAWAY => {
                need(4)?;
                Frame::GoAway { last_good_stream_id: be32(body) & 0x7fff_ffff, status: if body.len() >= 8 { be32(&body[4..]) } else { 0 } }
            }
            WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate { stream_id: be32(body) & 0x7fff_ffff, delta: be32(&body[4..]) & 0x7fff_ffff }
            }
            other => Frame::Unknown { kind: other },
        })
    }

    /// Inflate one header block (the connection's zlib stream continues across blocks) and parse
    /// its name/value pairs.
    fn inflate_headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut plain = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut input = compressed;
        loop {
            if plain.capacity() - plain.len() < 256 {
                plain.reserve(plain.capacity().max(1024));
            }
            let (before, had) = (self.inflate.total_in(), plain.len());
            match self.inflate.decompress_vec(input, &mut plain, FlushDecompress::Sync) {
                Ok(_) if self.inflate.total_in() == before && plain.len() == had && !input.is_empty() => {
                    return Err(SpdyError::Zlib("header block does not inflate".into()));
                }
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(HEADER_DICTIONARY).map_err(|e| SpdyError::Zlib(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Zlib(e.to_string())),
            }
            input = &input[(self.inflate.total_in() - before) as usize..];
            if plain.len() > MAX_FRAME_LEN {
                return Err(SpdyError::TooLarge(plain.len()));
            }
            // Done when all input is consumed and the inflater had room left (nothing pending).
            if input.is_empty() && plain.capacity() > plain.len() {
                break;
            }
        }
        parse_header_block(&plain)
    }

    /// Append the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, body: &[u8]| {
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&((u32::from(flags) << 24) | body.len() as u32).to_be_bytes());
            out.extend_from_slice(body);
        };
        match frame {
            Frame::Data { stream_id, flags, data } => {
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&((u32::from(*flags) << 24) | data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
            Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
                let mut body = [stream_id.to_be_bytes(), associated_to.to_be_bytes()].concat();
                body.extend_from_slice(&[priority << 5, 0]);
                body.extend(self.deflate_headers(headers)?);
                control(out, SYN_STREAM, *flags, &body);
            }
            Frame::SynReply { stream_id, flags, headers } | Frame::Headers { stream_id, flags, headers } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend(self.deflate_headers(headers)?);
                control(out, if matches!(frame, Frame::SynReply { .. }) { SYN_REPLY } else { HEADERS }, *flags, &body);
            }
            Frame::RstStream { stream_id, status } => control(out, RST_STREAM, 0, &[stream_id.to_be_bytes(), status.to_be_bytes()].concat()),
            Frame::Settings { flags, entries } => {
                let mut body = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, id, value) in entries {
                    body.extend_from_slice(&((u32::from(*f) << 24) | id).to_be_bytes());
                    body.extend_from_slice(&value.to_be_bytes());
                }
                control(out, SETTINGS, *flags, &body);
            }
            Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good_stream_id, status } => control(out, GOAWAY, 0, &[last_good_stream_id.to_be_bytes(), status.to_be_bytes()].concat()),
            Frame::WindowUpdate { stream_id, delta } => control(out, WINDOW_UPDATE, 0, &[stream_id.to_be_bytes(), delta.to_be_bytes()].concat()),
            Frame::Unknown { kind } => return Err(malformed(format!("cannot send a frame of unknown type {kind}"))),
        }
        Ok(())
    }

    fn deflate_headers(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let plain = header_block(headers);
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = plain.as_slice();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.deflate.total_in();
            let status = self.deflate.compress_vec(input, &mut out, FlushCompress::Sync).map_err(|e| SpdyError::Zlib(e.to_string()))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete when the deflater stopped with room to spare.
            if input.is_empty() && out.capacity() > out.len() && status != Status::BufError {
                return Ok(out);
            }
        }
    }
}

/// The uncompressed name/value block: a count, then length-prefixed names and values (names
/// lowercase; several values of one name joined by NUL).
pub fn header_block(headers: &Headers) -> Vec<u8> {
    let mut b = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        for s in [name.to_ascii_lowercase().as_str(), value.as_str()] {
            b.extend_from_slice(&(s.len() as u32).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        }
    }
    b
}

pub fn parse_header_block(b: &[u8]) -> Result<Headers, SpdyError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let s = b.get(at..at + n).ok_or_else(|| malformed("header block ends early"))?;
        at += n;
        Ok(s)
    };
    let count = be32(take(4)?) as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(n)?).into_owned();
        let n = be32(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// The value of header `name` (names are lowercase on the wire).
pub fn header<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[cfg(test)]
#[path = "spdy_tests.rs"]
mod tests;
