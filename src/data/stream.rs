//! Bounded reading of untrusted files: a byte stream (a raw file, a gunzipped file or a zip
//! entry) that knows how much data it can legitimately hold, so a header that declares a huge
//! payload is rejected *before* anything is allocated, and a compressed payload is read into a
//! buffer that only grows as bytes really arrive. Depends only on `data::error`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::error::DataError;

/// Deflate cannot expand data by more than about 1032x, so a gzip file or zip entry that declares
/// more than this ratio times its compressed size is lying.
pub(crate) const MAX_DEFLATE_RATIO: u64 = 1032;

/// No payload larger than this is ever read (4 GiB).
pub(crate) const MAX_PAYLOAD_BYTES: u64 = 4 << 30;

/// A stream over one file's bytes, counting what has been consumed.
pub(crate) struct Stream<'a> {
    reader: Box<dyn Read + 'a>,
    /// Exact number of bytes the stream holds, when known from a trusted or checked source.
    exact: Option<u64>,
    /// Upper bound on the bytes the stream can plausibly hold.
    cap: u64,
    /// Size of the bytes on disk backing the stream: an allocation up to this size is justified.
    on_disk: u64,
    consumed: u64,
    path: PathBuf,
}

impl<'a> Stream<'a> {
    /// Wraps an arbitrary reader. `exact` is the number of bytes it should hold (if known),
    /// `cap` the most it can plausibly hold, `on_disk` the size of the file behind it.
    pub(crate) fn new(
        reader: Box<dyn Read + 'a>,
        exact: Option<u64>,
        cap: u64,
        on_disk: u64,
        path: &Path,
    ) -> Self {
        Stream {
            reader,
            exact,
            cap,
            on_disk,
            consumed: 0,
            path: path.to_path_buf(),
        }
    }

    /// The file this stream reads, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads exactly `N` header bytes; a short file is a malformed header of `format`.
    pub(crate) fn read_array<const N: usize>(
        &mut self,
        format: &'static str,
    ) -> Result<[u8; N], DataError> {
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                DataError::BadHeader {
                    format,
                    problem: format!("file ends inside the {N}-byte header field"),
                    path: self.path.clone(),
                }
            } else {
                DataError::io(e, &self.path)
            }
        })?;
        self.consumed += N as u64;
        Ok(buf)
    }

    /// Reads `len` header bytes (a variable-length header), after checking that the stream can
    /// hold them.
    pub(crate) fn read_header_bytes(
        &mut self,
        len: u64,
        format: &'static str,
    ) -> Result<Vec<u8>, DataError> {
        let bad = |problem: String| DataError::BadHeader {
            format,
            problem,
            path: self.path.clone(),
        };
        let room = self.exact.unwrap_or(self.cap).saturating_sub(self.consumed);
        if len > room {
            return Err(bad(format!(
                "header declares {len} bytes but the file has at most {room} left"
            )));
        }
        let mut buf = Vec::new();
        (&mut self.reader)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| DataError::io(e, &self.path))?;
        if (buf.len() as u64) < len {
            return Err(bad(format!(
                "file ends inside the header ({} of {len} bytes)",
                buf.len()
            )));
        }
        self.consumed += len;
        Ok(buf)
    }

    /// Reads the payload: exactly `expected` bytes that must end the stream. Rejects sizes the
    /// stream cannot hold before allocating, and never allocates more than the bytes on disk
    /// justify ahead of the data actually arriving.
    pub(crate) fn read_payload(&mut self, expected: u64) -> Result<Vec<u8>, DataError> {
        if let Some(total) = self.exact {
            let remaining = total.saturating_sub(self.consumed);
            if expected > remaining {
                return Err(DataError::Truncated {
                    expected,
                    found: remaining,
                    path: self.path.clone(),
                });
            }
            if expected < remaining {
                return Err(DataError::TrailingData {
                    expected,
                    path: self.path.clone(),
                });
            }
        }
        let limit = self
            .cap
            .min(MAX_PAYLOAD_BYTES)
            .saturating_sub(self.consumed);
        if expected > limit {
            return Err(DataError::TooLarge {
                declared: expected,
                limit,
                path: self.path.clone(),
            });
        }
        // Both fit in usize: `expected <= MAX_PAYLOAD_BYTES` and `on_disk` is a real file size.
        let initial = usize::try_from(expected.min(self.on_disk)).unwrap_or(0);
        let mut buf = Vec::with_capacity(initial);
        let read = (&mut self.reader)
            .take(expected.saturating_add(1))
            .read_to_end(&mut buf);
        match read {
            Ok(_) => {}
            // A truncated gzip or zip stream reports UnexpectedEof; what arrived is in `buf`.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(DataError::Truncated {
                    expected,
                    found: buf.len() as u64,
                    path: self.path.clone(),
                });
            }
            Err(e) => return Err(DataError::io(e, &self.path)),
        }
        let found = buf.len() as u64;
        self.consumed += found;
        if found < expected {
            return Err(DataError::Truncated {
                expected,
                found,
                path: self.path.clone(),
            });
        }
        if found > expected {
            return Err(DataError::TrailingData {
                expected,
                path: self.path.clone(),
            });
        }
        buf.shrink_to_fit();
        Ok(buf)
    }
}

/// Opens a file that may be gzipped (detected by the magic bytes 1f 8b, whatever its name).
pub(crate) fn open_maybe_gz(path: &Path) -> Result<Stream<'static>, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(e, path))?;
    let len = file.metadata().map_err(|e| DataError::io(e, path))?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let gzipped = is_gzip(reader.fill_buf().map_err(|e| DataError::io(e, path))?);
    Ok(maybe_gz(reader, gzipped, len, path))
}

/// [`open_maybe_gz`] over bytes already in memory (`path` names them in errors).
pub(crate) fn maybe_gz_bytes<'a>(bytes: &'a [u8], path: &Path) -> Stream<'a> {
    maybe_gz(bytes, is_gzip(bytes), bytes.len() as u64, path)
}

fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// A stream over the `len` bytes of `reader`, gunzipped when `gzipped`.
fn maybe_gz<'a>(reader: impl BufRead + 'a, gzipped: bool, len: u64, path: &Path) -> Stream<'a> {
    if gzipped {
        let cap = len.saturating_mul(MAX_DEFLATE_RATIO).min(MAX_PAYLOAD_BYTES);
        Stream::new(Box::new(MultiGzDecoder::new(reader)), None, cap, len, path)
    } else {
        Stream::new(Box::new(reader), Some(len), len, len, path)
    }
}

/// Checked product of dimensions (times an element size); `None` on overflow of u64 or usize.
pub(crate) fn checked_len(dims: &[u64], elem_bytes: u64) -> Option<(usize, u64)> {
    let elems = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
    let bytes = elems.checked_mul(elem_bytes)?;
    Some((usize::try_from(elems).ok()?, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_len_detects_overflow() {
        assert_eq!(checked_len(&[2, 3, 4], 4), Some((24, 96)));
        assert_eq!(checked_len(&[], 1), Some((1, 1)));
        assert_eq!(checked_len(&[u32::MAX as u64; 3], 1), None);
        assert_eq!(checked_len(&[1 << 62], 8), None);
    }

    #[test]
    fn payload_size_is_checked_before_reading() {
        let data = vec![7u8; 10];
        let path = Path::new("mem");
        let mut s = Stream::new(Box::new(&data[..]), Some(10), 10, 10, path);
        let e = s.read_payload(11).unwrap_err();
        assert!(matches!(
            e,
            DataError::Truncated {
                expected: 11,
                found: 10,
                ..
            }
        ));
        let mut s = Stream::new(Box::new(&data[..]), None, 100, 10, path);
        assert!(matches!(
            s.read_payload(1000).unwrap_err(),
            DataError::TooLarge {
                declared: 1000,
                limit: 100,
                ..
            }
        ));
        let mut s = Stream::new(Box::new(&data[..]), None, 100, 10, path);
        assert!(matches!(
            s.read_payload(9).unwrap_err(),
            DataError::TrailingData { expected: 9, .. }
        ));
        let mut s = Stream::new(Box::new(&data[..]), None, 100, 10, path);
        assert!(matches!(
            s.read_payload(12).unwrap_err(),
            DataError::Truncated {
                expected: 12,
                found: 10,
                ..
            }
        ));
        let mut s = Stream::new(Box::new(&data[..]), None, 100, 10, path);
        assert_eq!(s.read_payload(10).unwrap(), data);
    }
}
