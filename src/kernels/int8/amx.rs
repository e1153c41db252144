//! AMX-INT8: detection, the per-process permission, and the tile micro-kernel
//! `amx_mmm_u8s8i32_32x32`.
//!
//! AMX-INT8 is usable only when all of these hold: CPUID leaf 7 (sub-leaf 0) EDX bit 24
//! (AMX-TILE) and bit 25 (AMX-INT8); the OS enabled the tile state in XCR0 (bits 17 XTILECFG and
//! 18 XTILEDATA, read with XGETBV once CPUID.1:ECX.OSXSAVE[27] says XGETBV is allowed); and on
//! Linux the process asked for the tile data state with `arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023,
//! XFEATURE_XTILEDATA = 18)`, without which the first tile instruction raises SIGILL.

/// What the CPU and OS say about AMX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmxSupport {
    /// CPUID.(7,0):EDX[24].
    pub tile: bool,
    /// CPUID.(7,0):EDX[25].
    pub int8: bool,
    /// XCR0 bits 17 and 18 both set.
    pub os_enabled: bool,
}

impl AmxSupport {
    /// Whether CPU and OS both support AMX-INT8 (permission still to be requested).
    pub fn present(&self) -> bool {
        self.tile && self.int8 && self.os_enabled
    }
}

impl std::fmt::Display for AmxSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.present() {
            return write!(f, "AMX-TILE and AMX-INT8 present, enabled by the OS");
        }
        write!(
            f,
            "absent (CPUID AMX-TILE {}, AMX-INT8 {}, XCR0 tile state {})",
            yes(self.tile),
            yes(self.int8),
            yes(self.os_enabled)
        )
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Reads CPUID and XCR0. Never changes anything. (Under Miri, which runs no inline assembly and
/// no AMX, the answer is "absent".)
pub fn detect() -> AmxSupport {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        use std::arch::x86_64::__cpuid_count;
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86_64 CPU and has no side effects.
        let (max_leaf, leaf1, leaf7) = unsafe {
            let l0 = __cpuid_count(0, 0).eax;
            let l1 = __cpuid_count(1, 0);
            let l7 = if l0 >= 7 {
                Some(__cpuid_count(7, 0))
            } else {
                None
            };
            (l0, l1, l7)
        };
        let _ = max_leaf;
        let (tile, int8) = leaf7.map_or((false, false), |r| {
            (r.edx & (1 << 24) != 0, r.edx & (1 << 25) != 0)
        });
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        let xcr0 = if osxsave {
            // SAFETY: OSXSAVE says the OS allows XGETBV; XCR0 (index 0) always exists then.
            unsafe { read_xcr0() }
        } else {
            0
        };
        let os_enabled = xcr0 & (1 << 17) != 0 && xcr0 & (1 << 18) != 0;
        AmxSupport {
            tile,
            int8,
            os_enabled,
        }
    }
    #[cfg(any(not(target_arch = "x86_64"), miri))]
    AmxSupport {
        tile: false,
        int8: false,
        os_enabled: false,
    }
}

/// SAFETY contract: CPUID.1:ECX.OSXSAVE is set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn read_xcr0() -> u64 {
    // SAFETY: by the contract XGETBV is enabled; register 0 is XCR0.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

/// `ARCH_REQ_XCOMP_PERM`.
pub const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
/// `XFEATURE_XTILEDATA`.
pub const XFEATURE_XTILEDATA: u64 = 18;

/// [`request_permission`], asked once per process; later calls return the first answer.
pub fn permission() -> Result<(), String> {
    static ASKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ASKED.get_or_init(request_permission).clone()
}

/// Asks Linux for permission to use the AMX tile data state (needed once per process before
/// any tile instruction). Returns the negative errno on refusal; an error without asking when
/// [`detect`] says AMX is absent.
pub fn request_permission() -> Result<(), String> {
    let s = detect();
    if !s.present() {
        return Err(format!("not requested: AMX {s}"));
    }
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        let ret = arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
        if ret == 0 {
            Ok(())
        } else {
            Err(format!(
                "arch_prctl(ARCH_REQ_XCOMP_PERM, 18) failed: errno {}",
                -ret
            ))
        }
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    Err("AMX permission is requested only on Linux".into())
}

/// The raw `arch_prctl` system call (number 158 on x86_64 Linux).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn arch_prctl(code: u64, arg: u64) -> i64 {
    let ret: i64;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes the permitted xstate of this
    // process (or fails with an errno); the syscall clobbers rcx and r11, declared below, and
    // touches no memory of ours.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") code,
            in("rsi") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "x86_64")]
pub(crate) use tiles::{AMX_MMM_U8S8I32_32X32, peak_loop};

/// The tile micro-kernel. Format K4I8 is already AMX's operand layout: a row of the packed A
/// block holds K bytes in order (an A tile row is 64 of them, 16 K groups), and a B micro-panel
/// holds, per K group, `nr` columns of 4 bytes (a B tile row is one group of 16 columns: the
/// "VNNI" layout `tdpbusd` expects). So tiles load straight from the driver's panels with the
/// panel strides, and a 32x32 s32 block of C is four accumulator tiles (tmm0..3) fed by two A
/// tiles (tmm4, tmm5) and two B tiles (tmm6, tmm7): four `tdpbusd` per 16 K groups. A K tail of
/// fewer than 16 groups is copied into zero-padded tiles on the stack, so the tile shape (16
/// rows x 64 bytes everywhere) is configured once per call and never changes.
#[cfg(target_arch = "x86_64")]
mod tiles {
    use crate::kernels::int8::dispatch::{KernelPath, MmmKernel, PackFormat};
    use std::arch::asm;

    /// AMX-INT8 micro-kernel (format K4I8).
    pub static AMX_MMM_U8S8I32_32X32: MmmKernel = MmmKernel {
        name: "amx_mmm_u8s8i32_32x32",
        path: KernelPath::Amx,
        mr: 32,
        nr: 32,
        format: PackFormat::K4I8,
        k_groups_multiple: 16,
        b_abs_max: 128,
        tile: amx_mmm_u8s8i32_32x32,
    };

    /// The `ldtilecfg` operand: palette 1, tiles 0..7 all 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    static CONFIG: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = 16;
            t += 1;
        }
        TileConfig(c)
    };

    thread_local! {
        /// Whether this thread's tile configuration is `CONFIG` (it stays loaded: nothing
        /// else in the process configures tiles, and the kernel saves and restores it across
        /// context switches with the rest of the extended state).
        static CONFIGURED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Loads `CONFIG` into the tile configuration once per thread.
    ///
    /// SAFETY contract: AMX present and the tile data permission granted.
    #[inline(always)]
    unsafe fn configure() {
        if !CONFIGURED.get() {
            // SAFETY: `CONFIG` is a valid palette-1 configuration; by the contract the
            // instruction is allowed.
            unsafe { asm!("ldtilecfg [{cfg}]", cfg = in(reg) &CONFIG, options(nostack, readonly)) };
            CONFIGURED.set(true);
        }
    }

    /// 64-byte aligned stack scratch for a K tail.
    #[repr(C, align(64))]
    struct Tail<const N: usize>([u8; N]);

    /// One K step of 16 groups: loads A rows 0..16 and 16..32 (`a0`, `a1`, stride `lda`), B
    /// columns 0..16 and 16..32 (`b`, `b + 64`, stride `ldb`) and accumulates the four products.
    ///
    /// SAFETY contract: tiles configured by `CONFIG`; `a0`/`a1` point at 16 rows of 64
    /// readable bytes `lda` apart, `b` at 16 rows of 128 readable bytes `ldb` apart.
    #[inline(always)]
    unsafe fn step(a0: *const u8, a1: *const u8, lda: usize, b: *const u8, ldb: usize) {
        // SAFETY: by the contract every byte the four tile loads read is readable; tile
        // registers are not used by compiled code, only by these asm blocks.
        unsafe {
            asm!(
                // Loads interleaved with the products so that each load overlaps a product
                // that does not read the tile being loaded (tiles are not renamed).
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {ldb}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {ldb}*1]",
                "tdpbusd tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {lda}*1]",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a0 = in(reg) a0,
                a1 = in(reg) a1,
                lda = in(reg) lda,
                b0 = in(reg) b,
                b1 = in(reg) b.add(64),
                ldb = in(reg) ldb,
                options(nostack, readonly, preserves_flags),
            );
        }
    }

    /// `n` rounds of 4 independent `tdpbusd` on zeroed tiles (the measured peak of the path);
    /// returns the ops done. Leaves the thread's tiles configured with `CONFIG`.
    ///
    /// SAFETY contract: AMX present and the tile data permission granted.
    pub(crate) unsafe fn peak_loop(n: u64) -> f64 {
        let n = n.max(1);
        // SAFETY: tile instructions on register tiles only, configured first; CPU support and
        // permission are the caller's contract.
        unsafe {
            configure();
            asm!(
                "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                "tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7",
                "2:",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) n => _,
                options(nostack, nomem),
            );
        }
        n as f64 * 4.0 * (16.0 * 16.0 * 64.0) * 2.0
    }

    /// SAFETY contract: the raw micro-kernel contract of `TileFn`, on a CPU with AMX-TILE and
    /// AMX-INT8 whose tile data permission this process holds (`KernelPath::Amx.kernel()`
    /// checks both).
    unsafe fn amx_mmm_u8s8i32_32x32(
        groups: usize,
        a: *const u8,
        lda: usize,
        b: *const u8,
        c: *mut i32,
        ldc: usize,
        accumulate: bool,
    ) {
        const LDB: usize = 32 * 4;
        let ldc_bytes = ldc * 4;
        // SAFETY: A rows r < 32 at `a + r*lda` hold `4*groups` bytes, B holds `groups*128`
        // bytes, C rows r < 32 at `c + r*ldc` hold 32 s32 (the TileFn contract): every full
        // step reads A bytes `64s..64s+64` of each row and B bytes `2048s..2048s+2048`; the
        // tail copies only the remaining valid bytes; the stores write C's 32x32 rectangle.
        unsafe {
            configure();
            let (c1, c2, c3) = (c.add(16), c.add(16 * ldc), c.add(16 * ldc + 16));
            if accumulate {
                asm!(
                    "tileloadd tmm0, [{c0} + {s}*1]",
                    "tileloadd tmm1, [{c1} + {s}*1]",
                    "tileloadd tmm2, [{c2} + {s}*1]",
                    "tileloadd tmm3, [{c3} + {s}*1]",
                    c0 = in(reg) c, c1 = in(reg) c1, c2 = in(reg) c2, c3 = in(reg) c3,
                    s = in(reg) ldc_bytes,
                    options(nostack, readonly, preserves_flags),
                );
            } else {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem, preserves_flags),
                );
            }
            let steps = groups / 16;
            for s in 0..steps {
                let (a0, bs) = (a.add(s * 64), b.add(s * 16 * LDB));
                step(a0, a0.add(16 * lda), lda, bs, LDB);
            }
            let rem = groups % 16;
            if rem > 0 {
                let mut at = Tail([0u8; 32 * 64]);
                let mut bt = Tail([0u8; 16 * LDB]);
                for r in 0..32 {
                    std::ptr::copy_nonoverlapping(
                        a.add(r * lda + steps * 64),
                        at.0.as_mut_ptr().add(r * 64),
                        rem * 4,
                    );
                }
                std::ptr::copy_nonoverlapping(
                    b.add(steps * 16 * LDB),
                    bt.0.as_mut_ptr(),
                    rem * LDB,
                );
                let a0 = at.0.as_ptr();
                step(a0, a0.add(16 * 64), 64, bt.0.as_ptr(), LDB);
            }
            asm!(
                "tilestored [{c0} + {s}*1], tmm0",
                "tilestored [{c1} + {s}*1], tmm1",
                "tilestored [{c2} + {s}*1], tmm2",
                "tilestored [{c3} + {s}*1], tmm3",
                c0 = in(reg) c, c1 = in(reg) c1, c2 = in(reg) c2, c3 = in(reg) c3,
                s = in(reg) ldc_bytes,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_is_consistent() {
        let s = detect();
        let msg = s.to_string();
        if s.present() {
            assert!(msg.contains("present"));
        } else {
            assert!(msg.starts_with("absent"), "{msg}");
            assert!(request_permission().is_err());
        }
        eprintln!("AMX on this machine: {msg}");
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn unknown_arch_prctl_code_is_refused() {
        // 0x10ff is no arch_prctl code: the kernel must answer -EINVAL (22).
        assert_eq!(arch_prctl(0x10ff, 0), -22);
    }
}
