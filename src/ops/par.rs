//! Small helpers for data-parallel loops over a batch, with a chunking that depends only on the
//! batch size (never on the thread count), so that reductions are reproducible bit for bit.

/// Images per parallel chunk for a batch of `n`: at most 16 chunks.
pub fn chunk_len(n: usize) -> usize {
    n.div_ceil(16).max(1)
}

/// Elementwise loops below this many elements run serially (threading costs more).
pub const PAR_MIN: usize = 1 << 15;
