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

use half::f16;

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
}

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
        if d.is_multiple_of(avx2::CHUNK)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the CPU features were detected at run time; the shapes
            // were checked above, `d` is a multiple of the kernel's chunk,
            // `block` holds eight keys and each run's positions lie inside
            // the `len` scores of a head.
            unsafe {
                let mut at = 0;
                for (keys, _) in runs {
                    avx2::scores(q, d, keys, scale, scores, len, at, block);
                    at += keys.len() / d;
                }
                softmax_rows(scores, len);
                let mut at = 0;
                for (i, (_, values)) in runs.iter().enumerate() {
                    let go = (&*scores, len, at, *values, &mut *out, i > 0);
                    match heads {
                        1 => avx2::weighted_sum::<E, 1, 8>(go),
                        2 => avx2::weighted_sum::<E, 2, 4>(go),
                        3 => avx2::weighted_sum::<E, 3, 2>(go),
                        _ => avx2::weighted_sum::<E, 4, 2>(go),
                    }
                    at += values.len() / d;
                }
            }
            continue;
        }
        // Only the AVX2 scores kernel stages keys.
        let _ = block;
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::KvElem;

    /// Head widths the kernels take: a multiple of the widest value pass.
    pub(super) const CHUNK: usize = 64;

    /// `scores[h * len + at + j] = q_h . keys[j] * scale` for each head `h` of
    /// `q`. Eight keys at a time are widened once into `block` and scored
    /// against every head from there; the last few go through the same code
    /// padded with zero keys, so a key's score does not depend on where it
    /// sits.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `q.len() == heads * d` with `d % 8 == 0`,
    /// `keys.len() == n * d` with `at + n <= len`, `scores.len() == heads *
    /// len` and `block.len() >= 8 * d`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scores<E: KvElem>(
        q: &[f32],
        d: usize,
        keys: &[E],
        scale: f32,
        scores: &mut [f32],
        len: usize,
        at: usize,
        block: &mut [f32],
    ) {
        let (heads, n) = (q.len() / d, keys.len() / d);
        let scale = _mm256_set1_ps(scale);
        let mut j = 0;
        // SAFETY (all loads and stores below): key `j + t` for `t < m` and
        // `c + 8 <= d` lies inside `keys`; `block` holds eight keys of `d`;
        // `q` holds `heads` rows of `d`; `scores` holds `heads` rows of `len`
        // and `at + j + m <= len`.
        unsafe {
            while j < n {
                let m = (n - j).min(8);
                for t in 0..8 {
                    for c in (0..d).step_by(8) {
                        let k = if t < m {
                            E::load8(keys.as_ptr().add((j + t) * d + c))
                        } else {
                            _mm256_setzero_ps()
                        };
                        _mm256_storeu_ps(block.as_mut_ptr().add(t * d + c), k);
                    }
                }
                for h in 0..heads {
                    let mut acc = [_mm256_setzero_ps(); 8];
                    for c in (0..d).step_by(8) {
                        let qv = _mm256_loadu_ps(q.as_ptr().add(h * d + c));
                        for (t, a) in acc.iter_mut().enumerate() {
                            let k = _mm256_loadu_ps(block.as_ptr().add(t * d + c));
                            *a = _mm256_fmadd_ps(qv, k, *a);
                        }
                    }
                    let s = _mm256_mul_ps(transpose_sum(acc), scale);
                    let dst = scores.as_mut_ptr().add(h * len + at + j);
                    if m == 8 {
                        _mm256_storeu_ps(dst, s);
                    } else {
                        let mut lanes = [0f32; 8];
                        _mm256_storeu_ps(lanes.as_mut_ptr(), s);
                        std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, m);
                    }
                }
                j += m;
            }
        }
    }

    /// Lane `t` of the result is the sum of the lanes of `a[t]`.
    #[target_feature(enable = "avx2")]
    fn transpose_sum(a: [__m256; 8]) -> __m256 {
        let t0 = _mm256_hadd_ps(a[0], a[1]);
        let t1 = _mm256_hadd_ps(a[2], a[3]);
        let t2 = _mm256_hadd_ps(a[4], a[5]);
        let t3 = _mm256_hadd_ps(a[6], a[7]);
        // Low halves: sums of lanes 0..4 of a[0..4] and a[4..8]; high halves:
        // lanes 4..8.
        let u0 = _mm256_hadd_ps(t0, t1);
        let u1 = _mm256_hadd_ps(t2, t3);
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(u0, u1),
            _mm256_permute2f128_ps::<0x31>(u0, u1),
        )
    }

    /// `out_h (+)= sum_j weights[h * len + at + j] * values[j]` for each of
    /// the `G` heads (adding to `out` when `add`, else overwriting it), `V`
    /// vectors of eight outputs per head per pass over the values: each value
    /// vector is loaded (and widened) once for all heads, and `G * V`
    /// accumulators (8 to 12) hide the multiply-add latency. Summing a run
    /// after another continues the same additions in the same order.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `out.len() == G * d`, `weights.len() == G * len`
    /// and `values.len() == n * d` with `at + n <= len` and
    /// `d % (8 * V) == 0`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn weighted_sum<E: KvElem, const G: usize, const V: usize>(
        (weights, len, at, values, out, add): (&[f32], usize, usize, &[E], &mut [f32], bool),
    ) {
        let d = out.len() / G;
        let n = values.len() / d;
        for c in (0..d).step_by(8 * V) {
            let mut acc = [[_mm256_setzero_ps(); V]; G];
            if add {
                for (h, acc) in acc.iter_mut().enumerate() {
                    for (t, a) in acc.iter_mut().enumerate() {
                        // SAFETY: `h * d + c + 8 * t + 8 <= G * d = out.len()`.
                        *a = unsafe { _mm256_loadu_ps(out.as_ptr().add(h * d + c + 8 * t)) };
                    }
                }
            }
            for j in 0..n {
                // SAFETY: row `j` of `values` holds `d` values and
                // `c + 8 * V <= d`.
                let v: [__m256; V] = std::array::from_fn(|t| unsafe {
                    E::load8(values.as_ptr().add(j * d + c + 8 * t))
                });
                for (h, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: `h < G` and `at + j < len`.
                    let p =
                        unsafe { _mm256_broadcast_ss(&*weights.as_ptr().add(h * len + at + j)) };
                    for (a, v) in acc.iter_mut().zip(v) {
                        *a = _mm256_fmadd_ps(p, v, *a);
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                for (t, a) in acc.iter().enumerate() {
                    // SAFETY: `h * d + c + 8 * t + 8 <= G * d = out.len()`.
                    unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(h * d + c + 8 * t), *a) };
                }
            }
        }
    }
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
        for d in [64, 128, 40] {
            for len in [1, 7, 8, 9, 23, 130] {
                // 1 to 4 heads go through one kernel call; 5 and 9 are split.
                for heads in [1, 2, 3, 4, 5, 9] {
                    let q: Vec<f32> = (0..heads * d).map(|_| next()).collect();
                    let keys: Vec<f32> = (0..len * d).map(|_| next() * 3.0).collect();
                    let values: Vec<f32> = (0..len * d).map(|_| next()).collect();
                    let scale = 1.0 / (d as f32).sqrt();
                    let (k16, v16) = (half(&keys), half(&values));
                    let mut out = vec![f32::NAN; heads * d];
                    let mut out16 = vec![f32::NAN; heads * d];
                    attend(&q, d, &[(&keys, &values)], scale, &mut out, &mut scratch);
                    // An f16 cache: the same attention over the rounded values.
                    attend(&q, d, &[(&k16, &v16)], scale, &mut out16, &mut scratch);
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
                                    "d {d} len {len} head {h} of {heads}: {g} vs {w}"
                                );
                            }
                        }
                        // A head gets the same bits alone as in its group.
                        let mut alone = vec![f32::NAN; d];
                        attend(qh, d, &[(&k16, &v16)], scale, &mut alone, &mut scratch);
                        assert_eq!(alone, out16[h * d..(h + 1) * d], "d {d} len {len} head {h}");
                    }
                    // The same positions split into a prefix run and the
                    // rest (a shared prompt prefix): the same bits.
                    for cut in [0, 1, len / 2, len.saturating_sub(1), len] {
                        let (kp, kr) = k16.split_at(cut * d);
                        let (vp, vr) = v16.split_at(cut * d);
                        let mut split = vec![f32::NAN; heads * d];
                        attend(
                            &q,
                            d,
                            &[(kp, vp), (kr, vr)],
                            scale,
                            &mut split,
                            &mut scratch,
                        );
                        assert_eq!(split, out16, "d {d} len {len} heads {heads} cut {cut}");
                    }
                }
            }
        }
    }
}
