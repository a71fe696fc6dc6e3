//! Content digests: parse and check `sha256:<hex>`, and hash bytes as they stream by (so a blob
//! is verified while it is written, and a layer's diff ID while it is unpacked).

use std::io::{Read, Write};

use sha2::{Digest as _, Sha256};

use super::{ImageError, Result};

/// The hex part of a `sha256:<64 hex>` digest; other algorithms are refused.
pub fn hex_of(digest: &str) -> Result<&str> {
    let bad = |msg: &str| ImageError::Invalid(format!("digest {digest:?}: {msg}"));
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| bad("only sha256 digests are supported"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad("expected 64 lowercase hex digits"));
    }
    Ok(hex)
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", to_hex(&Sha256::digest(bytes)))
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Passes writes through to `inner` and hashes them.
pub struct HashingWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }
    pub fn digest(&self) -> String {
        format!("sha256:{}", to_hex(&self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads through from `inner` and hashes them.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), read: 0 }
    }
    pub fn digest(&self) -> String {
        format!("sha256:{}", to_hex(&self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(sha256(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"").unwrap();
        assert_eq!(w.digest(), sha256(b""));
        assert!(hex_of("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").is_ok());
        for bad in ["sha512:00", "sha256:xyz", "sha256:../../etc", "e3b0"] {
            assert!(hex_of(bad).is_err(), "{bad}");
        }
    }
}
