//! The AVX2 kernels of [`super::attend`]: eight keys scored per pass with
//! the eight sums reduced by one transpose, and the weighted sum of the values
//! with the output rows held in registers. Every CPU with AVX2 runs these; the
//! AVX-512 kernels ([`super::avx512`]) reproduce their arithmetic lane for lane.

use std::arch::x86_64::*;

use super::{KvElem, ScoreJob, prefetch_block};

/// Head widths the kernels take: a multiple of the widest value pass.
pub(super) const CHUNK: usize = 64;

/// Scores `job`'s keys. Eight keys at a time are widened once into
/// `block` and scored against every head from there; the last few go through
/// the same code padded with zero keys, so a key's score does not depend on
/// where it sits.
///
/// # Safety
/// AVX2, FMA and F16C; `q.len() == heads * d` with `d % 8 == 0`,
/// `keys.len() == values.len() == n * d` with `at + n <= len`,
/// `scores.len() == heads * len` and `block.len() >= 8 * d`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn scores<E: KvElem>(job: ScoreJob<'_, E>) {
    let ScoreJob {
        q,
        d,
        keys,
        values,
        scale,
        scores,
        len,
        at,
        block,
    } = job;
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
            prefetch_block(keys, values, j, d);
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
pub(super) fn transpose_sum(a: [__m256; 8]) -> __m256 {
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

// Eight outputs a vector.
weighted_sum!(
    "avx2,fma,f16c", __m256, 8, load8,
    zero: _mm256_setzero_ps, loadu: _mm256_loadu_ps, storeu: _mm256_storeu_ps,
    splat: _mm256_set1_ps, fmadd: _mm256_fmadd_ps,
);
