//! The AVX-512 kernels of [`super::attend`]: the AVX2 kernels' arithmetic,
//! lane for lane, on 16-lane vectors and 32 registers.
//!
//! - Scores: a vector holds two keys' eight partial sums (lanes 0-7 one key,
//!   8-15 the next), so half the multiply-adds of AVX2; the keys are widened
//!   straight into registers and scored against every head of the group there,
//!   not staged through memory; the eight sums of a key are reduced by the
//!   AVX2 transpose. On one core of a Sapphire Rapids-class VM, 2,160 calls of
//!   three heads over 100 f16 positions held in cache went from 1.93 to 1.31
//!   us a call with the weighted sum below.
//! - Weighted sum: sixty-four outputs of each head per pass over the values
//!   (four vectors), where AVX2 needs four passes; each output lane sees the
//!   same multiply-adds in the same order.
//!
//! Same bits as AVX2 (the module's tests compare them), so a sequence's text
//! does not depend on which of the two a machine runs.

use std::arch::x86_64::*;

use super::avx2::transpose_sum;
use super::{KvElem, ScoreJob, prefetch_block};

/// Scores `job`'s keys for its `H` heads, as [`super::avx2::scores`] does.
/// Whole blocks of eight keys run here; a last partial block goes through
/// the AVX2 kernel, which gives a key the same bits.
///
/// # Safety
/// AVX-512F and DQ, AVX2, FMA and F16C, and the contract of
/// [`super::avx2::scores`], with `q.len() == H * d`.
#[target_feature(enable = "avx512f,avx512dq,avx2,fma,f16c")]
pub(super) unsafe fn scores<E: KvElem, const H: usize>(job: ScoreJob<'_, E>) {
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
    let n = keys.len() / d;
    let whole = n / 8 * 8;
    let scale8 = _mm256_set1_ps(scale);
    let (k, qp) = (keys.as_ptr(), q.as_ptr());
    // SAFETY (all loads and stores below): keys `j..j + 8` lie inside `keys`
    // for `j < whole`, and `c + 8 <= d`; `q` holds `H` rows of `d`; `scores`
    // holds `H` rows of `len` and `at + j + 8 <= at + n <= len`.
    unsafe {
        for j in (0..whole).step_by(8) {
            prefetch_block(keys, values, j, d);
            let mut acc = [[_mm512_setzero_ps(); 4]; H];
            for c in (0..d).step_by(8) {
                let pairs: [__m512; 4] = std::array::from_fn(|p| {
                    let key = |t: usize| k.add((j + 2 * p + t) * d + c);
                    E::load8x2(key(0), key(1))
                });
                for (h, acc) in acc.iter_mut().enumerate() {
                    let qv = _mm512_broadcast_f32x8(_mm256_loadu_ps(qp.add(h * d + c)));
                    for (a, pair) in acc.iter_mut().zip(pairs) {
                        *a = _mm512_fmadd_ps(qv, pair, *a);
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                // Key `t`'s eight partial sums, as the AVX2 kernel holds them.
                let sums: [__m256; 8] = std::array::from_fn(|t| {
                    let pair = acc[t / 2];
                    if t % 2 == 0 {
                        _mm512_castps512_ps256(pair)
                    } else {
                        _mm512_extractf32x8_ps::<1>(pair)
                    }
                });
                let s = _mm256_mul_ps(transpose_sum(sums), scale8);
                _mm256_storeu_ps(scores.as_mut_ptr().add(h * len + at + j), s);
            }
        }
        if whole < n {
            let rest = whole * d..;
            super::avx2::scores(ScoreJob {
                q,
                d,
                keys: &keys[rest.clone()],
                values: &values[rest],
                scale,
                scores,
                len,
                at: at + whole,
                block,
            });
        }
    }
}

// Sixteen outputs a vector: sixty-four of each head per pass (`V = 4`), where
// AVX2 takes four passes.
weighted_sum!(
    "avx512f,fma,f16c", __m512, 16, load16,
    zero: _mm512_setzero_ps, loadu: _mm512_loadu_ps, storeu: _mm512_storeu_ps,
    splat: _mm512_set1_ps, fmadd: _mm512_fmadd_ps,
);
