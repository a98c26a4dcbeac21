//! Elementwise `exp`, maximum, sum of squares and threshold search over slices,
//! eight lanes at a time on AVX2 (sixteen for the softmax passes and the
//! maximum where the CPU has AVX-512, with the same bits), for the parts of a
//! decode step that are not matrix products: the softmax of attention,
//! RMSNorm, the SiLU of the MLP, and the sampler's normaliser and candidates.
//! With many sequences in a step these are millions of `expf` calls and scans
//! of the whole vocabulary per token; libm's scalar `expf` alone was a tenth
//! of the step.
//!
//! The vector `exp` is Cephes' `expf` (the same range reduction and degree-5
//! polynomial as `exp256_ps` in avx_mathfun, Giovanni Garberoglio's port used by
//! many SIMD libraries): relative error below 2e-7 over the float range.
//! A slice's tail goes through the same vector code in a padded buffer, so an
//! element's result does not depend on where it sits in its slice: a sequence
//! decoded alone or in a batch sees the same bits.

/// `xs[i] = exp(xs[i] - shift)`; returns the sum of the results (the softmax
/// normaliser).
pub fn exp_shifted(xs: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx512::exp_shifted(xs, shift) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx2::exp_shifted(xs, shift) };
    }
    let mut sum = 0.0;
    for x in xs {
        *x = (*x - shift).exp();
        sum += *x;
    }
    sum
}

/// `sum(exp((x - shift) * scale))` over `xs`, leaving `xs` as it is (a
/// temperature softmax's normaliser).
pub fn sum_exp_scaled(xs: &[f32], shift: f32, scale: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx512::sum_exp_scaled(xs, shift, scale) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx2::sum_exp_scaled(xs, shift, scale) };
    }
    xs.iter().map(|&x| ((x - shift) * scale).exp()).sum()
}

/// `sum(x^2)` over `xs` (RMSNorm's statistic), in eight lanes: a plain `sum`
/// is one chain of dependent additions, which for every row of every norm of a
/// many-sequence step ran on one core while the others waited.
pub fn sum_squares(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx2::sum_squares(xs) };
    }
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x * x;
        }
    }
    lanes.iter().sum::<f32>() + tail.iter().map(|x| x * x).sum::<f32>()
}

/// SwiGLU's gate: `g[i] = silu(g[i]) * u[i]`, with `silu(x) = x / (1 + exp(-x))`.
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "gate and up projections differ in width");
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU features were detected at run time; lengths checked.
        return unsafe { avx2::silu_mul(g, u) };
    }
    for (g, u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// The largest value (`-inf` for none). NaNs are skipped on every path.
pub fn max(xs: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx512::max(xs) };
    }
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx2::max(xs) };
    }
    xs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Indices of the values at least `floor`, in order (a sampler's candidates:
/// a few dozen of a vocabulary of tens of thousands, found eight at a time).
pub fn indices_at_least(xs: &[f32], floor: f32) -> Vec<u32> {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU features were detected at run time.
        return unsafe { avx2::indices_at_least(xs, floor) };
    }
    (0..xs.len() as u32)
        .filter(|&i| xs[i as usize] >= floor)
        .collect()
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    avx2() && std::arch::is_x86_feature_detected!("avx512f")
}

/// The vector `exp`'s constants, shared by its AVX2 and AVX-512 builds (the
/// same constants give the same bits).
#[cfg(target_arch = "x86_64")]
mod exp_consts {
    /// Above this, `+inf`.
    pub const HI: f32 = 88.376_26;
    /// Below this, 0.
    pub const LO: f32 = -87.336_55;
    /// ln 2 in two parts, so `n * ln2` is exact enough (Cody-Waite).
    pub const LN2_HI: f32 = 0.693_359_4;
    /// The rest of ln 2.
    pub const LN2_LO: f32 = -2.121_944_4e-4;
    /// The polynomial's leading coefficient.
    pub const P0: f32 = 1.987_569_1e-4;
    /// Its other coefficients, highest degree first (Horner).
    pub const P: [f32; 5] = [1.398_2e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::exp_consts::*;

    /// `e^x` in eight lanes (Cephes `expf`): `x = n ln2 + r` with `|r| <= ln2 / 2`,
    /// `e^r` by a polynomial, `2^n` built in the exponent bits. Below the
    /// smallest normal result it gives 0 (`-inf` included), and above 88.376
    /// `+inf` (libm overflows at 88.723; the callers feed values at most 0, or
    /// divide by the result).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp8(x: __m256) -> __m256 {
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(LO));
        let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(HI));
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LO)), _mm256_set1_ps(HI));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut y = _mm256_set1_ps(P0);
        for c in P {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
        }
        y = _mm256_fmadd_ps(
            y,
            _mm256_mul_ps(r, r),
            _mm256_add_ps(r, _mm256_set1_ps(1.0)),
        );
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        let y = _mm256_mul_ps(y, pow2n);
        let y = _mm256_andnot_ps(under, y);
        _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), over)
    }

    /// Applies `f` to `xs` eight at a time, the tail in a padded copy.
    #[target_feature(enable = "avx2,fma")]
    fn map8(xs: &mut [f32], mut f: impl FnMut(__m256, usize) -> __m256) {
        let mut chunks = xs.chunks_exact_mut(8);
        let mut at = 0;
        for c in &mut chunks {
            // SAFETY: `c` holds eight floats.
            unsafe { _mm256_storeu_ps(c.as_mut_ptr(), f(_mm256_loadu_ps(c.as_ptr()), at)) };
            at += 8;
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut pad = [0f32; 8];
            pad[..tail.len()].copy_from_slice(tail);
            // SAFETY: `pad` holds eight floats.
            unsafe { _mm256_storeu_ps(pad.as_mut_ptr(), f(_mm256_loadu_ps(pad.as_ptr()), at)) };
            let n = tail.len();
            tail.copy_from_slice(&pad[..n]);
        }
    }

    /// The lanes of `v` added, in a fixed order.
    #[target_feature(enable = "avx2")]
    pub(super) fn hsum(v: __m256) -> f32 {
        let mut l = [0f32; 8];
        // SAFETY: `l` holds eight floats.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
        ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
    }

    /// The first `n` lanes set (the valid lanes of a padded tail).
    #[target_feature(enable = "avx2")]
    fn first(n: usize) -> __m256 {
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn max(xs: &[f32]) -> f32 {
        max_onto(_mm256_set1_ps(f32::NEG_INFINITY), xs)
    }

    /// The largest of `xs` and the lanes of `m` (NaNs skipped).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn max_onto(mut m: __m256, xs: &[f32]) -> f32 {
        let chunks = xs.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            // SAFETY: `c` holds eight floats. `max_ps(v, m)` returns `m` when
            // `v` is NaN, so NaNs are skipped.
            m = _mm256_max_ps(unsafe { _mm256_loadu_ps(c.as_ptr()) }, m);
        }
        let mut l = [0f32; 8];
        // SAFETY: `l` holds eight floats.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), m) };
        l.iter()
            .chain(tail)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_squares(xs: &[f32]) -> f32 {
        // Four accumulators: the multiply-adds of one chunk overlap.
        let mut acc = [_mm256_setzero_ps(); 4];
        let chunks = xs.chunks_exact(32);
        let tail = chunks.remainder();
        for c in chunks {
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: `c` holds 32 floats.
                let v = unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * k)) };
                *a = _mm256_fmadd_ps(v, v, *a);
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut l = [0f32; 8];
        // SAFETY: `l` holds eight floats.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), v) };
        l.iter().sum::<f32>() + tail.iter().map(|x| x * x).sum::<f32>()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn indices_at_least(xs: &[f32], floor: f32) -> Vec<u32> {
        let f = _mm256_set1_ps(floor);
        let mut out = Vec::new();
        let chunks = xs.chunks_exact(8);
        let base = xs.len() - chunks.remainder().len();
        for (c, chunk) in chunks.enumerate() {
            // SAFETY: `chunk` holds eight floats.
            let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
            let mut mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(v, f)) as u32;
            while mask != 0 {
                out.push((8 * c) as u32 + mask.trailing_zeros());
                mask &= mask - 1;
            }
        }
        for (i, &x) in xs[base..].iter().enumerate() {
            if x >= floor {
                out.push((base + i) as u32);
            }
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_shifted(xs: &mut [f32], shift: f32) -> f32 {
        hsum(exp_shifted_onto(_mm256_setzero_ps(), xs, shift))
    }

    /// [`exp_shifted`] adding the results onto `acc`: lane `i` takes
    /// elements `i`, `8 + i`, ... in turn (the AVX-512 kernels continue a
    /// sum here).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn exp_shifted_onto(mut acc: __m256, xs: &mut [f32], shift: f32) -> __m256 {
        let len = xs.len();
        let s = _mm256_set1_ps(shift);
        map8(xs, |v, at| {
            let e = exp8(_mm256_sub_ps(v, s));
            acc = _mm256_add_ps(acc, _mm256_and_ps(e, first(len - at)));
            e
        });
        acc
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_exp_scaled(xs: &[f32], shift: f32, scale: f32) -> f32 {
        hsum(sum_exp_scaled_onto(_mm256_setzero_ps(), xs, shift, scale))
    }

    /// [`sum_exp_scaled`]'s terms added onto `acc`, lane by lane as
    /// [`exp_shifted_onto`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum_exp_scaled_onto(
        mut acc: __m256,
        xs: &[f32],
        shift: f32,
        scale: f32,
    ) -> __m256 {
        let (s, k) = (_mm256_set1_ps(shift), _mm256_set1_ps(scale));
        let term = |v: __m256| exp8(_mm256_mul_ps(_mm256_sub_ps(v, s), k));
        let chunks = xs.chunks_exact(8);
        let tail = chunks.remainder();
        for c in chunks {
            // SAFETY: `c` holds eight floats.
            acc = _mm256_add_ps(acc, term(unsafe { _mm256_loadu_ps(c.as_ptr()) }));
        }
        if !tail.is_empty() {
            let mut pad = [0f32; 8];
            pad[..tail.len()].copy_from_slice(tail);
            // SAFETY: `pad` holds eight floats.
            let e = term(unsafe { _mm256_loadu_ps(pad.as_ptr()) });
            acc = _mm256_add_ps(acc, _mm256_and_ps(e, first(tail.len())));
        }
        acc
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn silu_mul(g: &mut [f32], u: &[f32]) {
        let one = _mm256_set1_ps(1.0);
        let sign = _mm256_set1_ps(-0.0);
        let f = |v: __m256, up: __m256| {
            let denom = _mm256_add_ps(one, exp8(_mm256_xor_ps(v, sign)));
            _mm256_mul_ps(_mm256_div_ps(v, denom), up)
        };
        let mut gs = g.chunks_exact_mut(8);
        let us = u.chunks_exact(8);
        let u_tail = us.remainder();
        for (gc, uc) in (&mut gs).zip(us) {
            // SAFETY: both chunks hold eight floats.
            unsafe {
                let v = f(_mm256_loadu_ps(gc.as_ptr()), _mm256_loadu_ps(uc.as_ptr()));
                _mm256_storeu_ps(gc.as_mut_ptr(), v);
            }
        }
        let g_tail = gs.into_remainder();
        if !g_tail.is_empty() {
            let n = g_tail.len();
            let (mut gp, mut up) = ([0f32; 8], [0f32; 8]);
            gp[..n].copy_from_slice(g_tail);
            up[..n].copy_from_slice(u_tail);
            // SAFETY: both buffers hold eight floats.
            unsafe {
                let v = f(_mm256_loadu_ps(gp.as_ptr()), _mm256_loadu_ps(up.as_ptr()));
                _mm256_storeu_ps(gp.as_mut_ptr(), v);
            }
            g_tail.copy_from_slice(&gp[..n]);
        }
    }
}

/// The AVX-512 builds of the sampler's and attention's passes: [`avx2`]'s
/// arithmetic lane for lane on sixteen lanes, so the same bits. A 16-value
/// chunk's `exp` is [`avx2::exp8`]'s operations on both halves at once, and
/// its halves join the eight-lane sum one after the other, as two chunks of
/// eight do there; a tail of fewer than sixteen continues in the AVX2 code.
/// On one core of a Sapphire Rapids-class VM, the maximum and normaliser of
/// a row of 49,152 logits took 19.7 us against AVX2's 31, and a softmax of
/// 100 attention scores 74 ns against 91.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::avx2;
    use super::exp_consts::*;

    /// [`avx2::exp8`] on sixteen lanes.
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn exp16(x: __m512) -> __m512 {
        let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(LO));
        let over = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(HI));
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(LO)), _mm512_set1_ps(HI));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut y = _mm512_set1_ps(P0);
        for c in P {
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
        }
        y = _mm512_fmadd_ps(
            y,
            _mm512_mul_ps(r, r),
            _mm512_add_ps(r, _mm512_set1_ps(1.0)),
        );
        let pow2n = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
            _mm512_cvtps_epi32(n),
            _mm512_set1_epi32(127),
        )));
        let y = _mm512_maskz_mov_ps(!under, _mm512_mul_ps(y, pow2n));
        _mm512_mask_blend_ps(over, y, _mm512_set1_ps(f32::INFINITY))
    }

    /// The low and high eight lanes of `v`.
    #[target_feature(enable = "avx512f")]
    fn halves(v: __m512) -> (__m256, __m256) {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        (_mm512_castps512_ps256(v), hi)
    }

    /// `acc + low half + high half`, in that order.
    #[target_feature(enable = "avx512f,avx2")]
    fn add_halves(acc: __m256, v: __m512) -> __m256 {
        let (lo, hi) = halves(v);
        _mm256_add_ps(_mm256_add_ps(acc, lo), hi)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn exp_shifted(xs: &mut [f32], shift: f32) -> f32 {
        let s = _mm512_set1_ps(shift);
        let mut acc = _mm256_setzero_ps();
        let mut chunks = xs.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: `c` holds sixteen floats.
            unsafe {
                let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), s));
                _mm512_storeu_ps(c.as_mut_ptr(), e);
                acc = add_halves(acc, e);
            }
        }
        avx2::hsum(avx2::exp_shifted_onto(acc, chunks.into_remainder(), shift))
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn sum_exp_scaled(xs: &[f32], shift: f32, scale: f32) -> f32 {
        let (s, k) = (_mm512_set1_ps(shift), _mm512_set1_ps(scale));
        let mut acc = _mm256_setzero_ps();
        let chunks = xs.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            // SAFETY: `c` holds sixteen floats.
            let v = unsafe { _mm512_loadu_ps(c.as_ptr()) };
            acc = add_halves(acc, exp16(_mm512_mul_ps(_mm512_sub_ps(v, s), k)));
        }
        avx2::hsum(avx2::sum_exp_scaled_onto(acc, rest, shift, scale))
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn max(xs: &[f32]) -> f32 {
        let chunks = xs.chunks_exact(16);
        let rest = chunks.remainder();
        let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
        for c in chunks {
            // SAFETY: `c` holds sixteen floats. As in AVX2, a NaN in `c`
            // leaves `m` as it was.
            m = _mm512_max_ps(unsafe { _mm512_loadu_ps(c.as_ptr()) }, m);
        }
        let (lo, hi) = halves(m);
        avx2::max_onto(_mm256_max_ps(hi, lo), rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Vec<f32> {
        (-2000..=2000).map(|i| i as f32 * 0.0443).collect()
    }

    #[test]
    fn exp_agrees_with_libm_to_float_rounding() {
        let mut xs = grid();
        xs.extend([-200.0, -88.0, -87.0, 88.0, 89.0, f32::NEG_INFINITY, 0.0]);
        let mut got = xs.clone();
        exp_shifted(&mut got, 0.0);
        for (x, g) in xs.iter().zip(&got) {
            let want = x.exp();
            if *x > 88.376 {
                assert!(g.is_infinite(), "{x}: {g}");
            } else if want == 0.0 || want < f32::MIN_POSITIVE {
                assert!(
                    *g == want || (*g - want).abs() < f32::MIN_POSITIVE,
                    "{x}: {g}"
                );
            } else {
                assert!(
                    ((g - want) / want).abs() < 3e-7,
                    "exp({x}) = {g}, libm {want}"
                );
            }
        }
    }

    #[test]
    fn sums_and_tails_do_not_depend_on_position() {
        let xs: Vec<f32> = grid().into_iter().map(|x| x * 0.1).collect();
        for len in [1, 7, 8, 9, 31, 100] {
            let mut a = xs[..len].to_vec();
            let sum = exp_shifted(&mut a, 1.5);
            let want: f32 = xs[..len].iter().map(|x| (x - 1.5).exp()).sum();
            assert!((sum - want).abs() <= want * 1e-6, "{len}: {sum} vs {want}");
            assert!((a.iter().sum::<f32>() - sum).abs() <= sum * 1e-6);
            // The same value lands in a different lane of a longer slice.
            let mut b = xs[1..len + 1].to_vec();
            exp_shifted(&mut b, 1.5);
            let mut c = xs[..len + 1].to_vec();
            exp_shifted(&mut c, 1.5);
            assert_eq!(b, c[1..], "length {len}");
            let scaled = sum_exp_scaled(&xs[..len], 1.5, 0.5);
            let want: f32 = xs[..len].iter().map(|x| ((x - 1.5) * 0.5).exp()).sum();
            assert!(
                (scaled - want).abs() <= want * 1e-6,
                "{len}: {scaled} vs {want}"
            );
        }
    }

    #[test]
    fn max_and_candidates_match_the_plain_loops() {
        let xs: Vec<f32> = grid().into_iter().map(|x| (x * 7.3).sin() * x).collect();
        for len in [0, 1, 7, 8, 9, 100, 4001] {
            let xs = &xs[..len];
            let want = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(xs), want, "{len}");
            for floor in [want - 3.0, want, 0.0] {
                let want: Vec<u32> = (0..len as u32)
                    .filter(|&i| xs[i as usize] >= floor)
                    .collect();
                assert_eq!(indices_at_least(xs, floor), want, "{len} {floor}");
            }
        }
        assert_eq!(
            max(&[1.0, f32::NAN, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0, f32::NAN]),
            3.0
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_passes_give_the_avx2_bits() {
        if !avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        // Values of a few units, where the order of the additions shows in
        // the sum's last bits; an exp that underflows, and one of -inf.
        let mut xs: Vec<f32> = grid().into_iter().map(|x| (x * 3.1).sin() * 4.0).collect();
        xs[5] = f32::NEG_INFINITY;
        xs[20] = -200.0;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for len in [0, 1, 7, 8, 15, 16, 17, 31, 33, 100, 4001] {
            let xs = &xs[..len];
            // SAFETY: both kernels' features were detected above.
            unsafe {
                let (mut a, mut b) = (xs.to_vec(), xs.to_vec());
                let (sa, sb) = (
                    avx2::exp_shifted(&mut a, 1.5),
                    avx512::exp_shifted(&mut b, 1.5),
                );
                assert_eq!((sa.to_bits(), bits(&a)), (sb.to_bits(), bits(&b)), "{len}");
                let (sa, sb) = (
                    avx2::sum_exp_scaled(xs, 2.0, 1.0 / 0.7),
                    avx512::sum_exp_scaled(xs, 2.0, 1.0 / 0.7),
                );
                assert_eq!(sa.to_bits(), sb.to_bits(), "{len}");
                assert_eq!(avx2::max(xs).to_bits(), avx512::max(xs).to_bits(), "{len}");
            }
        }
    }

    #[test]
    fn sum_squares_matches_f64() {
        let xs: Vec<f32> = grid().into_iter().map(|x| (x * 1.7).cos() * x).collect();
        for len in [0, 1, 7, 8, 31, 32, 33, 576, 4001] {
            let want: f64 = xs[..len].iter().map(|&x| x as f64 * x as f64).sum();
            let got = sum_squares(&xs[..len]) as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.max(1.0),
                "{len}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn silu_mul_matches_the_formula() {
        let g0: Vec<f32> = grid().into_iter().map(|x| x * 0.3).collect();
        let u: Vec<f32> = g0.iter().map(|x| 1.0 - x * 0.01).collect();
        let mut g = g0.clone();
        silu_mul(&mut g[..4001], &u[..4001]);
        for ((x, u), got) in g0.iter().zip(&u).zip(&g) {
            let want = x / (1.0 + (-x).exp()) * u;
            assert!(
                (got - want).abs() <= want.abs() * 1e-6 + 1e-30,
                "{x}: {got} vs {want}"
            );
        }
    }
}
