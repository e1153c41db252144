//! Parser for the header of a NumPy `.npy` array: magic `\x93NUMPY`, version, header length,
//! then a Python dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
//!
//! The `npyz` crate parses this too, but it multiplies the shape without overflow checks (a
//! header with huge dimensions panics under overflow checks or wraps silently) and allocates the
//! declared header length before reading it; files here are untrusted, so this small parser does
//! both with checks. Depends only on `data::{error, stream}`.

use super::error::DataError;
use super::stream::Stream;

const FORMAT: &str = "NPY";
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// numpy itself refuses headers over 10 000 bytes by default; this is a generous margin.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// The numeric family of an element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Unsigned integer (`u`).
    Uint,
    /// Signed integer (`i`).
    Int,
    /// IEEE float (`f`).
    Float,
}

/// A scalar element type such as `<f4`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dtype {
    pub kind: Kind,
    /// Bytes per element: 1, 2, 4 or 8.
    pub size: usize,
    pub big_endian: bool,
    /// The descriptor as written in the file, for messages.
    pub descr: String,
}

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Header {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub fortran_order: bool,
}

/// Reads and parses the header, leaving `stream` at the first data byte.
pub(crate) fn read_header(stream: &mut Stream<'_>) -> Result<Header, DataError> {
    let magic = stream.read_array::<6>(FORMAT)?;
    if &magic != MAGIC {
        return Err(DataError::BadMagic {
            format: FORMAT,
            expected: hex(MAGIC),
            found: hex(&magic),
            path: stream.path().to_path_buf(),
        });
    }
    let [major, _minor] = stream.read_array::<2>(FORMAT)?;
    let len = match major {
        1 => u64::from(u16::from_le_bytes(stream.read_array::<2>(FORMAT)?)),
        2 | 3 => u64::from(u32::from_le_bytes(stream.read_array::<4>(FORMAT)?)),
        v => return Err(bad(stream, format!("unknown format version {v}"))),
    };
    if len > MAX_HEADER_BYTES {
        return Err(bad(
            stream,
            format!("header length {len} is over the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    let text = stream.read_header_bytes(len, FORMAT)?;
    let text = String::from_utf8(text).map_err(|_| bad(stream, "header is not UTF-8".into()))?;
    parse_dict(&text).map_err(|problem| bad(stream, problem))
}

fn bad(stream: &Stream<'_>, problem: String) -> DataError {
    DataError::BadHeader {
        format: FORMAT,
        problem,
        path: stream.path().to_path_buf(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A Python literal, as far as `.npy` headers use them.
#[derive(Debug, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(i128),
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
    None,
}

/// Parses the header dict into a [`Header`]; the error is a message for a person.
fn parse_dict(text: &str) -> Result<Header, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let lit = p.value(0)?;
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the dict at byte {}", p.i));
    }
    let Lit::Dict(entries) = lit else {
        return Err("header is not a dict".into());
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Lit::Str(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("missing key '{key}'"))
    };
    let descr = match get("descr")? {
        Lit::Str(s) => s.clone(),
        _ => {
            return Err(
                "'descr' is not a plain type string (structured arrays are not supported)".into(),
            );
        }
    };
    let fortran_order = match get("fortran_order")? {
        Lit::Bool(b) => *b,
        _ => return Err("'fortran_order' is not True or False".into()),
    };
    let shape = match get("shape")? {
        Lit::Seq(items) => items
            .iter()
            .map(|d| match d {
                Lit::Int(v) => {
                    u64::try_from(*v).map_err(|_| format!("dimension {v} is negative or too large"))
                }
                _ => Err("a dimension is not an integer".to_string()),
            })
            .collect::<Result<Vec<u64>, String>>()?,
        _ => return Err("'shape' is not a tuple".into()),
    };
    Ok(Header {
        dtype: parse_descr(&descr)?,
        shape,
        fortran_order,
    })
}

/// Parses a scalar type descriptor such as `<f4`, `|u1`, `>i8`.
fn parse_descr(descr: &str) -> Result<Dtype, String> {
    let b = descr.as_bytes();
    let (endian, rest) = match b.first() {
        Some(c @ (b'<' | b'>' | b'|' | b'=')) => (*c, &b[1..]),
        _ => (b'=', b),
    };
    let unsupported = || format!("type '{descr}' is not an integer or float scalar");
    let (kind, digits) = match rest.split_first() {
        Some((b'u', d)) => (Kind::Uint, d),
        Some((b'i', d)) => (Kind::Int, d),
        Some((b'f', d)) => (Kind::Float, d),
        _ => return Err(unsupported()),
    };
    let size = match digits {
        b"1" => 1,
        b"2" => 2,
        b"4" => 4,
        b"8" => 8,
        _ => return Err(unsupported()),
    };
    let big_endian = match endian {
        b'>' => true,
        b'=' => cfg!(target_endian = "big"),
        _ => false,
    };
    Ok(Dtype {
        kind,
        size,
        big_endian,
        descr: descr.to_string(),
    })
}

struct Parser<'s> {
    s: &'s [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(found) if found == c => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(format!("expected '{}' at byte {}", c as char, self.i)),
            None => Err(format!("header ends where '{}' was expected", c as char)),
        }
    }

    /// One literal. `depth` bounds the recursion so a hostile header cannot overflow the stack.
    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > 16 {
            return Err("literal nested too deeply".into());
        }
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                while self.peek() != Some(b'}') {
                    let key = self.value(depth + 1)?;
                    self.expect(b':')?;
                    entries.push((key, self.value(depth + 1)?));
                    if self.peek() != Some(b'}') {
                        self.expect(b',')?;
                    }
                }
                self.i += 1;
                Ok(Lit::Dict(entries))
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.i += 1;
                let mut items = Vec::new();
                while self.peek() != Some(close) {
                    items.push(self.value(depth + 1)?);
                    if self.peek() != Some(close) {
                        self.expect(b',')?;
                    }
                }
                self.i += 1;
                Ok(Lit::Seq(items))
            }
            Some(q @ (b'\'' | b'"')) => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.i) {
                        None => return Err("unterminated string".into()),
                        Some(b'\\') => {
                            out.extend(self.s.get(self.i + 1));
                            self.i += 2;
                        }
                        Some(&c) if c == q => {
                            self.i += 1;
                            break;
                        }
                        Some(&c) => {
                            out.push(c);
                            self.i += 1;
                        }
                    }
                }
                String::from_utf8(out)
                    .map(Lit::Str)
                    .map_err(|_| "string is not UTF-8".to_string())
            }
            Some(c) if c == b'-' || c == b'+' || c.is_ascii_digit() => {
                let start = self.i;
                self.i += 1;
                while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("?");
                let v = text
                    .parse::<i128>()
                    .map_err(|_| format!("integer '{text}' is invalid or too large"))?;
                // Python 2 wrote long integers with an `L` suffix.
                if matches!(self.s.get(self.i), Some(b'L' | b'l')) {
                    self.i += 1;
                }
                Ok(Lit::Int(v))
            }
            Some(_) => {
                for (word, lit) in [
                    ("True", Lit::Bool(true)),
                    ("False", Lit::Bool(false)),
                    ("None", Lit::None),
                ] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(lit);
                    }
                }
                Err(format!("unexpected character at byte {}", self.i))
            }
            None => Err("header ends inside a literal".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numpy_headers() {
        let h = parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }    \n")
            .unwrap();
        assert_eq!(h.shape, vec![2, 3, 4]);
        assert_eq!(
            (h.dtype.kind, h.dtype.size, h.dtype.big_endian),
            (Kind::Float, 4, false)
        );
        assert!(!h.fortran_order);
        let h =
            parse_dict("{\"shape\": (5L,), \"fortran_order\": True, \"descr\": \">i8\"}").unwrap();
        assert_eq!(h.shape, vec![5]);
        assert_eq!(
            (h.dtype.kind, h.dtype.size, h.dtype.big_endian),
            (Kind::Int, 8, true)
        );
        assert!(h.fortran_order);
        let h = parse_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (), }").unwrap();
        assert!(h.shape.is_empty());
    }

    #[test]
    fn rejects_bad_headers() {
        for (text, needle) in [
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }",
                "negative",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999999999999999999999, ), }",
                "too large",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, }",
                "missing key 'shape'",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                "structured",
            ),
            (
                "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }",
                "not an integer or float",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)",
                "header ends",
            ),
            ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "nested"),
        ] {
            let e = parse_dict(text).unwrap_err();
            assert!(e.contains(needle), "{text:?} gave {e:?}");
        }
    }
}
