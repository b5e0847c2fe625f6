//! Giving freed heap memory back to the operating system after a burst of large buffers.
//!
//! By default glibc's malloc raises its mmap threshold (up to 32 MiB) and its trim threshold
//! (twice that) after the first large buffer is freed, so later multi-megabyte buffers
//! (manifest bodies, their descriptor lists) come from per-thread arenas, and every arena may
//! then keep up to 64 MiB free at its top. After a burst of 4 MiB manifest PUTs the process
//! kept ~80 MiB it no longer used. Two remedies, both glibc-only:
//! - [`tune_allocator`] fixes the thresholds at start: buffers of [`MMAP_THRESHOLD`] or more
//!   are mapped on their own and unmapped when freed, and an arena gives back free memory at
//!   its top beyond [`TRIM_THRESHOLD`]. Blob transfer buffers (1 MiB) stay below the first so
//!   the hot paths keep reusing heap memory.
//! - [`trim_heap`] (`malloc_trim(0)`) returns the free pages inside every arena; it walks the
//!   heap, so it runs on the blocking pool and only when the last large manifest body of a
//!   burst is done (see `handlers::manifests::ManifestBudget`).
//!
//! The second place in Stowage that opts out of `unsafe_code = "deny"` (the first is
//! `stowage-oci`'s `digest/ffi.rs`): calls to libc functions that take integers and touch only
//! the allocator's own state.
#![allow(unsafe_code)]

/// Allocations of this size or more get their own mapping (glibc `M_MMAP_THRESHOLD`).
pub(crate) const MMAP_THRESHOLD: usize = 2 * 1024 * 1024;
/// Free memory an arena keeps at its top (glibc `M_TRIM_THRESHOLD`).
pub(crate) const TRIM_THRESHOLD: usize = 4 * 1024 * 1024;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    /// glibc: `int malloc_trim(size_t pad)`.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
    /// glibc: `int mallopt(int param, int value)`.
    fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
}

/// Fix glibc's mmap and trim thresholds (see the module docs); nothing elsewhere. Call once,
/// early.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        // SAFETY: mallopt takes two integers, may be called at any time from any thread (it
        // takes the arena locks), and these parameters only change when memory is mapped or
        // given back, never the validity of existing allocations. Both values fit in an int.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD as std::ffi::c_int);
            mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD as std::ffi::c_int);
        }
    }
}

/// Return the free pages of the C heap to the OS (glibc); nothing elsewhere.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain integer, has no preconditions, may be called from
        // any thread at any time (it takes each arena's lock), and only releases memory the
        // allocator already considers free.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_keeps_live_memory_intact() {
        super::tune_allocator();
        let live: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 256 * 1024]).collect();
        let freed: Vec<Vec<u8>> = (0..64).map(|_| vec![7u8; 256 * 1024]).collect();
        drop(freed);
        super::trim_heap();
        for (i, v) in live.iter().enumerate() {
            assert!(v.iter().all(|&b| b == i as u8));
        }
    }
}
