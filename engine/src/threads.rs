//! The engine's thread pool. A forward pass runs *inside* the pool, so the thread
//! that asked for it sleeps instead of competing for a core with the pool's
//! workers (on a 2-core machine a third busy thread costs a third of the speed).
//! Parallel kernels (`quant.rs`, candle's gemm) then split work over the pool.

use std::sync::OnceLock;

use rayon::{ThreadPool, ThreadPoolBuilder};

fn pool() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::env::var("TEACHERLM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("engine-{i}"))
            .build()
            .expect("the engine thread pool starts")
    })
}

/// Runs `f` on the engine pool (directly when already on a pool thread).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        pool().install(f)
    }
}
