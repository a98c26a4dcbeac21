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

/// `[m, rows]` outputs (row-major) of a matrix product with `m` input rows and
/// `rows` output features, computed on the calling pool in stripes of `stripe`
/// features. `fill(features, out)` computes a range of features for every input
/// row and writes them with [`Stripe::set`]. A stripe owns its features for every
/// input row, so each weight row is read from memory once per call whatever `m`
/// is, and results land in place (no transpose, no second buffer).
pub fn par_features(
    m: usize,
    rows: usize,
    stripe: usize,
    fill: impl Fn(Range<usize>, &mut Stripe<'_>) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let stripe = stripe.max(1);
    let mut out = vec![0f32; m * rows];
    let base = SharedOut(out.as_mut_ptr());
    (0..rows.div_ceil(stripe)).into_par_iter().for_each(|t| {
        let features = t * stripe..((t + 1) * stripe).min(rows);
        let mut s = Stripe {
            base: &base,
            m,
            rows,
            features: features.clone(),
        };
        fill(features, &mut s);
    });
    out
}

/// The output buffer of [`par_features`], shared by its tasks, each of which
/// writes only its own features (so no two tasks touch the same element).
struct SharedOut(*mut f32);

// SAFETY: the pointer is only written through `Stripe::set`, which keeps each
// task to its own, disjoint, range of features, while `par_features` holds the
// buffer alive and unborrowed until every task has finished.
unsafe impl Sync for SharedOut {}

/// Where one task of [`par_features`] writes: its features, for every row.
pub struct Stripe<'a> {
    base: &'a SharedOut,
    m: usize,
    rows: usize,
    features: Range<usize>,
}

impl Stripe<'_> {
    /// Sets output feature `r` (inside this stripe's range) of input row `i`.
    #[inline]
    pub fn set(&mut self, i: usize, r: usize, value: f32) {
        assert!(
            i < self.m && self.features.contains(&r),
            "row {i} feature {r} outside the stripe"
        );
        // SAFETY: in bounds (checked above) of the `m * rows` buffer, and no
        // other task writes feature `r` (the stripes are disjoint).
        unsafe { *self.base.0.add(i * self.rows + r) = value };
    }

    /// [`Stripe::set_run`] for a run whose length is known at compile time: the
    /// copy is a few vector moves instead of a `memmove` call, which for the
    /// eight outputs of a quantized row group was a measurable share of a
    /// decode step of many sequences.
    #[inline]
    pub fn set_array<const N: usize>(&mut self, i: usize, r: usize, values: &[f32; N]) {
        assert!(
            i < self.m && r >= self.features.start && r + N <= self.features.end,
            "row {i} features {r}..{} outside the stripe",
            r + N
        );
        // SAFETY: as in `set`, for each element of the run.
        unsafe { (self.base.0.add(i * self.rows + r) as *mut [f32; N]).write_unaligned(*values) };
    }

    /// Sets features `r..r + values.len()` (inside this stripe's range) of input
    /// row `i`: one bounds check and one copy for a run of outputs.
    #[inline]
    pub fn set_run(&mut self, i: usize, r: usize, values: &[f32]) {
        let end = r + values.len();
        assert!(
            i < self.m && r >= self.features.start && end <= self.features.end,
            "row {i} features {r}..{end} outside the stripe"
        );
        // SAFETY: as in `set`, for each element of the run.
        unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                self.base.0.add(i * self.rows + r),
                values.len(),
            )
        };
    }
}
