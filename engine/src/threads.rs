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

/// [`install`] for work of many short parallel loops (a decode step runs
/// about 150 to 330 of them): the pool's other threads stay awake while `f`
/// runs, taking its parallel work as it comes instead of sleeping between
/// loops. A rayon thread with nothing to do sleeps after a few dozen yields,
/// and waking it costs a system call and a context switch, on a 2-core VM
/// tens of microseconds each time, which in a step of a few milliseconds
/// added up to about a tenth of it. llama.cpp's thread pool spins for the same
/// reason. (The threads spin only while `f` runs.)
pub fn install_hot<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    install(|| {
        let others = rayon::current_num_threads().saturating_sub(1);
        if others == 0 || HOT.get() {
            return f();
        }
        let done = AtomicBool::new(false);
        rayon::scope(|s| {
            for _ in 0..others {
                s.spawn(|_| {
                    // Only a thread with no hot work below it on its stack
                    // spins: one that took a helper back while `f` (or
                    // another model's step, or another helper) waited there
                    // would otherwise spin over the work it waits for.
                    if HOT.get() {
                        return;
                    }
                    let _hot = Hot::enter(None);
                    while !done.load(Ordering::Acquire) {
                        if rayon::yield_now() != Some(rayon::Yield::Executed) {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
            // Whether `f` returns or unwinds, the helpers stop.
            let _hot = Hot::enter(Some(&done));
            f()
        })
    })
}

/// Marks this thread hot until dropped; then sets `done`, if any.
struct Hot<'a>(Option<&'a std::sync::atomic::AtomicBool>);

impl<'a> Hot<'a> {
    fn enter(done: Option<&'a std::sync::atomic::AtomicBool>) -> Self {
        HOT.set(true);
        Self(done)
    }
}

impl Drop for Hot<'_> {
    fn drop(&mut self) {
        HOT.set(false);
        if let Some(done) = self.0 {
            done.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

thread_local! {
    /// Whether this thread runs [`install_hot`]'s work or one of its helpers.
    static HOT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `[m, rows]` outputs (row-major) of a matrix product with `m` input rows and
/// `rows` output features, computed on the calling pool in stripes of `stripe`
/// features. `fill(features, out)` computes a range of features for every input
/// row and writes each of them once with [`Stripe::set`] (or a run of them with
/// [`Stripe::set_run`] or [`Stripe::set_array`]). A
/// stripe owns its features for every input row, so each weight row is read
/// from memory once per call whatever `m` is, and results land in place (no
/// transpose, no second buffer). The buffer is not zeroed first (for a
/// many-sequence step's LM head that was megabytes of stores per step): every
/// stripe must write all of its `m * features` values, which is checked.
pub fn par_features(
    m: usize,
    rows: usize,
    stripe: usize,
    fill: impl Fn(Range<usize>, &mut Stripe<'_>) + Sync,
) -> Vec<f32> {
    par_features_parts(m, &[rows], stripe, fill)
        .pop()
        .expect("one part")
}

/// [`par_features`] for a product whose features are several outputs side by
/// side (a fused query/key/value or gate/up projection): feature `r` of part
/// `p` lands in part `p`'s own `[m, widths[p]]` buffer, so the parts need no
/// copying out of a shared matrix afterwards.
pub fn par_features_parts(
    m: usize,
    widths: &[usize],
    stripe: usize,
    fill: impl Fn(Range<usize>, &mut Stripe<'_>) + Sync,
) -> Vec<Vec<f32>> {
    use rayon::prelude::*;
    let stripe = stripe.max(1);
    let rows: usize = widths.iter().sum();
    let mut outs: Vec<Vec<f32>> = widths.iter().map(|w| Vec::with_capacity(m * w)).collect();
    let mut start = 0;
    let parts = Parts(
        outs.iter_mut()
            .zip(widths)
            .map(|(out, &width)| {
                start += width;
                Part {
                    ptr: out.as_mut_ptr(),
                    start: start - width,
                    width,
                }
            })
            .collect(),
    );
    (0..rows.div_ceil(stripe)).into_par_iter().for_each(|t| {
        let features = t * stripe..((t + 1) * stripe).min(rows);
        let mut s = Stripe {
            parts: &parts,
            m,
            features: features.clone(),
            written: 0,
        };
        fill(features.clone(), &mut s);
        assert_eq!(
            s.written,
            m * features.len(),
            "a stripe left outputs of features {features:?} unwritten"
        );
    });
    for (out, w) in outs.iter_mut().zip(widths) {
        // SAFETY: the capacity holds `m * w` values, and every one was
        // written: each stripe wrote as many in-range values as it owns
        // (asserted above), and the stripes cover every feature of every part
        // once. A panicking stripe unwinds past this line, dropping the
        // buffers with no values.
        unsafe { out.set_len(m * w) };
    }
    outs
}

/// One output buffer of [`par_features_parts`]: features `start..start + width`.
struct Part {
    ptr: *mut f32,
    start: usize,
    width: usize,
}

/// The output buffers of [`par_features_parts`], shared by its tasks, each of
/// which writes only its own features (so no two tasks touch the same element).
struct Parts(Vec<Part>);

// SAFETY: the pointers are only written through `Stripe`'s setters, which keep
// each task to its own, disjoint, range of features, while
// `par_features_parts` holds the buffers alive and unborrowed until every task
// has finished.
unsafe impl Sync for Parts {}

/// Where one task of [`par_features`] writes: its features, for every row.
pub struct Stripe<'a> {
    parts: &'a Parts,
    m: usize,
    features: Range<usize>,
    /// Values set so far (each position is meant to be set once).
    written: usize,
}

impl Stripe<'_> {
    /// The part holding feature `r`, and `r`'s column in it.
    #[inline]
    fn locate(&self, r: usize) -> (&Part, usize) {
        let part = self
            .parts
            .0
            .iter()
            .find(|p| r < p.start + p.width)
            .expect("a feature inside the product");
        (part, r - part.start)
    }

    /// Sets output feature `r` (inside this stripe's range) of input row `i`.
    #[inline]
    pub fn set(&mut self, i: usize, r: usize, value: f32) {
        assert!(
            i < self.m && self.features.contains(&r),
            "row {i} feature {r} outside the stripe"
        );
        let (part, c) = self.locate(r);
        // SAFETY: in bounds (checked above) of the part's `m * width` buffer,
        // and no other task writes feature `r` (the stripes are disjoint).
        unsafe { *part.ptr.add(i * part.width + c) = value };
        self.written += 1;
    }

    /// Sets features `r..r + N` of input row `i`, as [`Stripe::set_run`]
    /// does, for a kernel's fixed-size run of outputs: where the run lies in
    /// one part (always, for parts whose widths are multiples of `N`), one
    /// bounds check and a store of `N` values, not a `memcpy` call.
    #[inline(always)]
    pub fn set_array<const N: usize>(&mut self, i: usize, r: usize, values: &[f32; N]) {
        let (part, c) = self.locate(r);
        if i < self.m
            && r >= self.features.start
            && r + N <= self.features.end
            && c + N <= part.width
        {
            // SAFETY: in bounds (checked above) of the part's `m * width`
            // buffer, and no other task writes these features (the stripes
            // are disjoint).
            unsafe { (part.ptr.add(i * part.width + c) as *mut [f32; N]).write_unaligned(*values) };
            self.written += N;
        } else {
            self.set_run(i, r, values);
        }
    }

    /// Sets features `r..r + values.len()` (inside this stripe's range) of input
    /// row `i`: one bounds check and one copy per part the run touches.
    #[inline]
    pub fn set_run(&mut self, i: usize, r: usize, values: &[f32]) {
        let end = r + values.len();
        assert!(
            i < self.m && r >= self.features.start && end <= self.features.end,
            "row {i} features {r}..{end} outside the stripe"
        );
        let (mut r, mut values) = (r, values);
        while !values.is_empty() {
            let (part, c) = self.locate(r);
            let n = values.len().min(part.width - c);
            // SAFETY: as in `set`, for each element of the run's piece, which
            // lies inside one part.
            unsafe {
                std::ptr::copy_nonoverlapping(values.as_ptr(), part.ptr.add(i * part.width + c), n)
            };
            self.written += n;
            (r, values) = (r + n, &values[n..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_work_runs_its_loops_and_stops_its_helpers_when_it_ends_or_panics() {
        use rayon::prelude::*;
        // Short loops from two outside threads at once (two models' steps
        // on one pool), each nesting another hot call: every sum is right
        // and nothing waits forever.
        let sums: Vec<u64> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..2u64)
                .map(|k| {
                    s.spawn(move || {
                        (0..300u64)
                            .map(|i| {
                                install_hot(|| {
                                    let inner = install_hot(|| {
                                        (0..64u64).into_par_iter().map(|x| x * k).sum::<u64>()
                                    });
                                    (0..1000u64).into_par_iter().map(|x| x + i).sum::<u64>() + inner
                                })
                            })
                            .sum()
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let want = |k: u64| {
            (0..300u64)
                .map(|i| 499_500 + 1000 * i + 2016 * k)
                .sum::<u64>()
        };
        assert_eq!(sums, vec![want(0), want(1)]);
        // A panic in the work reaches the caller, and the pool goes on.
        let caught = std::panic::catch_unwind(|| install_hot(|| -> u32 { panic!("boom") }));
        assert!(caught.is_err());
        assert_eq!(install_hot(|| (0..10u32).into_par_iter().sum::<u32>()), 45);
    }

    #[test]
    fn every_feature_of_every_row_lands_in_place() {
        let out = install(|| {
            par_features(3, 37, 8, |features, dst| {
                for r in features {
                    for i in 0..3 {
                        dst.set(i, r, (i * 100 + r) as f32);
                    }
                }
            })
        });
        let want: Vec<f32> = (0..3)
            .flat_map(|i| (0..37).map(move |r| (i * 100 + r) as f32))
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn parts_get_their_features_whatever_the_runs() {
        // Widths that runs of eight straddle, set by runs (slices, and arrays
        // on row 1: those inside a part stored whole, the others split) and
        // singles.
        let widths = [5, 12, 3, 20];
        let rows: usize = widths.iter().sum();
        let value = |i: usize, r: usize| (i * 1000 + r) as f32;
        let parts = install(|| {
            par_features_parts(2, &widths, 8, |features, dst| {
                for i in 0..2 {
                    let mut r = features.start;
                    while r + 8 <= features.end {
                        let run = std::array::from_fn::<_, 8, _>(|k| value(i, r + k));
                        if i == 1 {
                            dst.set_array(i, r, &run);
                        } else {
                            dst.set_run(i, r, &run);
                        }
                        r += 8;
                    }
                    if r + 2 <= features.end {
                        dst.set_run(i, r, &[value(i, r), value(i, r + 1)]);
                        r += 2;
                    }
                    for r in r..features.end {
                        dst.set(i, r, value(i, r));
                    }
                }
            })
        });
        let mut start = 0;
        for (part, &w) in parts.iter().zip(&widths) {
            let want: Vec<f32> = (0..2)
                .flat_map(|i| (start..start + w).map(move |r| value(i, r)))
                .collect();
            assert_eq!(part, &want, "part at {start}");
            start += w;
        }
        assert_eq!(start, rows);
    }

    #[test]
    #[should_panic(expected = "unwritten")]
    fn a_stripe_that_skips_an_output_is_caught() {
        install(|| {
            par_features(2, 16, 8, |features, dst| {
                for r in features {
                    dst.set(0, r, 1.0);
                }
            })
        });
    }
}
