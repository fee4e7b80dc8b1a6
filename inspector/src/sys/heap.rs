//! The C allocator's hold on memory the inspector has freed (glibc; elsewhere nothing).
//! Measured under churn (`tests/churn.rs`: 1,000 namespaces made and deleted while `flows`
//! and `trace` run), resident memory grew far beyond the live heap (heaptrack: 5 MiB live,
//! 25 MiB resident after 400 namespaces), for two reasons:
//!
//! - glibc gives each thread that allocates an arena of its own (up to 8 per core), and each
//!   arena keeps what was freed in it. The attach workers and the ring reader allocate a
//!   little each; [`limit_arenas`] keeps two arenas (`trace`: 60 -> 33 MiB resident).
//! - Freed memory inside the heap stays resident until the allocator trims it, which glibc
//!   does only at the heap's top. [`give_back`] returns every free page after a rescan that
//!   changed something (devices attached or let go, namespaces gone), when churn frees the
//!   most.
//!
//! Hand-written: two libc calls, which no crate wraps.

/// At most two malloc arenas for the whole process. Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's parameters; called before threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the allocator's free pages to the kernel.
pub fn give_back() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; it takes the arenas' locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}
