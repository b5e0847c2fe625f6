//! Giving freed heap memory back to the operating system after a burst of large buffers.
//!
//! glibc's malloc raises its mmap threshold (up to 32 MiB) after the first large buffer is
//! freed, so later multi-megabyte buffers (manifest bodies, their descriptor lists) come from
//! per-thread arenas, and an arena only gives back free memory at its very top. After a burst
//! of 4 MiB manifest PUTs the process kept ~80 MiB it no longer used. `malloc_trim(0)` returns
//! every free page of every arena (it `madvise`s the middle of the heap too); it costs a walk of
//! the heap, so it runs on the blocking pool and only when the last large body of a burst is
//! done (see `handlers::manifests::ManifestBudget`).
//!
//! The second place in Stowage that opts out of `unsafe_code = "deny"` (the first is
//! `stowage-oci`'s `digest/ffi.rs`): one call to a libc function that takes an integer and
//! touches only the allocator's own state.
#![allow(unsafe_code)]

/// Return the free pages of the C heap to the OS (glibc); nothing elsewhere.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            /// glibc: `int malloc_trim(size_t pad)`.
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
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
        let live: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 256 * 1024]).collect();
        let freed: Vec<Vec<u8>> = (0..64).map(|_| vec![7u8; 256 * 1024]).collect();
        drop(freed);
        super::trim_heap();
        for (i, v) in live.iter().enumerate() {
            assert!(v.iter().all(|&b| b == i as u8));
        }
    }
}
