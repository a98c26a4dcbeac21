//! Quantized matrix multiplication on the CPU for Q4_1 and Q8_0 weights, the
//! engine's own kernels.
//!
//! candle's CPU backend runs Q4_1 dot products with its generic scalar loop, and its
//! quantized matmul parks spinning worker threads that steal the second core from
//! everything else on a 2-core machine. This module ports llama.cpp's AVX2 kernels
//! (`ggml_vec_dot_q4_1_q8_1`, `ggml_vec_dot_q8_0_q8_0` in
//! `ggml-cpu/arch/x86/quants.c`) and parallelises over output rows with rayon.
//! Numerics follow llama.cpp: activations are quantized per 32 values
//! (`quantize_row_q8_1_ref`: `d = amax / 127`, `s = f16(d * sum(q))`), and
//! `dot = sum_blocks(d_w * d_x * sum(q_w * q_x) (+ m_w * s_x for Q4_1))`.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;

use crate::error::{EngineError, Result};

/// Values per block.
const QK: usize = 32;
/// Block formats with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    /// f16 scale, f16 minimum, 16 bytes of nibbles: `w = d * q + m`.
    Q4_1,
    /// f16 scale, 32 signed bytes: `w = d * q`.
    Q8_0,
}

impl QFormat {
    /// Bytes of one block of 32 values.
    const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }
}

/// A quantized weight matrix `(rows, cols)`, blocks stored row-major as in the GGUF.
#[derive(Debug)]
pub struct QMatrix {
    format: QFormat,
    rows: usize,
    cols: usize,
    /// Raw blocks: `rows * cols / 32` blocks.
    data: Vec<u8>,
}

/// One quantized activation block (Q8_1), scales already widened to f32.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct BlockQ81 {
    qs: [i8; QK],
    d: f32,
    s: f32,
}

impl QMatrix {
    /// Takes the blocks of a 2-D Q4_1 or Q8_0 tensor (`None` for any other type).
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Self>> {
        let format = match q.dtype() {
            GgmlDType::Q4_1 => QFormat::Q4_1,
            GgmlDType::Q8_0 => QFormat::Q8_0,
            _ => return Ok(None),
        };
        let (rows, cols) = q.shape().dims2()?;
        if !cols.is_multiple_of(QK) {
            return Ok(None);
        }
        let data = q.data()?.into_owned();
        if data.len() != rows * cols / QK * format.block_bytes() {
            return Err(EngineError::invalid(
                "weights",
                format!(
                    "{format:?} tensor of {rows}x{cols} has {} bytes",
                    data.len()
                ),
            ));
        }
        Ok(Some(Self {
            format,
            rows,
            cols,
            data,
        }))
    }

    /// Stacks matrices of one format and width into one (rows concatenated).
    pub fn concat(parts: &[&QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.format != first.format || p.cols != first.cols)
        {
            return None;
        }
        Some(QMatrix {
            format: first.format,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            data: parts.iter().flat_map(|p| p.data.iter().copied()).collect(),
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `ids` dequantized to f32 (`w = d * q + m`): an embedding lookup.
    pub fn dequantize_rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let r = id as usize;
            if r >= self.rows {
                return Err(EngineError::invalid(
                    "ids",
                    format!("token id {id} is outside the vocabulary of {}", self.rows),
                ));
            }
            for b in self.row(r).chunks_exact(self.format.block_bytes()) {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                match self.format {
                    QFormat::Q4_1 => {
                        let m = f16::from_le_bytes([b[2], b[3]]).to_f32();
                        let qs = &b[4..];
                        out.extend(qs.iter().map(|q| (q & 0x0F) as f32 * d + m));
                        out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
                    }
                    QFormat::Q8_0 => out.extend(b[2..].iter().map(|&q| q as i8 as f32 * d)),
                }
            }
        }
        Ok(out)
    }

    fn row(&self, r: usize) -> &[u8] {
        let n = self.cols / QK * self.format.block_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    /// `y = x W^T` for `x` of `m` rows of `cols` values; returns `m * rows` values.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        let nb = self.cols / QK;
        let mut xq = vec![
            BlockQ81 {
                qs: [0; QK],
                d: 0.0,
                s: 0.0
            };
            m * nb
        ];
        for (row, blocks) in x.chunks_exact(self.cols).zip(xq.chunks_exact_mut(nb)) {
            quantize_row_q8_1(row, blocks);
        }
        let stripe = (self.rows / (rayon::current_num_threads() * 8)).clamp(8, 256);
        let kernel = Kernel::detect();
        let format = self.format;
        crate::threads::par_features(m, self.rows, stripe, |r, i| {
            kernel.dot(format, self.row(r), &xq[i * nb..(i + 1) * nb])
        })
    }
}

/// `quantize_row_q8_1_ref` with llama.cpp's rounding of `d` and `s` through f16.
fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ81]) {
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.d = f16::from_f32(d).to_f32();
        b.s = f16::from_f32(sum as f32 * d).to_f32();
    }
}

/// The dot-product implementation chosen for this CPU.
#[derive(Debug, Clone, Copy)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Self::Avx2;
        }
        Self::Scalar
    }

    fn dot(self, format: QFormat, w: &[u8], x: &[BlockQ81]) -> f32 {
        match (self, format) {
            (Self::Scalar, QFormat::Q4_1) => dot_q4_1_scalar(w, x),
            (Self::Scalar, QFormat::Q8_0) => dot_q8_0_scalar(w, x),
            // SAFETY: the CPU features were detected at run time.
            #[cfg(target_arch = "x86_64")]
            (Self::Avx2, QFormat::Q4_1) => unsafe { dot_q4_1_avx2(w, x) },
            #[cfg(target_arch = "x86_64")]
            (Self::Avx2, QFormat::Q8_0) => unsafe { dot_q8_0_avx2(w, x) },
        }
    }
}

fn dot_q8_0_scalar(w: &[u8], x: &[BlockQ81]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(QFormat::Q8_0.block_bytes()).zip(x) {
        let d = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let isum: i32 = wb[2..]
            .iter()
            .zip(&xb.qs)
            .map(|(&a, &b)| a as i8 as i32 * b as i32)
            .sum();
        sum += isum as f32 * d * xb.d;
    }
    sum
}

fn dot_q4_1_scalar(w: &[u8], x: &[BlockQ81]) -> f32 {
    let mut sum = 0f32;
    for (wb, xb) in w.chunks_exact(QFormat::Q4_1.block_bytes()).zip(x) {
        let d = f16::from_le_bytes([wb[0], wb[1]]).to_f32();
        let m = f16::from_le_bytes([wb[2], wb[3]]).to_f32();
        let qs = &wb[4..];
        let mut isum = 0i32;
        // Low nibbles hold values 0..16, high nibbles 16..32.
        let (lo, hi) = xb.qs.split_at(QK / 2);
        for ((&q, &a), &b) in qs.iter().zip(lo).zip(hi) {
            isum += (q & 0x0F) as i32 * a as i32 + (q >> 4) as i32 * b as i32;
        }
        sum += isum as f32 * d * xb.d + m * xb.s;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_avx2(w: &[u8], x: &[BlockQ81]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let ones = _mm256_set1_epi16(1);
    for (wb, xb) in w.chunks_exact(QFormat::Q8_0.block_bytes()).zip(x) {
        let p = wb.as_ptr();
        // SAFETY: `wb` holds 34 bytes: an f16 then 32 signed bytes; `qs` is 32 bytes.
        let (d, qw, qx) = unsafe {
            let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                (p as *const u16).read_unaligned() as i32,
            )));
            (
                d,
                _mm256_loadu_si256(p.add(2) as *const __m256i),
                _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i),
            )
        };
        // maddubs needs an unsigned left operand: |w| times x carrying w's sign.
        let aw = _mm256_sign_epi8(qw, qw);
        let sx = _mm256_sign_epi8(qx, qw);
        let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
        let scale = _mm256_set1_ps(d * xb.d);
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dot), acc);
    }
    hsum(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hsum(acc: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let hi = _mm256_extractf128_ps(acc, 1);
    let s = _mm_add_ps(_mm256_castps256_ps128(acc), hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1_avx2(w: &[u8], x: &[BlockQ81]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for (wb, xb) in w.chunks_exact(QFormat::Q4_1.block_bytes()).zip(x) {
        let p = wb.as_ptr();
        // SAFETY: `wb` holds 20 bytes: two f16 then 16 bytes of nibbles.
        let (d, m, qx) = unsafe {
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()));
            let tmp = _mm_loadu_si128(p.add(4) as *const __m128i);
            // Low nibbles are values 0..16, high nibbles 16..32.
            let bytes = _mm256_set_m128i(_mm_srli_epi16(tmp, 4), tmp);
            (
                _mm_cvtss_f32(dm),
                _mm_cvtss_f32(_mm_shuffle_ps(dm, dm, 1)),
                _mm256_and_si256(bytes, low),
            )
        };
        summs += m * xb.s;
        // SAFETY: `qs` is 32 bytes.
        let qy = unsafe { _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i) };
        // u8 x i8 -> pairwise i16 sums -> i32 sums -> f32.
        let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, qy), ones);
        let scale = _mm256_set1_ps(d * xb.d);
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(dot), acc);
    }
    hsum(acc) + summs
}

/// `x W^T` for a quantized `W` as a candle op (no gradient: quantized weights
/// are frozen).
#[derive(Debug, Clone)]
pub struct QMatMulOp(pub Arc<QMatrix>);

impl CustomOp1 for QMatMulOp {
    fn name(&self) -> &'static str {
        "q-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("q-matmul expects f32 activations");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("q-matmul expects contiguous activations");
        };
        let dims = layout.shape().dims();
        let k = *dims.last().unwrap_or(&0);
        if k != self.0.cols {
            candle_core::bail!("q-matmul: input width {k}, weight width {}", self.0.cols);
        }
        let m = (end - start) / k.max(1);
        let out = self.0.matmul(&data[start..end], m);
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("at least one dimension") = self.0.rows;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

/// Applies a quantized matmul to `x` (`[.., cols]` -> `[.., rows]`).
pub fn qmatmul_forward(w: &Arc<QMatrix>, x: &Tensor) -> Result<Tensor> {
    let x = x.contiguous()?;
    Ok(x.apply_op1_no_bwd(&QMatMulOp(w.clone()))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::{Device, Module};

    fn random(n: usize, seed: u64) -> Vec<f32> {
        // xorshift: reproducible without a dependency.
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 20_000) as f32 / 10_000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_candles_q4_1_matmul() {
        matches_candle(GgmlDType::Q4_1);
    }

    #[test]
    fn matches_candles_q8_0_matmul() {
        matches_candle(GgmlDType::Q8_0);
    }

    fn matches_candle(dtype: GgmlDType) {
        let (rows, cols, m) = (72, 256, 5);
        let w = Tensor::from_vec(random(rows * cols, 3), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let ours = Arc::new(QMatrix::from_qtensor(&q).unwrap().unwrap());
        let rows_back = ours.dequantize_rows(&[0, 7]).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap();
        let want_rows: Vec<f32> = [0usize, 7]
            .iter()
            .flat_map(|&r| deq.get(r).unwrap().to_vec1::<f32>().unwrap())
            .collect();
        assert_eq!(rows_back, want_rows, "embedding lookup");
        let x = Tensor::from_vec(random(m * cols, 9), (m, cols), &Device::Cpu).unwrap();
        let want = QMatMul::from_qtensor(q).unwrap().forward(&x).unwrap();
        let got = qmatmul_forward(&ours, &x).unwrap();
        // candle rounds the activation sum `s` as f16(sum) * f16(d), llama.cpp (and
        // we) as f16(sum * d): equal up to f16 rounding of each block's offset.
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = (want - &got).unwrap().abs().unwrap().max_all().unwrap();
        let diff = diff.to_scalar::<f32>().unwrap();
        assert!(
            diff < 2e-3 * scale,
            "max diff {diff} at output scale {scale}"
        );
    }

    #[test]
    fn simd_and_scalar_kernels_agree() {
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            simd_and_scalar_agree(dtype);
        }
    }

    fn simd_and_scalar_agree(dtype: GgmlDType) {
        let (rows, cols) = (16, 512);
        let w = Tensor::from_vec(random(rows * cols, 5), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let mat = QMatrix::from_qtensor(&q).unwrap().unwrap();
        let f = mat.format;
        let x = random(cols, 11);
        let mut xq = vec![
            BlockQ81 {
                qs: [0; QK],
                d: 0.0,
                s: 0.0
            };
            cols / QK
        ];
        quantize_row_q8_1(&x, &mut xq);
        let k = Kernel::detect();
        for r in 0..rows {
            let a = Kernel::Scalar.dot(f, mat.row(r), &xq);
            let b = k.dot(f, mat.row(r), &xq);
            assert!(
                (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                "row {r}: {a} vs {b}"
            );
        }
    }
}
