//! Single-precision GEMM `C = A·B` (or `C += A·B`) on strided matrices.
//!
//! Two backends, chosen process-wide: [`FloatBackend::Gemm`] (the `gemm` crate: packed, blocked,
//! picks AVX2/FMA or AVX-512 at run time) and [`FloatBackend::MatrixMultiply`] (the crate behind
//! `ndarray::dot`, kept as the baseline that benchmarks compare against). Both are wrapped in one
//! safe function that checks every index the kernel can touch before calling into it.

use std::sync::atomic::{AtomicU8, Ordering};

/// Below this many multiply-accumulates a GEMM runs on the calling thread.
const PAR_MIN_MACS: usize = 1 << 20;

/// Which float GEMM implementation the engine calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatBackend {
    /// The `gemm` crate (default).
    Gemm,
    /// `matrixmultiply`, ndarray's default `dot` kernel: the benchmark baseline.
    MatrixMultiply,
}

static BACKEND: AtomicU8 = AtomicU8::new(0);

/// Selects the float GEMM backend for the whole process.
pub fn set_float_backend(b: FloatBackend) {
    BACKEND.store(
        match b {
            FloatBackend::Gemm => 0,
            FloatBackend::MatrixMultiply => 1,
        },
        Ordering::Relaxed,
    );
}

/// The float GEMM backend in use.
pub fn float_backend() -> FloatBackend {
    match BACKEND.load(Ordering::Relaxed) {
        1 => FloatBackend::MatrixMultiply,
        _ => FloatBackend::Gemm,
    }
}

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

/// A mutable strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major `rows x cols` matrix, seen as `cols x rows`.
    pub fn row_major_t(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows: cols,
            cols: rows,
            rs: 1,
            cs: cols,
        }
    }
    fn fits(&self) -> bool {
        fits(self.data.len(), self.rows, self.cols, self.rs, self.cs)
    }
}

impl<'a> MatMut<'a> {
    /// Row-major `rows x cols` matrix.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    fn fits(&self) -> bool {
        fits(self.data.len(), self.rows, self.cols, self.rs, self.cs)
    }
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|r| (cols - 1).checked_mul(cs).and_then(|c| r.checked_add(c)));
    matches!(last, Some(l) if l < len)
}

/// `c = a·b` (or `c += a·b` when `accumulate`). `parallel` lets the kernel split the work over the
/// rayon pool; leave it off when the caller already runs in parallel.
///
/// Panics if the shapes disagree or a view does not fit its slice: both are programming errors,
/// never a consequence of user data (ops validate shapes before calling).
pub fn sgemm(a: MatRef<'_>, b: MatRef<'_>, c: MatMut<'_>, accumulate: bool, parallel: bool) {
    assert_eq!(a.cols, b.rows, "sgemm inner dimensions");
    assert_eq!(a.rows, c.rows, "sgemm rows");
    assert_eq!(b.cols, c.cols, "sgemm cols");
    assert!(a.fits() && b.fits() && c.fits(), "sgemm view out of bounds");
    let (m, n, k) = (c.rows, c.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c.data[i * c.rs + j * c.cs] = 0.0;
                }
            }
        }
        return;
    }
    match float_backend() {
        FloatBackend::Gemm => {
            // As the int8 GEMM: below ~1M multiply-adds the threads cost more than they save,
            // and a thread the OS has descheduled stalls the whole product.
            let par = if parallel && m * n * k >= PAR_MIN_MACS {
                gemm::Parallelism::Rayon(rayon::current_num_threads())
            } else {
                gemm::Parallelism::None
            };
            // SAFETY: `fits` checked that every (i, j) index of each view, with its strides, lies
            // inside its slice; the destination is a unique `&mut` borrow, so it aliases neither
            // input. Strides are below isize::MAX because they index into live slices.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.data.as_mut_ptr(),
                    c.cs as isize,
                    c.rs as isize,
                    accumulate,
                    a.data.as_ptr(),
                    a.cs as isize,
                    a.rs as isize,
                    b.data.as_ptr(),
                    b.cs as isize,
                    b.rs as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
        FloatBackend::MatrixMultiply => {
            let beta = if accumulate { 1.0 } else { 0.0 };
            // SAFETY: as above, every index the kernel touches was checked by `fits`, and the
            // destination does not alias the inputs.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.data.as_ptr(),
                    a.rs as isize,
                    a.cs as isize,
                    b.data.as_ptr(),
                    b.rs as isize,
                    b.cs as isize,
                    beta,
                    c.data.as_mut_ptr(),
                    c.rs as isize,
                    c.cs as isize,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn both_backends_match_naive_including_transposed_views() {
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 7), (17, 33, 65), (70, 9, 130)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
                .collect();
            let want = naive(m, n, k, &a, &b);
            // b stored transposed (n x k row-major) and viewed as k x n.
            let mut bt = vec![0.0; k * n];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            for backend in [FloatBackend::Gemm, FloatBackend::MatrixMultiply] {
                set_float_backend(backend);
                let mut c = vec![1.0; m * n];
                sgemm(
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major_t(&bt, n, k),
                    MatMut::row_major(&mut c, m, n),
                    true,
                    true,
                );
                for (x, w) in c.iter().zip(&want) {
                    assert!(
                        (x - (w + 1.0)).abs() < 1e-3 * (1.0 + w.abs()),
                        "{backend:?} {x} {w}"
                    );
                }
            }
            set_float_backend(FloatBackend::Gemm);
        }
    }
}
