//! Allocator tuning for binaries that use mimalloc as their global allocator.
//!
//! A training step allocates and frees the same multi-megabyte activation buffers every few
//! milliseconds. mimalloc's default is to return freed memory to the OS after a delay (10 ms or 1 s), so the next
//! step page-faults it back in, zero-filled by the kernel (measured: thousands of faults and ~10%
//! of a seed-cnn training step). Keeping freed pages removes that.

/// mimalloc v3's `mi_option_purge_delay` (its position in `mi_option_e`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// The defaults of that option across mimalloc releases (10 ms in v2, 1000 ms in v3), used to
/// confirm the index before changing it.
const PURGE_DELAY_DEFAULTS: [std::os::raw::c_long; 2] = [10, 1000];

/// Tells mimalloc never to return freed pages to the OS. Does nothing if the option index does
/// not hold the documented default (a different mimalloc layout). Returns whether it applied.
pub fn retain_freed_memory() -> bool {
    // SAFETY: both are plain option accessors of the linked mimalloc, valid at any time from any
    // thread; the index is a valid option in every mimalloc version this crate links.
    unsafe {
        if !PURGE_DELAY_DEFAULTS.contains(&libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)) {
            return false;
        }
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
    true
}
