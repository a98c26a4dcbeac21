//! One query head's attention over a cached sequence, the inner loop of a
//! decode step: `softmax(q . K^T * scale) . V`.
//!
//! With many sequences in a step this runs once per sequence, head and layer
//! (24 sequences of SmolLM2: 6,480 times a step), each over a short context, so
//! per-call costs decide its speed. The AVX2 path scores eight keys per pass and
//! reduces the eight sums with one transpose (the `hadd` tree of llama.cpp's
//! `ggml_vec_dot_f16` reductions), and keeps the whole output row in registers
//! while it accumulates the values; calling a dot product per key spent more
//! time in calls and horizontal sums than in multiply-adds. Keys and values are
//! f32 or f16 (widened as they load: an f16 cache halves the bytes a step reads,
//! which is what bounds attention over many sequences).

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

/// Writes `softmax(q . keys^T * scale) . values` into `out`, for `keys` and
/// `values` of `len` rows of `q.len()` values each; `scores` is scratch space.
pub(crate) fn attend<E: KvElem>(
    q: &[f32],
    keys: &[E],
    values: &[E],
    scale: f32,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    let d = q.len();
    assert!(
        d > 0 && keys.len() == values.len() && keys.len().is_multiple_of(d) && out.len() == d,
        "attention over keys {} / values {} of width {d} into {}",
        keys.len(),
        values.len(),
        out.len()
    );
    let len = keys.len() / d;
    scores.clear();
    scores.resize(len, 0.0);
    #[cfg(target_arch = "x86_64")]
    if d.is_multiple_of(avx2::CHUNK)
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // SAFETY: the CPU features were detected at run time; the shapes were
        // checked above and `d` is a multiple of the kernel's chunk.
        unsafe {
            avx2::scores(q, keys, scale, scores);
            let inv = 1.0 / softmax_numerators(scores);
            avx2::weighted_sum(scores, values, inv, out);
        }
        return;
    }
    for (s, k) in scores.iter_mut().zip(keys.chunks_exact(d)) {
        *s = q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum::<f32>() * scale;
    }
    let inv = 1.0 / softmax_numerators(scores);
    out.fill(0.0);
    for (p, v) in scores.iter().zip(values.chunks_exact(d)) {
        let p = p * inv;
        for (o, v) in out.iter_mut().zip(v) {
            *o += p * v.to_f32();
        }
    }
}

/// `exp(s - max)` in place; returns their sum.
fn softmax_numerators(scores: &mut [f32]) -> f32 {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    crate::vmath::exp_shifted(scores, max)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::KvElem;

    /// Output values accumulated per pass over the values: eight registers.
    pub(super) const CHUNK: usize = 64;

    /// `scores[j] = q . keys[j] * scale`.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `keys.len() == scores.len() * q.len()`,
    /// `q.len() % 8 == 0`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn scores<E: KvElem>(q: &[f32], keys: &[E], scale: f32, scores: &mut [f32]) {
        let d = q.len();
        let len = scores.len();
        let scale = _mm256_set1_ps(scale);
        let mut j = 0;
        // SAFETY (all loads below): key `j + t` for `t < 8` and `c + 8 <= d` lies
        // inside `keys` while `j + 8 <= len`; `q` holds `d` floats.
        unsafe {
            while j + 8 <= len {
                let mut acc = [_mm256_setzero_ps(); 8];
                for c in (0..d).step_by(8) {
                    let qv = _mm256_loadu_ps(q.as_ptr().add(c));
                    for (t, a) in acc.iter_mut().enumerate() {
                        let k = E::load8(keys.as_ptr().add((j + t) * d + c));
                        *a = _mm256_fmadd_ps(qv, k, *a);
                    }
                }
                let s = _mm256_mul_ps(transpose_sum(acc), scale);
                _mm256_storeu_ps(scores.as_mut_ptr().add(j), s);
                j += 8;
            }
            for (jj, s) in scores.iter_mut().enumerate().skip(j) {
                let mut acc = _mm256_setzero_ps();
                for c in (0..d).step_by(8) {
                    let k = E::load8(keys.as_ptr().add(jj * d + c));
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(c)), k, acc);
                }
                let mut lanes = [0f32; 8];
                _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_mul_ps(acc, scale));
                *s = lanes.iter().sum();
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

    /// `out = sum_j weights[j] * scale * values[j]`, [`CHUNK`] outputs per pass.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `values.len() == weights.len() * out.len()`,
    /// `out.len() % CHUNK == 0`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn weighted_sum<E: KvElem>(
        weights: &[f32],
        values: &[E],
        scale: f32,
        out: &mut [f32],
    ) {
        let d = out.len();
        for c in (0..d).step_by(CHUNK) {
            let mut acc = [_mm256_setzero_ps(); CHUNK / 8];
            for (j, &w) in weights.iter().enumerate() {
                let p = _mm256_set1_ps(w * scale);
                for (t, a) in acc.iter_mut().enumerate() {
                    // SAFETY: row `j` of `values` holds `d` floats and
                    // `c + 8 * t + 8 <= d`.
                    let v = unsafe { E::load8(values.as_ptr().add(j * d + c + 8 * t)) };
                    *a = _mm256_fmadd_ps(p, v, *a);
                }
            }
            for (t, a) in acc.iter().enumerate() {
                // SAFETY: `c + 8 * t + 8 <= d = out.len()`.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * t), *a) };
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
    fn matches_f64_attention_for_any_length_and_width() {
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 2001) as f32 / 1000.0 - 1.0
        };
        let mut scratch = Vec::new();
        for d in [64, 128, 40] {
            for len in [1, 7, 8, 9, 23, 130] {
                let q: Vec<f32> = (0..d).map(|_| next()).collect();
                let keys: Vec<f32> = (0..len * d).map(|_| next() * 3.0).collect();
                let values: Vec<f32> = (0..len * d).map(|_| next()).collect();
                let mut out = vec![f32::NAN; d];
                let scale = 1.0 / (d as f32).sqrt();
                attend(&q, &keys, &values, scale, &mut out, &mut scratch);
                for (got, want) in out.iter().zip(reference(&q, &keys, &values, scale)) {
                    assert!(
                        (*got as f64 - want).abs() < 1e-5,
                        "d {d} len {len}: {got} vs {want}"
                    );
                }
                // An f16 cache: the same attention over the rounded values.
                let half = |xs: &[f32]| xs.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
                let widen = |xs: &[f16]| xs.iter().map(|x| x.to_f32()).collect::<Vec<_>>();
                let (k16, v16) = (half(&keys), half(&values));
                attend(&q, &k16, &v16, scale, &mut out, &mut scratch);
                let want = reference(&q, &widen(&k16), &widen(&v16), scale);
                for (got, want) in out.iter().zip(want) {
                    assert!(
                        (*got as f64 - want).abs() < 1e-5,
                        "f16 d {d} len {len}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
