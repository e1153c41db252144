//! Small helpers for data-parallel loops over a batch, with a chunking that depends only on the
//! batch size (never on the thread count), so that reductions are reproducible bit for bit.

/// Images per parallel chunk for a batch of `n`: at most 16 chunks.
pub fn chunk_len(n: usize) -> usize {
    n.div_ceil(16).max(1)
}

/// Elementwise loops below this many elements run serially (threading costs more).
pub const PAR_MIN: usize = 1 << 15;

/// Sum of a slice with eight independent partial sums, so the compiler can vectorise it (a plain
/// `iter().sum()` of floats is a serial dependency chain). The order is fixed, hence reproducible.
pub fn fast_sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let tail: f32 = rest.iter().sum();
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

#[cfg(test)]
mod tests {
    #[test]
    fn fast_sum_matches_exact_sum() {
        for n in [0usize, 1, 7, 8, 9, 100, 1001] {
            let x: Vec<f32> = (0..n).map(|i| (i % 17) as f32 * 0.25 - 2.0).collect();
            let exact: f64 = x.iter().map(|&v| v as f64).sum();
            assert!((super::fast_sum(&x) as f64 - exact).abs() < 1e-3, "n={n}");
        }
    }
}
