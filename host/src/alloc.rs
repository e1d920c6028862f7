//! The memory allocator's settings, made once when the process starts.
//!
//! glibc keeps up to 8 malloc arenas per core, one per thread that
//! allocated while another held the lock. A sink's batch is mapped on a
//! blocking thread and freed on another task's thread; librdkafka, wasmtime
//! and tokio add their own threads. Each arena then keeps the high-water
//! mark of the batches that passed through it, and the process's peak
//! memory grows with the number of arenas, not with the work
//! (BENCHMARKS.md: 155 MB → 142 MB with two arenas, throughput unchanged).

/// Arenas glibc may create (its default: 8 × cores).
const MALLOC_ARENAS: i32 = 2;

/// Applies the settings; call before any other thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's parameters; it is called from
    // main before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}
