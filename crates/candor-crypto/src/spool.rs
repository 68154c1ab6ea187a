//! An encrypted spool: personal data that must be read more than once but may not be held in
//! memory (a streamed upload, read once to check it and again to store it) is written to a
//! temporary file under a key that exists only in this process's memory.
//!
//! The key is random per spool and never written anywhere: when the process ends (or the
//! [`SpoolKey`] is dropped) the spool is unreadable, whatever copy of the file survives, so no
//! plaintext personal data is ever at rest.
//!
//! Format: a sequence of records `len(4, big-endian) || AES-256-GCM(chunk) || tag(16)`, each
//! chunk at most [`SPOOL_CHUNK`] bytes of plaintext. The nonce of chunk `i` is
//! `0(4) || i(8, big-endian)` (one key per spool, so counters never repeat); the associated data
//! is `"candor/spool/v1" || i(8) || last(1)`, so chunks cannot be reordered, dropped or cut
//! off: the reader refuses a spool whose last record is not marked last.
//!
//! ```
//! use std::io::Read;
//! use candor_crypto::spool::SpoolWriter;
//! let mut w = SpoolWriter::new(Vec::new()).unwrap();
//! w.write(b"E-mail,Name\n").unwrap();
//! let (file, key) = w.finish().unwrap();
//! let mut plain = String::new();
//! key.reader(&file[..]).read_to_string(&mut plain).unwrap();
//! assert_eq!(plain, "E-mail,Name\n");
//! ```

use std::io::{self, Read, Write};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::kek::aes_key;

/// Plaintext bytes per record.
pub const SPOOL_CHUNK: usize = 64 * 1024;
const TAG_LEN: usize = 16;
const SPOOL_AAD: &[u8] = b"candor/spool/v1";

/// The key of one spool, held only in memory. Cloning shares it.
#[derive(Clone)]
pub struct SpoolKey(Arc<LessSafeKey>);

impl std::fmt::Debug for SpoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpoolKey(<redacted>)")
    }
}

fn nonce(chunk: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&chunk.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(chunk: u64, last: bool) -> [u8; SPOOL_AAD.len() + 9] {
    let mut a = [0u8; SPOOL_AAD.len() + 9];
    a[..SPOOL_AAD.len()].copy_from_slice(SPOOL_AAD);
    a[SPOOL_AAD.len()..SPOOL_AAD.len() + 8].copy_from_slice(&chunk.to_be_bytes());
    a[SPOOL_AAD.len() + 8] = u8::from(last);
    a
}

/// Writes plaintext to `out` sealed, a chunk at a time; [`SpoolWriter::finish`] seals the last
/// chunk and hands back the output and the key that reads it.
pub struct SpoolWriter<W: Write> {
    key: SpoolKey,
    out: W,
    buf: Zeroizing<Vec<u8>>,
    chunk: u64,
    written: u64,
}

impl<W: Write> SpoolWriter<W> {
    /// A spool with a fresh random key.
    pub fn new(out: W) -> Result<Self, CryptoError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| CryptoError::Random)?;
        Ok(Self {
            key: SpoolKey(Arc::new(aes_key(&raw[..]))),
            out,
            buf: Zeroizing::new(Vec::with_capacity(SPOOL_CHUNK + TAG_LEN)),
            chunk: 0,
            written: 0,
        })
    }

    /// Plaintext bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.written += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (SPOOL_CHUNK - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            // A full chunk is sealed only once more bytes follow, so the last one is known.
            if self.buf.len() == SPOOL_CHUNK && !bytes.is_empty() {
                self.seal(false)?;
            }
        }
        Ok(())
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let tag = self
            .key
            .0
            .seal_in_place_separate_tag(nonce(self.chunk), Aad::from(aad(self.chunk, last)), &mut self.buf[..])
            .map_err(|_| io::Error::other("the spool could not be sealed"))?;
        self.buf.extend_from_slice(tag.as_ref());
        let len = u32::try_from(self.buf.len()).expect("a chunk is under 4 GiB");
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.chunk += 1;
        Ok(())
    }

    /// Seals what is left (as the last chunk), flushes, and returns the output and its key.
    pub fn finish(mut self) -> io::Result<(W, SpoolKey)> {
        self.seal(true)?;
        self.out.flush()?;
        Ok((self.out, self.key))
    }
}

impl SpoolKey {
    /// Reads the plaintext back from the start of a spool written under this key. A record
    /// that fails to open, or a spool cut short, is an `InvalidData` error.
    pub fn reader<R: Read>(&self, input: R) -> SpoolReader<R> {
        SpoolReader {
            key: self.clone(),
            input,
            plain: Zeroizing::new(Vec::with_capacity(SPOOL_CHUNK + TAG_LEN)),
            at: 0,
            chunk: 0,
            done: false,
        }
    }
}

/// The plaintext of a spool (see [`SpoolKey::reader`]).
pub struct SpoolReader<R: Read> {
    key: SpoolKey,
    input: R,
    plain: Zeroizing<Vec<u8>>,
    at: usize,
    chunk: u64,
    done: bool,
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("the spool {what}"))
}

impl<R: Read> SpoolReader<R> {
    /// Opens the next record into `plain`; `false` once the last one has been read.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => corrupt("was cut short"),
            _ => e,
        })?;
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG_LEN..=SPOOL_CHUNK + TAG_LEN).contains(&len) {
            return Err(corrupt("has a record of an impossible length"));
        }
        self.plain.clear();
        self.plain.resize(len, 0);
        self.input.read_exact(&mut self.plain[..]).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => corrupt("was cut short"),
            _ => e,
        })?;
        let chunk = self.chunk;
        // The last record says so in its associated data: try "not last" first (all but one).
        let opened = [false, true].into_iter().find_map(|last| {
            let mut attempt = Zeroizing::new(self.plain.to_vec());
            let n = self.key.0.open_in_place(nonce(chunk), Aad::from(aad(chunk, last)), &mut attempt[..]).ok()?.len();
            attempt.truncate(n);
            Some((attempt, last))
        });
        let Some((plain, last)) = opened else { return Err(corrupt("did not decrypt (altered, or another key)")) };
        self.plain = plain;
        self.at = 0;
        self.chunk += 1;
        self.done = last;
        Ok(true)
    }
}

impl<R: Read> Read for SpoolReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = (self.plain.len() - self.at).min(out.len());
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(parts: &[&[u8]]) -> (Vec<u8>, SpoolKey) {
        let mut w = SpoolWriter::new(Vec::new()).unwrap();
        for p in parts {
            w.write(p).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(key: &SpoolKey, file: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        key.reader(file).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn what_is_written_in_any_pieces_reads_back_the_same_and_is_not_in_the_file() {
        let text: Vec<u8> = (0..3 * SPOOL_CHUNK + 17).map(|i| b"ada@example.com,"[i % 16]).collect();
        for cuts in [vec![text.len()], vec![1, SPOOL_CHUNK - 1, SPOOL_CHUNK, 5], vec![SPOOL_CHUNK; 4]] {
            let mut parts = Vec::new();
            let mut rest = &text[..];
            for c in cuts {
                let (a, b) = rest.split_at(c.min(rest.len()));
                parts.push(a);
                rest = b;
            }
            parts.push(rest);
            let (file, key) = spool(&parts);
            assert_eq!(read_all(&key, &file).unwrap(), text);
            assert!(!file.windows(11).any(|w| w == b"example.com"), "plaintext in the spool");
            // Twice: each pass reads from the start.
            assert_eq!(read_all(&key, &file).unwrap(), text);
        }
        let (file, key) = spool(&[]);
        assert_eq!(read_all(&key, &file).unwrap(), b"");
        let (file, key) = spool(&[&text[..SPOOL_CHUNK]]);
        assert_eq!(read_all(&key, &file).unwrap(), &text[..SPOOL_CHUNK]);
    }

    #[test]
    fn a_spool_altered_cut_short_reordered_or_read_with_another_key_is_refused() {
        let text = vec![7u8; 2 * SPOOL_CHUNK + 100];
        let (file, key) = spool(&[&text]);
        let record = 4 + SPOOL_CHUNK + TAG_LEN;
        let mut flipped = file.clone();
        flipped[record + 10] ^= 1;
        assert!(read_all(&key, &flipped).is_err());
        // Cut at a record boundary: the last record is missing, which the reader notices.
        assert!(read_all(&key, &file[..2 * record]).is_err());
        assert!(read_all(&key, &file[..file.len() - 1]).is_err());
        let mut swapped = file[record..2 * record].to_vec();
        swapped.extend_from_slice(&file[..record]);
        swapped.extend_from_slice(&file[2 * record..]);
        assert!(read_all(&key, &swapped).is_err());
        let (_, other) = spool(&[b"x"]);
        assert!(read_all(&other, &file).is_err());
        assert_eq!(format!("{other:?}"), "SpoolKey(<redacted>)");
    }
}
