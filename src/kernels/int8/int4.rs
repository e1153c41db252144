//! int4 weight storage: two values per byte, **low nibble first** — element `2i` is bits 0..3 of
//! byte `i`, element `2i + 1` bits 4..7; an odd count leaves the last high nibble 0. Elements are
//! counted in the matrix's storage order (row-major over its [`super::BLayout`]).
//! [`super::PackedB::from_int4`] unpacks them while packing B, so the GEMM runs on the same s8
//! (or s16) panels as int8 weights.

/// How a nibble is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int4Kind {
    /// Two's complement, -8..=7.
    S4,
    /// Unsigned, 0..=15.
    U4,
}

impl Int4Kind {
    /// `(min, max)` of the values.
    pub fn range(self) -> (i8, i8) {
        match self {
            Int4Kind::S4 => (-8, 7),
            Int4Kind::U4 => (0, 15),
        }
    }
}

/// Bytes needed for `count` int4 values.
pub fn packed_len(count: usize) -> usize {
    count.div_ceil(2)
}

/// Packs values (each within `kind`'s range, else `None`) two per byte, low nibble first.
pub fn pack(values: &[i8], kind: Int4Kind) -> Option<Vec<u8>> {
    let (lo, hi) = kind.range();
    if values.iter().any(|&v| v < lo || v > hi) {
        return None;
    }
    Some(
        values
            .chunks(2)
            .map(|p| (p[0] as u8 & 0x0f) | (p.get(1).map_or(0, |&v| v as u8 & 0x0f) << 4))
            .collect(),
    )
}

/// Element `i` of packed int4 data.
#[inline]
pub fn get(data: &[u8], i: usize, kind: Int4Kind) -> i8 {
    let nib = (data[i / 2] >> ((i & 1) * 4)) & 0x0f;
    match kind {
        Int4Kind::S4 => ((nib << 4) as i8) >> 4,
        Int4Kind::U4 => nib as i8,
    }
}

/// Unpacks `count` values.
pub fn unpack(data: &[u8], count: usize, kind: Int4Kind) -> Vec<i8> {
    (0..count).map(|i| get(data, i, kind)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_order_and_sign() {
        // -1 = 0xF (low), 7 = 0x7 (high) -> 0x7F; -8 = 0x8 alone -> 0x08.
        assert_eq!(pack(&[-1, 7, -8], Int4Kind::S4).unwrap(), vec![0x7f, 0x08]);
        assert_eq!(unpack(&[0x7f, 0x08], 3, Int4Kind::S4), vec![-1, 7, -8]);
        assert_eq!(unpack(&[0x7f], 2, Int4Kind::U4), vec![15, 7]);
        assert!(pack(&[8], Int4Kind::S4).is_none());
        assert!(pack(&[-1], Int4Kind::U4).is_none());
    }
}
