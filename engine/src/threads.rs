//! The engine's thread pool. A forward pass runs *inside* the pool, so the thread
//! that asked for it sleeps instead of competing for a core with the pool's
//! workers (on a 2-core machine a third busy thread costs a third of the speed).
//! Parallel kernels (`quant.rs`, candle's gemm) then split work over the pool.

use std::ops::Range;
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

/// `[m, rows]` outputs of a matrix product with `m` input rows and `rows` output
/// features, computed on the calling pool in stripes of `stripe` features.
/// `fill(features, dst)` writes the outputs of a range of features for every
/// input row into `dst`, feature-major (`dst[(r - features.start) * m + i]`). A
/// stripe owns its features for every input row, so each weight row is read from
/// memory once per call whatever `m` is.
pub fn par_features(
    m: usize,
    rows: usize,
    stripe: usize,
    fill: impl Fn(Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let stripe = stripe.max(1);
    // Feature-major: a task writes one contiguous run.
    let mut by_feature = vec![0f32; m * rows];
    by_feature
        .par_chunks_mut(stripe * m)
        .enumerate()
        .for_each(|(t, dst)| {
            let start = t * stripe;
            fill(start..start + dst.len() / m, dst)
        });
    if m == 1 {
        return by_feature;
    }
    let mut out = vec![0f32; m * rows];
    for r in 0..rows {
        for i in 0..m {
            out[i * rows + r] = by_feature[r * m + i];
        }
    }
    out
}
