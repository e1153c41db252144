//! Per-thread scratch buffers, reused across calls so that hot loops (im2col columns, gathered
//! gradients, GEMM outputs) neither allocate nor zero megabytes on every training step.

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<[Vec<f32>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Runs `f` with three buffers of at least the given lengths, taken from this thread's scratch.
/// Their contents are unspecified (left over from earlier calls): callers overwrite what they
/// read. Re-entrant calls get fresh buffers.
pub fn with_scratch<R>(
    lens: [usize; 3],
    f: impl FnOnce(&mut [f32], &mut [f32], &mut [f32]) -> R,
) -> R {
    let taken = SCRATCH.with(|s| s.try_borrow_mut().ok().map(|mut s| std::mem::take(&mut *s)));
    let mut bufs = taken.unwrap_or_default();
    for (b, &n) in bufs.iter_mut().zip(&lens) {
        if b.len() < n {
            b.resize(n, 0.0);
        }
    }
    let [a, b, c] = &mut bufs;
    let r = f(&mut a[..lens[0]], &mut b[..lens[1]], &mut c[..lens[2]]);
    SCRATCH.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            *s = bufs;
        }
    });
    r
}
