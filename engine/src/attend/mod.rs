//! The attention of a group of query heads over a cached sequence, the inner
//! loop of a decode step: `softmax(q_h . K^T * scale) . V` for each head `h`
//! that shares the key/value head `K`, `V` (grouped-query attention).
//!
//! With many sequences in a step this runs once per sequence, key/value head
//! and layer (24 sequences of SmolLM2: 2,160 times a step), each over a short
//! context, so per-call costs decide its speed. The AVX2 path scores eight keys
//! per pass and reduces the eight sums with one transpose (the `hadd` tree of
//! llama.cpp's `ggml_vec_dot_f16` reductions), and keeps the output rows in
//! registers while it accumulates the values; calling a dot product per key
//! spent more time in calls and horizontal sums than in multiply-adds. Keys and
//! values are f32 or f16 (widened as they load: an f16 cache halves the bytes a
//! step reads, which is what bounds attention over many sequences), and each is
//! read once for all the heads of its group: on one core, 24 sequences x 30
//! layers x 3 key/value heads over 100 f16 positions took 8.4 ms grouped
//! against 10.5 ms one query head at a time.
//!
//! Where the CPU has AVX-512, the same arithmetic runs on 16-lane vectors
//! ([`avx512`]), giving the same bits; each kernel also prefetches the keys a
//! block ahead and the values it will weigh, which a step of many sequences
//! reads from memory rather than cache.

use std::sync::OnceLock;

use half::f16;

/// Generates a build of the weighted sum of values (`$vec` vectors of
/// `$lanes` f32 lanes, with `$features`): `out_h (+)= sum_j weights[h * len +
/// at + j] * values[j]` for each of the `G` heads (adding to `out` when `add`,
/// else overwriting it), `V` vectors of outputs per head per pass over the
/// values. Each value vector is loaded (and widened, by `E::$load`) once for
/// all heads, and `G * V` accumulators hide the multiply-add latency. Every
/// output lane sees the same multiply-adds in the same order whatever the
/// build, so the builds give the same bits, and summing a run after another
/// continues the same additions.
#[cfg(target_arch = "x86_64")]
macro_rules! weighted_sum {
    (
        $features:literal, $vec:ty, $lanes:literal, $load:ident,
        zero: $zero:path, loadu: $loadu:path, storeu: $storeu:path, splat: $splat:path,
        fmadd: $fmadd:path $(,)?
    ) => {
        /// The weighted sum of values of [`super::attend`] (see the macro
        /// that builds it).
        ///
        /// # Safety
        #[doc = concat!("The CPU features ", $features, "; `out.len() == G * d`, `weights.len() == G * len` and `values.len() == n * d` with `at + n <= len` and `d % (", $lanes, " * V) == 0`.")]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn weighted_sum<E: KvElem, const G: usize, const V: usize>(
            (weights, len, at, values, out, add): (&[f32], usize, usize, &[E], &mut [f32], bool),
        ) {
            const L: usize = $lanes;
            let d = out.len() / G;
            let n = values.len() / d;
            for c in (0..d).step_by(L * V) {
                let mut acc: [[$vec; V]; G] = [[$zero(); V]; G];
                if add {
                    for (h, acc) in acc.iter_mut().enumerate() {
                        for (t, a) in acc.iter_mut().enumerate() {
                            // SAFETY: `h * d + c + L * t + L <= G * d = out.len()`.
                            *a = unsafe { $loadu(out.as_ptr().add(h * d + c + L * t)) };
                        }
                    }
                }
                for j in 0..n {
                    // SAFETY: row `j` of `values` holds `d` values and
                    // `c + L * V <= d`.
                    let v: [$vec; V] = std::array::from_fn(|t| unsafe {
                        E::$load(values.as_ptr().add(j * d + c + L * t))
                    });
                    for (h, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: `h < G` and `at + j < len`.
                        let p = $splat(unsafe { *weights.as_ptr().add(h * len + at + j) });
                        for (a, v) in acc.iter_mut().zip(v) {
                            *a = $fmadd(p, v, *a);
                        }
                    }
                }
                for (h, acc) in acc.iter().enumerate() {
                    for (t, a) in acc.iter().enumerate() {
                        // SAFETY: `h * d + c + L * t + L <= G * d = out.len()`.
                        unsafe { $storeu(out.as_mut_ptr().add(h * d + c + L * t), *a) };
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// A cached key or value element: f32, or f16 widened as it is read.
pub(crate) trait KvElem: Copy + Send + Sync {
    /// The value as f32.
    fn to_f32(self) -> f32;

    /// Eight values at `p` as f32 lanes.
    ///
    /// # Safety
    /// `p` points to eight readable values; the CPU has AVX2 and F16C (the
    /// caller's kernel enables them, and this inlines into it).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;

    /// Sixteen values at `p` as f32 lanes.
    ///
    /// # Safety
    /// `p` points to sixteen readable values; the CPU has AVX-512F and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;

    /// Eight values at `lo` and eight at `hi` as the low and high halves of
    /// sixteen f32 lanes.
    ///
    /// # Safety
    /// Eight readable values at each; the CPU has AVX-512F and DQ and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8x2(lo: *const Self, hi: *const Self) -> std::arch::x86_64::__m512;
}

impl KvElem for f32 {
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: forwarded to the caller.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        // SAFETY: forwarded to the caller.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8x2(lo: *const Self, hi: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded to the caller.
        unsafe {
            _mm512_insertf32x8::<1>(
                _mm512_castps256_ps512(_mm256_loadu_ps(lo)),
                _mm256_loadu_ps(hi),
            )
        }
    }
}

impl KvElem for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded to the caller (16 readable bytes, F16C).
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded to the caller (32 readable bytes).
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8x2(lo: *const Self, hi: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        // SAFETY: forwarded to the caller (16 readable bytes at each).
        unsafe {
            let l = _mm_loadu_si128(lo as *const __m128i);
            let h = _mm_loadu_si128(hi as *const __m128i);
            _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(_mm256_castsi128_si256(l), h))
        }
    }
}

/// The kernels a CPU runs attention with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Plain Rust, for head widths the vector kernels do not take and other
    /// CPUs.
    Scalar,
    /// AVX2, FMA and F16C.
    Avx2,
    /// AVX-512 (F, DQ) on top of those: the AVX2 arithmetic on 16 lanes.
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs, detected once.
    fn detect() -> Self {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        *KERNEL.get_or_init(|| Self::available().into_iter().last().unwrap_or(Self::Scalar))
    }

    /// Every kernel this CPU runs, slowest first (the tests compare them).
    fn available() -> Vec<Self> {
        let mut out = vec![Self::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                out.push(Self::Avx2);
                if has!("avx512f") && has!("avx512dq") {
                    out.push(Self::Avx512);
                }
            }
        }
        out
    }
}

/// Prefetches what a kernel reads soon after the block of eight keys at `j`:
/// the keys [`PREFETCH_KEYS`] positions on (into L1) and the values of this
/// block (into L2, for the weighted sum after the scores). A decode step of
/// many sequences reads each sequence's few kilobytes of keys and values once,
/// from memory; on a Sapphire Rapids-class VM this took a call over 100 f16
/// positions out of cache from 4.5 to 4.0 us.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_block<E>(keys: &[E], values: &[E], j: usize, d: usize) {
    use std::arch::x86_64::*;
    let bytes = 8 * d * std::mem::size_of::<E>();
    let k = keys.as_ptr().wrapping_add((j + PREFETCH_KEYS) * d) as *const i8;
    let v = values.as_ptr().wrapping_add(j * d) as *const i8;
    for off in (0..bytes).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(k.wrapping_add(off));
            _mm_prefetch::<_MM_HINT_T1>(v.wrapping_add(off));
        }
    }
}

/// One run of keys scored against a group of query heads: `scores[h * len +
/// at + j] = q_h . keys[j] * scale` for each head `h` of `q` (`q.len() / d`
/// heads). `values` (the run's, as long as `keys`) are only prefetched;
/// `block` is staging space for eight keys.
#[cfg(target_arch = "x86_64")]
struct ScoreJob<'a, E> {
    q: &'a [f32],
    d: usize,
    keys: &'a [E],
    values: &'a [E],
    scale: f32,
    scores: &'a mut [f32],
    len: usize,
    at: usize,
    block: &'a mut [f32],
}

/// How far ahead of the block being scored the keys are prefetched.
#[cfg(target_arch = "x86_64")]
const PREFETCH_KEYS: usize = 16;

/// Most query heads scored against one pass over the keys: four keep the
/// weighted sum's accumulators, the heads' weights and a value vector inside
/// the sixteen AVX2 registers.
const MAX_GROUP: usize = 4;

/// Writes `softmax(q_h . K^T * scale) . V` into `out` for each query head `h`
/// of `q` (`q.len() / head_dim` heads of `head_dim` values, all attending to
/// the same keys and values: the query heads of one key/value head under
/// grouped-query attention). `K` and `V` are the `runs` one after another
/// (`(keys, values)` of `head_dim` values per position: a shared prompt
/// prefix, then a sequence's own positions); a position's score and weight do
/// not depend on which run it sits in or where. `scratch` is reused space.
///
/// The heads of a group share each key and value as it is read (and, from an
/// f16 cache, widened): with SmolLM2's three query heads per key/value head,
/// a third of the loads and conversions of one head at a time.
pub(crate) fn attend<E: KvElem>(
    q: &[f32],
    head_dim: usize,
    runs: &[(&[E], &[E])],
    scale: f32,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    attend_on(Kernel::detect(), q, head_dim, runs, scale, out, scratch)
}

/// [`attend`] on a given kernel (one this CPU runs).
fn attend_on<E: KvElem>(
    kernel: Kernel,
    q: &[f32],
    head_dim: usize,
    runs: &[(&[E], &[E])],
    scale: f32,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let d = head_dim;
    assert!(
        d > 0
            && q.len().is_multiple_of(d)
            && out.len() == q.len()
            && runs
                .iter()
                .all(|(k, v)| k.len() == v.len() && k.len().is_multiple_of(d)),
        "attention of {} query values of width {d} into {}, over runs of keys/values {:?}",
        q.len(),
        out.len(),
        runs.iter()
            .map(|(k, v)| (k.len(), v.len()))
            .collect::<Vec<_>>()
    );
    let len: usize = runs.iter().map(|(k, _)| k.len() / d).sum();
    for (q, out) in q.chunks(MAX_GROUP * d).zip(out.chunks_mut(MAX_GROUP * d)) {
        let heads = q.len() / d;
        // Every score and key-block value is written before it is read, so
        // the scratch only grows (zeroing it per call was a visible cost).
        let need = heads * len + avx2_key_block(d);
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let (scores, block) = scratch[..need].split_at_mut(heads * len);
        #[cfg(target_arch = "x86_64")]
        if kernel != Kernel::Scalar && d.is_multiple_of(avx2::CHUNK) {
            // SAFETY: the kernel's CPU features were detected at run time;
            // the shapes were checked above, `d` is a multiple of the
            // kernels' chunk, `block` holds eight keys and each run's
            // positions lie inside the `len` scores of a head.
            unsafe {
                let mut at = 0;
                for (keys, values) in runs {
                    let go = ScoreJob {
                        q,
                        d,
                        keys,
                        values,
                        scale,
                        scores: &mut *scores,
                        len,
                        at,
                        block: &mut *block,
                    };
                    match (kernel, heads) {
                        (Kernel::Avx512, 1) => avx512::scores::<E, 1>(go),
                        (Kernel::Avx512, 2) => avx512::scores::<E, 2>(go),
                        (Kernel::Avx512, 3) => avx512::scores::<E, 3>(go),
                        (Kernel::Avx512, _) => avx512::scores::<E, 4>(go),
                        _ => avx2::scores(go),
                    }
                    at += keys.len() / d;
                }
                softmax_rows(scores, len);
                let mut at = 0;
                for (i, (_, values)) in runs.iter().enumerate() {
                    let go = (&*scores, len, at, *values, &mut *out, i > 0);
                    match (kernel, heads) {
                        (Kernel::Avx512, 1) => avx512::weighted_sum::<E, 1, 4>(go),
                        (Kernel::Avx512, 2) => avx512::weighted_sum::<E, 2, 4>(go),
                        (Kernel::Avx512, 3) => avx512::weighted_sum::<E, 3, 4>(go),
                        (Kernel::Avx512, _) => avx512::weighted_sum::<E, 4, 4>(go),
                        (_, 1) => avx2::weighted_sum::<E, 1, 8>(go),
                        (_, 2) => avx2::weighted_sum::<E, 2, 4>(go),
                        (_, 3) => avx2::weighted_sum::<E, 3, 2>(go),
                        _ => avx2::weighted_sum::<E, 4, 2>(go),
                    }
                    at += values.len() / d;
                }
            }
            continue;
        }
        // Only the AVX2 scores kernel stages keys.
        let _ = (kernel, block);
        let keys = || runs.iter().flat_map(|(k, _)| k.chunks_exact(d));
        let values = || runs.iter().flat_map(|(_, v)| v.chunks_exact(d));
        for ((q, out), scores) in q
            .chunks_exact(d)
            .zip(out.chunks_exact_mut(d))
            .zip(scores.chunks_exact_mut(len))
        {
            for (s, k) in scores.iter_mut().zip(keys()) {
                *s = q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum::<f32>() * scale;
            }
            let inv = 1.0 / softmax_numerators(scores);
            out.fill(0.0);
            for (p, v) in scores.iter().zip(values()) {
                let p = p * inv;
                for (o, v) in out.iter_mut().zip(v) {
                    *o += p * v.to_f32();
                }
            }
        }
    }
}

/// Scratch floats the AVX2 scores kernel needs for one block of keys.
fn avx2_key_block(d: usize) -> usize {
    8 * d
}

/// Each head's `len` scores turned into its softmax weights, in place.
#[cfg(target_arch = "x86_64")]
fn softmax_rows(scores: &mut [f32], len: usize) {
    for s in scores.chunks_exact_mut(len) {
        let inv = 1.0 / softmax_numerators(s);
        s.iter_mut().for_each(|p| *p *= inv);
    }
}

/// `exp(s - max)` in place; returns their sum. (The maximum eight lanes at a
/// time: a scalar `fold` is a chain of dependent `max`es, which over thousands
/// of short score rows per step cost more than the exponentials.)
fn softmax_numerators(scores: &mut [f32]) -> f32 {
    crate::vmath::exp_shifted(scores, crate::vmath::max(scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention computed in f64, the textbook way.
    fn reference(q: &[f32], keys: &[f32], values: &[f32], scale: f32) -> Vec<f64> {
        let d = q.len();
        let s: Vec<f64> = keys
            .chunks_exact(d)
            .map(|k| {
                q.iter()
                    .zip(k)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
                    * scale as f64
            })
            .collect();
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
        let z: f64 = e.iter().sum();
        (0..d)
            .map(|c| {
                e.iter()
                    .zip(values.chunks_exact(d))
                    .map(|(p, v)| p / z * v[c] as f64)
                    .sum()
            })
            .collect()
    }

    /// Every kernel this CPU runs matches attention in f64 (for each head,
    /// whether alone or in a group, and over a run split in two), and the
    /// vector kernels agree bit for bit.
    #[test]
    fn matches_f64_attention_for_any_length_width_and_group() {
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 2001) as f32 / 1000.0 - 1.0
        };
        let mut scratch = Vec::new();
        let half = |xs: &[f32]| xs.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
        let widen = |xs: &[f16]| xs.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
        let kernels = Kernel::available();
        eprintln!("attention kernels on this CPU: {kernels:?}");
        for d in [64, 128, 40] {
            for len in [1, 7, 8, 9, 23, 130] {
                // 1 to 4 heads go through one kernel call; 5 and 9 are split.
                for heads in [1, 2, 3, 4, 5, 9] {
                    let q: Vec<f32> = (0..heads * d).map(|_| next()).collect();
                    let keys: Vec<f32> = (0..len * d).map(|_| next() * 3.0).collect();
                    let values: Vec<f32> = (0..len * d).map(|_| next()).collect();
                    let scale = 1.0 / (d as f32).sqrt();
                    let (k16, v16) = (half(&keys), half(&values));
                    let mut vector: Option<(Vec<f32>, Vec<f32>)> = None;
                    for &kernel in &kernels {
                        let case = format!("{kernel:?}: d {d} len {len} heads {heads}");
                        let mut attend = |q: &[f32], runs: &[(&[f16], &[f16])], out: &mut [f32]| {
                            attend_on(kernel, q, d, runs, scale, out, &mut scratch)
                        };
                        let mut out = vec![f32::NAN; heads * d];
                        let mut out16 = vec![f32::NAN; heads * d];
                        attend_on(
                            kernel,
                            &q,
                            d,
                            &[(&keys, &values)],
                            scale,
                            &mut out,
                            &mut Vec::new(),
                        );
                        // An f16 cache: the same attention over the rounded values.
                        attend(&q, &[(&k16, &v16)], &mut out16);
                        for h in 0..heads {
                            let qh = &q[h * d..(h + 1) * d];
                            let cases = [
                                (&out, reference(qh, &keys, &values, scale)),
                                (&out16, reference(qh, &widen(&k16), &widen(&v16), scale)),
                            ];
                            for (got, want) in cases {
                                for (g, w) in got[h * d..(h + 1) * d].iter().zip(want) {
                                    assert!(
                                        (*g as f64 - w).abs() < 1e-5,
                                        "{case} head {h}: {g} vs {w}"
                                    );
                                }
                            }
                            // A head gets the same bits alone as in its group.
                            let mut alone = vec![f32::NAN; d];
                            attend(qh, &[(&k16, &v16)], &mut alone);
                            assert_eq!(alone, out16[h * d..(h + 1) * d], "{case} head {h}");
                        }
                        // The same positions split into a prefix run and the
                        // rest (a shared prompt prefix): the same bits.
                        for cut in [0, 1, len / 2, len.saturating_sub(1), len] {
                            let (kp, kr) = k16.split_at(cut * d);
                            let (vp, vr) = v16.split_at(cut * d);
                            let mut split = vec![f32::NAN; heads * d];
                            attend(&q, &[(kp, vp), (kr, vr)], &mut split);
                            assert_eq!(split, out16, "{case} cut {cut}");
                        }
                        if kernel != Kernel::Scalar {
                            match &vector {
                                None => vector = Some((out, out16)),
                                Some(first) => {
                                    assert_eq!((&first.0, &first.1), (&out, &out16), "{case}")
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
