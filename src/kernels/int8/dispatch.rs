//! Kernel descriptors and the one-time run-time choice of the int8 GEMM path.
//!
//! Each micro-kernel is a `static` [`MmmKernel`] named `{isa}_mmm_{types}_{mr}x{nr}`: it computes
//! one `mr x nr` s32 tile from a packed A micro-panel and a packed B micro-panel. The only way to
//! obtain a descriptor is [`KernelPath::kernel`], which checks the CPU first, so holding a
//! `&MmmKernel` means the CPU can execute it: that is the invariant the safe wrapper
//! [`MmmKernel::run_tile`] relies on.

use super::Int8Error;
use super::{amx, avx2, portable, vnni};
use std::sync::OnceLock;

/// The environment variable that forces a path: `portable`, `avx2`, `avxvnni`, `avx512vnni`,
/// `amx`, or `auto` (the default: the fastest available).
pub const KERNEL_ENV: &str = "QATLAS_KERNEL";

/// An instruction-set path of the int8 GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Plain Rust, any CPU; the reference every other path is tested against.
    Portable,
    /// AVX2: operands widened to s16 at packing, `vpmaddwd` + `vpaddd` (exact, no saturation).
    Avx2,
    /// AVX-VNNI (VEX-encoded `vpdpbusd` on ymm).
    AvxVnni,
    /// AVX-512 VNNI (`vpdpbusd` on zmm).
    Avx512Vnni,
    /// AMX-INT8 tiles (`tdpbusd` on 16x64-byte tiles; needs the Linux tile permission).
    Amx,
}

impl KernelPath {
    /// Every path, slowest first.
    pub const ALL: [KernelPath; 5] = [
        KernelPath::Portable,
        KernelPath::Avx2,
        KernelPath::AvxVnni,
        KernelPath::Avx512Vnni,
        KernelPath::Amx,
    ];

    /// The name used by `QATLAS_KERNEL` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2 => "avx2",
            KernelPath::AvxVnni => "avxvnni",
            KernelPath::Avx512Vnni => "avx512vnni",
            KernelPath::Amx => "amx",
        }
    }

    /// Parses a path name (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, Int8Error> {
        let l = s.trim().to_ascii_lowercase();
        KernelPath::ALL
            .into_iter()
            .find(|p| p.name() == l)
            .ok_or_else(|| Int8Error::UnknownPath {
                value: s.to_string(),
            })
    }

    /// Why this CPU cannot run the path, or `None` if it can.
    pub fn missing(self) -> Option<String> {
        #[cfg(target_arch = "x86_64")]
        {
            let lacks = |feats: &[(&str, bool)]| {
                let miss: Vec<&str> = feats.iter().filter(|f| !f.1).map(|f| f.0).collect();
                (!miss.is_empty()).then(|| format!("the CPU lacks {}", miss.join(", ")))
            };
            match self {
                KernelPath::Portable => None,
                KernelPath::Avx2 => lacks(&[("avx2", std::is_x86_feature_detected!("avx2"))]),
                KernelPath::AvxVnni => lacks(&[
                    ("avx2", std::is_x86_feature_detected!("avx2")),
                    ("avxvnni", std::is_x86_feature_detected!("avxvnni")),
                ]),
                KernelPath::Avx512Vnni => lacks(&[
                    ("avx512f", std::is_x86_feature_detected!("avx512f")),
                    ("avx512bw", std::is_x86_feature_detected!("avx512bw")),
                    ("avx512vnni", std::is_x86_feature_detected!("avx512vnni")),
                ]),
                KernelPath::Amx => {
                    // CPUID is a VM exit under a hypervisor (microseconds): read it once.
                    static DETECTED: OnceLock<amx::AmxSupport> = OnceLock::new();
                    let s = *DETECTED.get_or_init(amx::detect);
                    if s.present() {
                        amx::permission()
                            .err()
                            .map(|e| format!("Linux refused the AMX tile state: {e}"))
                    } else {
                        Some(format!("the CPU or OS lacks AMX-INT8: {s}"))
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self {
            KernelPath::Portable => None,
            _ => Some("not an x86_64 CPU".to_string()),
        }
    }

    /// Every micro-kernel of this path (the general one first, then weight-range-restricted
    /// variants), if the CPU can run the path.
    pub fn kernels(self) -> Result<Vec<&'static MmmKernel>, Int8Error> {
        let main = self.kernel()?;
        #[cfg(target_arch = "x86_64")]
        if self == KernelPath::Avx2 {
            return Ok(vec![
                main,
                &avx2::AVX2_MMM_U8S7I32_6X16,
                &avx2::AVX2_MMM_U8S5I32_6X16,
                &avx2::AVX2_MMM_U8S4I32_6X16,
            ]);
        }
        Ok(vec![main])
    }

    /// The kernel of this path for weights with `max |b| = b_abs`: the narrowest one that is
    /// exact for them (narrower kernels keep more in s16 and are faster).
    pub fn kernel_for_weights(self, b_abs: u32) -> Result<&'static MmmKernel, Int8Error> {
        let ks = self.kernels()?;
        let main = ks[0];
        Ok(ks
            .into_iter()
            .filter(|k| b_abs <= k.b_abs_max as u32)
            .min_by_key(|k| k.b_abs_max)
            .unwrap_or(main))
    }

    /// This path's micro-kernel, if the CPU can run it.
    pub fn kernel(self) -> Result<&'static MmmKernel, Int8Error> {
        if let Some(reason) = self.missing() {
            return Err(Int8Error::Unavailable {
                path: self.name(),
                reason,
            });
        }
        match self {
            KernelPath::Portable => Ok(&portable::PORTABLE_MMM_U8S8I32_4X16),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => Ok(&avx2::AVX2_MMM_U8S8I32_6X16),
            #[cfg(target_arch = "x86_64")]
            KernelPath::AvxVnni => Ok(&vnni::AVXVNNI_MMM_U8S8I32_6X16),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512Vnni => Ok(&vnni::AVX512VNNI_MMM_U8S8I32_8X32),
            #[cfg(target_arch = "x86_64")]
            KernelPath::Amx => Ok(&amx::AMX_MMM_U8S8I32_32X32),
            #[allow(unreachable_patterns)]
            _ => Err(Int8Error::Unavailable {
                path: self.name(),
                reason: "no kernel of this path for this architecture".into(),
            }),
        }
    }
}

/// How packed operands group the K dimension. Both formats hold 4 bytes per row (of A) or per
/// column (of B) per K group, so every micro-kernel broadcasts one A dword per row per group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackFormat {
    /// Two K values per group, each widened to s16 (A: u8 zero-extended, B: s8 sign-extended);
    /// consumed by `vpmaddwd`.
    K2I16,
    /// Four K values per group as bytes (A: u8, B: s8); consumed by `vpdpbusd`.
    K4I8,
}

impl PackFormat {
    /// K values per group.
    pub fn k_group(self) -> usize {
        match self {
            PackFormat::K2I16 => 2,
            PackFormat::K4I8 => 4,
        }
    }
}

/// A micro-kernel computing `C[mr, nr] (+)= A_panel · B_panel` in s32.
///
/// Raw contract (`tile`): `a` points at `mr` rows of `groups * 4` bytes each, `lda` bytes apart;
/// `b` at `groups * nr * 4` contiguous bytes; `c` at `mr` rows of `nr` s32, `ldc` elements
/// apart. With `accumulate` the tile is added to `c`, otherwise it overwrites it.
pub type TileFn = unsafe fn(
    groups: usize,
    a: *const u8,
    lda: usize,
    b: *const u8,
    c: *mut i32,
    ldc: usize,
    accumulate: bool,
);

/// Descriptor of one micro-kernel.
#[derive(Debug)]
pub struct MmmKernel {
    /// `{isa}_mmm_{types}_{mr}x{nr}`.
    pub name: &'static str,
    pub path: KernelPath,
    /// Rows of the s32 tile.
    pub mr: usize,
    /// Columns of the s32 tile.
    pub nr: usize,
    pub format: PackFormat,
    /// Packed K groups are padded with zeros to a multiple of this (AMX: 16, a whole tile of
    /// K; 1 elsewhere), so the GEMM hands the kernel whole tiles only.
    pub k_groups_multiple: usize,
    /// The largest |B| the kernel is exact for: 128 for every s8 weight; smaller for kernels that
    /// accumulate `vpmaddubsw` sums in s16 (only chosen for weights that fit, e.g. int4).
    pub b_abs_max: u8,
    pub(crate) tile: TileFn,
}

impl MmmKernel {
    /// Bytes of one packed B micro-panel per K group.
    pub fn b_group_bytes(&self) -> usize {
        self.nr * 4
    }

    /// Checks the A and B panels and strides of one tile call (programming errors: panics).
    fn check_panels(&self, groups: usize, a: &[u8], lda: usize, b: &[u8], ldc: usize) {
        debug_assert!(self.path.missing().is_none(), "{} unsupported", self.name);
        assert!(
            lda >= groups * 4 && ldc >= self.nr,
            "{}: strides",
            self.name
        );
        assert!(
            a.len() >= (self.mr - 1) * lda + groups * 4,
            "{}: A panel",
            self.name
        );
        assert!(b.len() >= groups * self.nr * 4, "{}: B panel", self.name);
    }

    /// Safe wrapper of the micro-kernel: checks every slice bound the kernel touches.
    #[allow(clippy::too_many_arguments)]
    pub fn run_tile(
        &self,
        groups: usize,
        a: &[u8],
        lda: usize,
        b: &[u8],
        c: &mut [i32],
        ldc: usize,
        accumulate: bool,
    ) {
        self.check_panels(groups, a, lda, b, ldc);
        assert!(
            c.len() >= (self.mr - 1) * ldc + self.nr,
            "{}: C tile",
            self.name
        );
        // SAFETY: the bounds checked by `check_panels` and the C check above cover every byte the raw contract reads and every s32 it
        // writes; `c` is a unique borrow so it aliases neither input; the descriptor came from
        // `KernelPath::kernel`, which checked that the CPU has the kernel's instruction set.
        unsafe {
            (self.tile)(
                groups,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                c.as_mut_ptr(),
                ldc,
                accumulate,
            )
        }
    }
}

impl MmmKernel {
    /// [`Self::run_tile`] writing to a raw C tile: A and B bounds are checked, C's are the
    /// caller's.
    ///
    /// SAFETY contract: `c` points at `mr` rows of `nr` writable s32, `ldc` elements apart,
    /// that nothing else reads or writes during the call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn run_tile_ptr(
        &self,
        groups: usize,
        a: &[u8],
        lda: usize,
        b: &[u8],
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        self.check_panels(groups, a, lda, b, ldc);
        // SAFETY: A and B bounds checked by `check_panels`, C by the caller's contract; the descriptor's
        // instruction set was checked by `KernelPath::kernel`.
        unsafe { (self.tile)(groups, a.as_ptr(), lda, b.as_ptr(), c, ldc, accumulate) }
    }
}

/// The fastest path this CPU can run.
pub fn best_available_kernel() -> &'static MmmKernel {
    [
        KernelPath::Amx,
        KernelPath::Avx512Vnni,
        KernelPath::AvxVnni,
        KernelPath::Avx2,
    ]
    .into_iter()
    .find_map(|p| p.kernel().ok())
    .unwrap_or(&portable::PORTABLE_MMM_U8S8I32_4X16)
}

/// The kernel for a `QATLAS_KERNEL` value: `None`, empty or `auto` picks the fastest available;
/// a path name forces it, or fails saying what this machine lacks.
pub fn select_kernel(forced: Option<&str>) -> Result<&'static MmmKernel, Int8Error> {
    match forced.map(str::trim) {
        None | Some("") => Ok(best_available_kernel()),
        Some(s) if s.eq_ignore_ascii_case("auto") => Ok(best_available_kernel()),
        Some(s) => KernelPath::parse(s)?.kernel(),
    }
}

/// The kernel this process uses, chosen once from the CPU and `QATLAS_KERNEL`.
pub fn selected_kernel() -> Result<&'static MmmKernel, Int8Error> {
    static SELECTED: OnceLock<Result<&'static MmmKernel, Int8Error>> = OnceLock::new();
    SELECTED
        .get_or_init(|| select_kernel(std::env::var(KERNEL_ENV).ok().as_deref()))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forcing_paths() {
        assert_eq!(
            select_kernel(Some("portable")).unwrap().path,
            KernelPath::Portable
        );
        assert_eq!(
            select_kernel(Some("auto")).unwrap().name,
            best_available_kernel().name
        );
        assert!(matches!(
            select_kernel(Some("sse9")),
            Err(Int8Error::UnknownPath { .. })
        ));
        match select_kernel(Some("AMX")) {
            Ok(k) => assert_eq!(k.path, KernelPath::Amx),
            Err(e) => assert!(e.to_string().contains("amx"), "{e}"),
        }
        for p in KernelPath::ALL {
            match p.kernel() {
                Ok(k) => assert_eq!(k.path, p),
                Err(e) => assert!(p.missing().is_some(), "{e}"),
            }
        }
    }
}
