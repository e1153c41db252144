//! AMX detection (no AMX kernel: there is no AMX hardware here to verify one on).
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

/// Reads CPUID and XCR0. Never changes anything.
pub fn detect() -> AmxSupport {
    #[cfg(target_arch = "x86_64")]
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
    #[cfg(not(target_arch = "x86_64"))]
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
