//! Operand packing.
//!
//! **B (weights), once**, panel by panel of `nr` columns; inside a panel, K group by K group;
//! inside a group, column by column, 4 bytes per column (format K2I16: `b[2g][j], b[2g+1][j]`
//! as two little-endian s16; format K4I8: `b[4g..4g+4][j]` as four s8). K is zero-padded to a
//! whole group (and to the kernel's `k_groups_multiple`: a whole 16-group tile for AMX) and N to
//! a whole panel, so a kernel always reads full groups and full panels.
//! Column sums of B (for the zero-point compensation) are computed at the same time.
//!
//! **A (activations), per call**, by the driver: a block of rows × one K slice, row-major with
//! the same 4-bytes-per-group rows (K2I16: each u8 zero-extended to s16; K4I8: bytes copied),
//! rows padded with zeros up to a multiple of `mr`.

use super::dispatch::{MmmKernel, PackFormat, selected_kernel};
use super::int4::{self, Int4Kind};
use super::{Int8Error, KernelPath};

/// 64-byte-aligned byte storage (one cache line per element).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u8; 64]);

/// A growable, 64-byte-aligned byte buffer.
#[derive(Clone, Default)]
pub(crate) struct AlignedBytes {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBytes {
    /// A zeroed buffer of `len` bytes.
    pub(crate) fn zeroed(len: usize) -> Self {
        Self {
            lines: vec![Line([0; 64]); len.div_ceil(64)],
            len,
        }
    }
    /// Grows (never shrinks) the capacity to at least `len` bytes and sets the length; contents
    /// are unspecified (previous data or zeros).
    pub(crate) fn resize(&mut self, len: usize) {
        let need = len.div_ceil(64);
        if self.lines.len() < need {
            self.lines.resize(need, Line([0; 64]));
        }
        self.len = len;
    }
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `lines` holds at least `len` initialised bytes (each Line is 64 plain bytes,
        // `repr(C)` with no padding), and the borrow of `self` keeps them alive and unaliased.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const u8, self.len) }
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, with a unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut u8, self.len) }
    }
}

/// How a weight matrix is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    /// `K x N` row-major: element (k, n) at `k * N + n`.
    KxN,
    /// `N x K` row-major (PyTorch Linear / flattened Conv weights): element (k, n) at `n * K + k`.
    NxK,
}

/// Weight values to pack.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    /// One s8 per element.
    S8(&'a [i8]),
    /// Two int4 per byte, low nibble first (see [`super::int4`]).
    Int4 { data: &'a [u8], kind: Int4Kind },
}

impl Weights<'_> {
    /// `max |b|` over all weights (0 when empty).
    pub fn abs_max(&self) -> u32 {
        match *self {
            Weights::S8(b) => b
                .iter()
                .map(|&v| v.unsigned_abs() as u32)
                .max()
                .unwrap_or(0),
            Weights::Int4 { kind, .. } => {
                let (lo, hi) = kind.range();
                lo.unsigned_abs().max(hi.unsigned_abs()) as u32
            }
        }
    }
}

/// A weight matrix `B[K, N]` packed for one micro-kernel, with its column sums and per-column
/// zero points (default 0).
#[derive(Clone)]
pub struct PackedB {
    pub(crate) kernel: &'static MmmKernel,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) groups: usize,
    pub(crate) panels: usize,
    pub(crate) data: AlignedBytes,
    pub(crate) col_sums: Vec<i32>,
    pub(crate) zero_points: Vec<i32>,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedB")
            .field("kernel", &self.kernel.name)
            .field("k", &self.k)
            .field("n", &self.n)
            .finish()
    }
}

impl PackedB {
    /// Packs s8 weights for the process's selected path, with the fastest of its kernels that
    /// is exact for these weights' range.
    pub fn new(b: &[i8], k: usize, n: usize, layout: BLayout) -> Result<Self, Int8Error> {
        Self::pack_auto(Weights::S8(b), k, n, layout)
    }

    fn pack_auto(w: Weights<'_>, k: usize, n: usize, layout: BLayout) -> Result<Self, Int8Error> {
        let path = selected_kernel()?.path;
        let kernel = path.kernel_for_weights(w.abs_max())?;
        Self::pack(kernel, w, k, n, layout)
    }

    /// Packs int4 weights (two per byte, low nibble first) for the selected kernel.
    pub fn from_int4(
        data: &[u8],
        kind: Int4Kind,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> Result<Self, Int8Error> {
        Self::pack_auto(Weights::Int4 { data, kind }, k, n, layout)
    }

    /// Packs weights for a given kernel (see [`KernelPath::kernel`]).
    pub fn pack(
        kernel: &'static MmmKernel,
        w: Weights<'_>,
        k: usize,
        n: usize,
        layout: BLayout,
    ) -> Result<Self, Int8Error> {
        let count = k * n;
        let (len, expected) = match w {
            Weights::S8(b) => (b.len(), count),
            Weights::Int4 { data, .. } => (data.len(), int4::packed_len(count)),
        };
        if len != expected {
            return Err(Int8Error::Length {
                what: "weights",
                expected,
                found: len,
            });
        }
        if kernel.b_abs_max < 128 {
            let found = w.abs_max();
            if found > kernel.b_abs_max as u32 {
                return Err(Int8Error::WeightRange {
                    kernel: kernel.name,
                    max: kernel.b_abs_max,
                    found,
                });
            }
        }
        let at = |kk: usize, nn: usize| -> i8 {
            let idx = match layout {
                BLayout::KxN => kk * n + nn,
                BLayout::NxK => nn * k + kk,
            };
            match w {
                Weights::S8(b) => b[idx],
                Weights::Int4 { data, kind } => int4::get(data, idx, kind),
            }
        };
        let kg = kernel.format.k_group();
        let groups = k
            .div_ceil(kg)
            .next_multiple_of(kernel.k_groups_multiple.max(1));
        let (nr, panels) = (kernel.nr, n.div_ceil(kernel.nr));
        let panel_bytes = groups * nr * 4;
        let mut data = AlignedBytes::zeroed(panels * panel_bytes);
        let mut col_sums = vec![0i32; n];
        let buf = data.as_mut_slice();
        for (j, col_sum) in col_sums.iter_mut().enumerate() {
            let (p, jj) = (j / nr, j % nr);
            for kk in 0..k {
                let v = at(kk, j);
                *col_sum = col_sum.wrapping_add(v as i32);
                let (g, t) = (kk / kg, kk % kg);
                let base = p * panel_bytes + g * nr * 4 + jj * 4;
                match kernel.format {
                    PackFormat::K2I16 => {
                        buf[base + 2 * t..base + 2 * t + 2]
                            .copy_from_slice(&(v as i16).to_le_bytes());
                    }
                    PackFormat::K4I8 => buf[base + t] = v as u8,
                }
            }
        }
        Ok(Self {
            kernel,
            k,
            n,
            groups,
            panels,
            data,
            col_sums,
            zero_points: vec![0; n],
        })
    }

    /// Sets the weight zero point(s): one value (per tensor) or one per output column.
    pub fn with_zero_points(mut self, zp: &[i32]) -> Result<Self, Int8Error> {
        self.zero_points = match zp.len() {
            1 => vec![zp[0]; self.n],
            l if l == self.n => zp.to_vec(),
            found => {
                return Err(Int8Error::PerColumn {
                    what: "weight zero points",
                    n: self.n,
                    found,
                });
            }
        };
        Ok(self)
    }

    /// Rows of B (the GEMM's K).
    pub fn k(&self) -> usize {
        self.k
    }
    /// Columns of B (the GEMM's N).
    pub fn n(&self) -> usize {
        self.n
    }
    /// The micro-kernel this was packed for.
    pub fn kernel(&self) -> &'static MmmKernel {
        self.kernel
    }
    /// The path of that kernel.
    pub fn path(&self) -> KernelPath {
        self.kernel.path
    }
    /// `Σ_k B[k, j]` for each column.
    pub fn col_sums(&self) -> &[i32] {
        &self.col_sums
    }
    /// Per-column weight zero points.
    pub fn zero_points(&self) -> &[i32] {
        &self.zero_points
    }
    /// Bytes held by the packed panels.
    pub fn packed_bytes(&self) -> usize {
        self.data.as_slice().len()
    }

    /// Packed bytes of panel `p`, K groups `g0..g0 + gl`.
    pub(crate) fn panel(&self, p: usize, g0: usize, gl: usize) -> &[u8] {
        debug_assert!(p < self.panels && g0 + gl <= self.groups);
        let gb = self.kernel.nr * 4;
        let start = p * self.groups * gb + g0 * gb;
        &self.data.as_slice()[start..start + gl * gb]
    }
}

/// `dst` (little-endian s16 bytes) = `src` zero-extended; `dst.len() == 2 * src.len()`. Written
/// so the compiler vectorises it (`vpmovzxbw` in the AVX2 build).
#[inline(always)]
pub(crate) fn widen_u8(src: &[u8], dst: &mut [u8]) {
    for (d, &s) in dst.chunks_exact_mut(2).zip(src) {
        d[0] = s;
        d[1] = 0;
    }
}

/// Packs rows `i0..i0 + rows` of the row-major `m x k` matrix `a`, K values `k0..k0 + kl`, into
/// `dst`: `rows_padded` rows of `lda_p` bytes (zero padding past `kl` and past `rows`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_a_block(
    format: PackFormat,
    a: &[u8],
    k: usize,
    i0: usize,
    rows: usize,
    rows_padded: usize,
    k0: usize,
    kl: usize,
    lda_p: usize,
    dst: &mut [u8],
) {
    let use_avx2 = avx2_available();
    for r in 0..rows_padded {
        let d = &mut dst[r * lda_p..(r + 1) * lda_p];
        if r >= rows {
            d.fill(0);
            continue;
        }
        let src = &a[(i0 + r) * k + k0..(i0 + r) * k + k0 + kl];
        let used = match format {
            PackFormat::K2I16 => {
                let d = &mut d[..2 * kl];
                #[cfg(target_arch = "x86_64")]
                if use_avx2 {
                    // SAFETY: AVX2 presence was checked by `avx2_available`.
                    unsafe { super::avx2::widen_u8_avx2(src, d) };
                } else {
                    widen_u8(src, d);
                }
                #[cfg(not(target_arch = "x86_64"))]
                widen_u8(src, d);
                2 * kl
            }
            PackFormat::K4I8 => {
                d[..kl].copy_from_slice(src);
                kl
            }
        };
        d[used..].fill(0);
    }
    let _ = use_avx2;
}

/// Whether AVX2 builds of the helper loops may run (cached by std's detection).
#[inline]
pub(crate) fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
