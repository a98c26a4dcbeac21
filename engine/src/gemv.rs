//! f32 matrix-vector products for decode steps: `x W^T` with a handful of rows in
//! `x`, parallel over output features on the engine pool, with an AVX2+FMA dot
//! product. A decode step reads every weight once; gemm's packing and thread
//! set-up cost more than the arithmetic there.

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};

/// Inputs with at most this many rows use [`gemv`] (decode steps); larger ones
/// go through candle's gemm, which wins once there is a matrix to block.
const GEMV_MAX_ROWS: usize = 4;

pub fn use_gemv(w: &Tensor, x: &Tensor) -> bool {
    rows_of(x) <= GEMV_MAX_ROWS
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && !w.track_op()
        && !x.track_op()
}

fn rows_of(x: &Tensor) -> usize {
    x.dims()[..x.rank().saturating_sub(1)].iter().product()
}

/// `x W^T` for a few rows of `x`, parallel over the output features: a decode step
/// is a matrix-vector product bound by reading `W` once, where gemm's packing and
/// per-call thread set-up cost more than the arithmetic.
pub fn gemv(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (out_f, in_f) = w.dims2()?;
    if x.dims().last() != Some(&in_f) {
        return Err(EngineError::invalid(
            "input",
            format!("width {:?} does not match the weight's {in_f}", x.dims()),
        ));
    }
    let m = rows_of(x);
    let out = crate::weights::with_values(w, |wd| {
        crate::weights::with_values(x, |xd| gemv_rows(wd, out_f, xd, m))
    })??;
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank >= 1") = out_f;
    Ok(Tensor::from_vec(out, dims, &Device::Cpu)?)
}

/// `x W^T` for `W` `(out_f, in_f)` row-major and `m` rows of `x`: `m * out_f`
/// values, row-major.
pub fn gemv_rows(w: &[f32], out_f: usize, x: &[f32], m: usize) -> Vec<f32> {
    gemv_rows_parts(w, &[out_f], x, m).pop().expect("one part")
}

/// [`gemv_rows`] of a `W` that stacks several projections (`widths` of them
/// sum to its rows), each projection's `m * widths[p]` outputs in its own
/// buffer.
pub fn gemv_rows_parts(w: &[f32], widths: &[usize], x: &[f32], m: usize) -> Vec<Vec<f32>> {
    let out_f: usize = widths.iter().sum();
    let in_f = w.len() / out_f.max(1);
    debug_assert_eq!(x.len(), m * in_f);
    let dot = dot_f32_kernel();
    crate::threads::par_features_parts(m, widths, 64, |features, dst| {
        for r in features {
            let w = &w[r * in_f..(r + 1) * in_f];
            for (i, x) in x.chunks_exact(in_f).enumerate() {
                dst.set(i, r, dot(w, x));
            }
        }
    })
}

/// The f32 dot product for this CPU: AVX2+FMA when it has them.
fn dot_f32_kernel() -> fn(&[f32], &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU features were detected at run time.
        return |a, b| unsafe { dot_f32_avx2(a, b) };
    }
    dot_f32_portable
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    // SAFETY: every load reads 8 floats at i < n - 15 (or n - 7) of both slices.
    unsafe {
        while i + 16 <= n {
            s0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                s0,
            );
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                s1,
            );
            i += 16;
        }
        while i + 8 <= n {
            s0 = _mm256_fmadd_ps(
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
                s0,
            );
            i += 8;
        }
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(s0, s1)) };
    lanes.iter().sum::<f32>() + dot_f32_portable(&a[i..n], &b[i..n])
}

/// f32 dot product with eight independent accumulators (vectorised by LLVM).
fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemv_matches_candles_matmul() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (130, 77), &dev).unwrap();
        for m in [1, 3] {
            let x = Tensor::randn(0f32, 1.0, (1, m, 77), &dev).unwrap();
            let want = x.broadcast_matmul(&w.t().unwrap()).unwrap();
            let got = gemv(&w, &x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (want - got).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4, "m={m}: {diff}");
        }
    }
}
