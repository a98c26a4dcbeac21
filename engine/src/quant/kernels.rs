//! Dot products of quantized weights with Q8_1 activations, eight weight rows at
//! a time over the interleaved layout of [`super::QMatrix`]: the choice of
//! kernel for this CPU, the scalar reference, tiling of rows into kernel calls,
//! and the quantization of activations. The SIMD bodies (AVX2, VNNI) are in
//! `simd.rs`. Eight rows per call is about a third of the instructions per row
//! and block of the one-row kernel (`ggml_vec_dot_q4_1_q8_1`), which on a
//! 2-core machine is the difference between compute-bound and memory-bound
//! decoding.

use half::f16;

#[cfg(target_arch = "x86_64")]
use super::simd;
use super::{BlockQ81, GROUP, QFormat, QK};

/// `$kernel(group, xs)` for `N` rows with at most [`Q8_0_TILE`] rows a call:
/// whole tiles, then any rows left over one by one (a row's bits do not depend
/// on its tile).
#[cfg(target_arch = "x86_64")]
macro_rules! in_tiles_of_four {
    ($kernel:path, $group:expr, $xs:expr) => {{
        let (group, xs) = ($group, $xs);
        if N <= Q8_0_TILE {
            // SAFETY: forwarded from `dot8xn`'s checks.
            return unsafe { $kernel(group, xs) };
        }
        let mut out = [[0f32; GROUP]; N];
        for (o, x) in out.chunks_mut(Q8_0_TILE).zip(xs.chunks(Q8_0_TILE)) {
            // SAFETY: as above, for each chunk of the rows.
            match <[&[BlockQ81]; Q8_0_TILE]>::try_from(x) {
                Ok(x) => o.copy_from_slice(&unsafe { $kernel(group, x) }),
                Err(_) => {
                    for (o, x) in o.iter_mut().zip(x) {
                        *o = unsafe { $kernel(group, [*x]) }[0];
                    }
                }
            }
        }
        out
    }};
}

/// The dot-product implementation chosen for this CPU.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 with AVX-512 VNNI's `dpbusd` on 256-bit vectors (32 registers).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// AVX2 with AVX-VNNI's `dpbusd` (sixteen registers).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
}

impl Kernel {
    /// The fastest kernel this CPU runs (detected once: every product asks).
    pub(super) fn detect() -> Self {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Self::available().pop().unwrap_or(Self::Scalar))
    }

    /// Every kernel this CPU runs, slowest first (the scalar one always).
    pub(super) fn available() -> Vec<Self> {
        #[allow(unused_mut)]
        let mut kernels = vec![Self::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                kernels.push(Self::Avx2);
                if has!("avxvnni") {
                    kernels.push(Self::AvxVnni);
                }
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    kernels.push(Self::Avx512Vnni);
                }
            }
        }
        kernels
    }

    /// Readies quantized activation rows for [`Kernel::dot8xn`] with `format`
    /// weights, in place: the VNNI kernels take Q8_0's activations biased to
    /// unsigned bytes (`q + 128`, which is `q ^ 0x80`).
    pub(super) fn prepare(self, format: QFormat, blocks: &mut [BlockQ81]) {
        #[cfg(target_arch = "x86_64")]
        let biased = format == QFormat::Q8_0 && matches!(self, Self::Avx512Vnni | Self::AvxVnni);
        #[cfg(not(target_arch = "x86_64"))]
        let biased = false;
        if biased {
            for b in blocks {
                for q in &mut b.qs {
                    *q ^= i8::MIN;
                }
            }
        }
    }

    /// The eight dot products of one row group (`group`: its blocks for every
    /// block column, in order) with each of the `N` activation rows `xs` (as
    /// [`Kernel::prepare`] left them). Each
    /// weight vector is loaded and unpacked once for all `N` rows, and a row's
    /// arithmetic is the same whatever `N` is and wherever the row sits in the
    /// tile, so a sequence gets the same bits alone or in a batch.
    #[inline(always)]
    pub(super) fn dot8xn<const N: usize>(
        self,
        format: QFormat,
        group: &[u8],
        xs: [&[BlockQ81]; N],
    ) -> [[f32; GROUP]; N] {
        check_records(format, group, &xs);
        match (self, format) {
            (Self::Scalar, _) => xs.map(|x| dot8_scalar(format, group, x)),
            // SAFETY: the CPU features were detected at run time; the lengths
            // were checked above.
            #[cfg(target_arch = "x86_64")]
            (Self::Avx2, QFormat::Q4_1) => unsafe { simd::dot8xn_q4_1_avx2(group, xs) },
            // Eight weight vectors per block leave sixteen registers room for
            // four rows at a time.
            #[cfg(target_arch = "x86_64")]
            (Self::Avx2, QFormat::Q8_0) => in_tiles_of_four!(simd::dot8xn_q8_0_avx2, group, xs),
            #[cfg(target_arch = "x86_64")]
            (Self::AvxVnni, QFormat::Q4_1) => unsafe { simd::dot8xn_q4_1_avxvnni(group, xs) },
            #[cfg(target_arch = "x86_64")]
            (Self::AvxVnni, QFormat::Q8_0) => {
                in_tiles_of_four!(simd::dot8xn_q8_0_avxvnni, group, xs)
            }
            #[cfg(target_arch = "x86_64")]
            (Self::Avx512Vnni, QFormat::Q4_1) => unsafe { simd::dot8xn_q4_1_avx512(group, xs) },
            // Thirty-two registers hold a whole tile.
            #[cfg(target_arch = "x86_64")]
            (Self::Avx512Vnni, QFormat::Q8_0) => unsafe { simd::dot8xn_q8_0_avx512(group, xs) },
        }
    }
}

impl Kernel {
    /// Whether [`Kernel::dot16xn`] has a body of its own here (AVX-512's
    /// 512-bit vectors), rather than taking one group after the other.
    pub(super) fn pairs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Self::Avx512Vnni = self {
            return true;
        }
        false
    }

    /// The sixteen dot products of two row groups (`a`, then `b`) with each of
    /// the `N` activation rows: [`Kernel::dot8xn`] of each group side by side,
    /// with the same bits.
    ///
    /// On AVX-512 both groups share each 512-bit vector. A 512-bit `dpbusd`
    /// does twice a 256-bit one's work at the same rate here (two a cycle on
    /// Sapphire Rapids), and scaling a block's sums takes one instruction for
    /// sixteen outputs where it took one for eight: one thread's 1536x576 Q4_1
    /// product of 24 rows held in cache ran at 185-205 GMAC/s, against 135-145
    /// on 256-bit vectors.
    ///
    /// Inlined into the caller, as [`Kernel::dot8xn`] is: out of line, every
    /// call copied its `N` rows of outputs once more on the way back (a
    /// `memcpy` of up to 768 bytes a call, 1.2% of the server's time in
    /// steps of 24 sequences).
    #[inline(always)]
    pub(super) fn dot16xn<const N: usize>(
        self,
        format: QFormat,
        a: &[u8],
        b: &[u8],
        xs: [&[BlockQ81]; N],
    ) -> [[f32; 2 * GROUP]; N] {
        #[cfg(target_arch = "x86_64")]
        if self.pairs() {
            check_records(format, a, &xs);
            check_records(format, b, &xs);
            // SAFETY: the CPU features were detected at run time; the lengths
            // were checked above.
            return unsafe {
                match format {
                    QFormat::Q4_1 => simd::dot16xn_q4_1_avx512(a, b, xs),
                    QFormat::Q8_0 => simd::dot16xn_q8_0_avx512(a, b, xs),
                }
            };
        }
        let (lo, hi) = (self.dot8xn(format, a, xs), self.dot8xn(format, b, xs));
        std::array::from_fn(|i| {
            let mut row = [0f32; 2 * GROUP];
            row[..GROUP].copy_from_slice(&lo[i]);
            row[GROUP..].copy_from_slice(&hi[i]);
            row
        })
    }
}

/// Panics unless `group` holds one record for each block of every row of
/// `xs`, and the rows are of one length: the kernels read by those lengths.
fn check_records(format: QFormat, group: &[u8], xs: &[&[BlockQ81]]) {
    let nb = xs.first().map_or(0, |x| x.len());
    assert!(
        xs.iter().all(|x| x.len() == nb) && group.len() == nb * format.group_bytes(),
        "one group record per activation block"
    );
}

/// Activation rows per kernel call in a matrix product: each unpacked weight
/// vector serves eight rows. On the 2-core Zen 3 machine here a 1536x576 Q4_1
/// product of 24-64 rows ran at 105-111 GMAC/s with eight, 83-106 with four.
pub(super) const TILE: usize = 8;
/// Rows per Q8_0 kernel call on sixteen vector registers: four, which measured
/// about 1.2x eight (whose accumulators no longer fit).
#[cfg(target_arch = "x86_64")]
const Q8_0_TILE: usize = 4;
/// Rows per call of the two-group kernels ([`Kernel::dot16xn`]), whose
/// thirty-two 512-bit registers hold twelve rows' sums and outputs. One
/// thread's 1536x576 Q4_1 product held in cache, against tiles of at most
/// eight: 9 rows 51 -> 39 us, 10 rows 53 -> 43, 12 rows 58 -> 51; greedy
/// decode of 18 sequences (nine a thread) ran 8% faster.
pub(super) const PAIR_TILE: usize = 12;

/// Reference arithmetic: each row's block rebuilt in GGUF order, then
/// `d_w * d_x * sum(q_w * q_x) (+ m_w * s_x for Q4_1)` as llama.cpp's scalar code.
fn dot8_scalar(format: QFormat, group: &[u8], x: &[BlockQ81]) -> [f32; GROUP] {
    let rec = format.group_bytes();
    std::array::from_fn(|j| {
        let mut sum = 0f32;
        for (r, xb) in group.chunks_exact(rec).zip(x) {
            let (d, m, q) = format.unpack(r, j);
            let isum: i32 = q.iter().zip(&xb.qs).map(|(&w, &a)| w * a as i32).sum();
            sum += isum as f32 * d * xb.d + m * xb.s;
        }
        sum
    })
}

/// Eight f16 values at `p` widened to f32.
///
/// # Safety
/// `p` must point to 16 readable bytes; the CPU must have F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn load_f16x8(p: *const u8) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: forwarded to the caller.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

/// How far ahead of the record being read the kernels ask for memory, in bytes.
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 2048;

/// Asks for the record [`PREFETCH`] bytes ahead of `p`: the hardware prefetcher
/// alone leaves a decode step about 15% short of what this reaches.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn prefetch(p: *const u8, rec: usize) {
    prefetch_record::<true>(p.wrapping_add(PREFETCH), rec);
}

/// Asks for the `rec` bytes at `p` (a record read later) to be brought into
/// L1 (`L1`) or only as far as L2.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn prefetch_record<const L1: bool>(p: *const u8, rec: usize) {
    use std::arch::x86_64::*;
    for off in (0..rec).step_by(64) {
        let at = p.wrapping_add(off) as *const i8;
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            if L1 {
                _mm_prefetch::<_MM_HINT_T0>(at)
            } else {
                _mm_prefetch::<_MM_HINT_T1>(at)
            }
        };
    }
}

impl Kernel {
    /// [`quantize_row_q8_1`], eight values per instruction on AVX2 (the same
    /// bits: it also rounds half away from zero, as `roundf`).
    pub(super) fn quantize_row(self, x: &[f32], out: &mut [BlockQ81]) {
        assert_eq!(x.len(), out.len() * QK, "one block per 32 values");
        match self {
            Self::Scalar => quantize_row_q8_1(x, out),
            // SAFETY: every other kernel was chosen on a CPU with AVX2; lengths
            // checked above.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 | Self::AvxVnni => unsafe { quantize_row_q8_1_avx2(x, out) },
            // SAFETY: chosen on a CPU with AVX-512 F, BW and VL (and F16C).
            #[cfg(target_arch = "x86_64")]
            Self::Avx512Vnni => unsafe { quantize_row_q8_1_avx512(x, out) },
        }
    }
}

/// Quantizes one row to Q8_1 as llama.cpp's `quantize_row_q8_1_ref`: `d = amax /
/// 127`, values rounded, and `d` and `s = d * sum(q)` rounded through f16.
pub(super) fn quantize_row_q8_1(x: &[f32], out: &mut [BlockQ81]) {
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

/// Sets a block's scale `d` and scaled sum `sum * d`, each rounded through f16
/// and back (to nearest even, as `half` does) in one conversion each way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c")]
fn set_scales(b: &mut BlockQ81, d: f32, sum: i32) {
    use std::arch::x86_64::*;
    let ds = _mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_setr_ps(
        d,
        sum as f32 * d,
        0.0,
        0.0,
    )));
    b.d = _mm_cvtss_f32(ds);
    b.s = _mm_cvtss_f32(_mm_movehdup_ps(ds));
}

/// [`quantize_row_q8_1`] with AVX-512: a block is two vectors, the rounding is
/// the AVX2 build's (a masked add takes the step away from zero), and the
/// bytes narrow with one saturating move per vector (no packs to undo). 24
/// rows of 1536 values took 13.7 microseconds against AVX2's 16.2: each block's
/// chain of reductions and divisions, not its vector work, sets the pace.
///
/// # Safety
/// AVX-512 (F, BW, VL) and F16C; `x.len() == out.len() * QK`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn quantize_row_q8_1_avx512(x: &[f32], out: &mut [BlockQ81]) {
    use std::arch::x86_64::*;
    let sign = _mm512_set1_epi32(i32::MIN);
    let half = _mm512_set1_ps(0.5);
    let one = _mm512_castps_si512(_mm512_set1_ps(1.0));
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        // SAFETY: `xs` holds 32 floats.
        let v: [__m512; 2] =
            std::array::from_fn(|k| unsafe { _mm512_loadu_ps(xs.as_ptr().add(16 * k)) });
        let m = _mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1]));
        let amax = _mm512_reduce_max_ps(m);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let idv = _mm512_set1_ps(id);
        let q = v.map(|v| {
            let r = _mm512_mul_ps(v, idv);
            let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(r);
            let frac = _mm512_abs_ps(_mm512_sub_ps(r, t));
            let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, half);
            // One, with the sign of `r` (AVX-512F's bitwise ops are integer).
            let step = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(r), sign), one);
            let step = _mm512_castsi512_ps(step);
            _mm512_cvtps_epi32(_mm512_mask_add_ps(t, up, t, step))
        });
        // SAFETY: `qs` is 32 bytes; the values are within +-127.
        unsafe {
            let qs = b.qs.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(qs, _mm512_cvtsepi32_epi8(q[0]));
            _mm_storeu_si128(qs.add(1), _mm512_cvtsepi32_epi8(q[1]));
        }
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
        set_scales(b, d, sum);
    }
}

/// [`quantize_row_q8_1`] with AVX2. Scaling is the same single multiply, and
/// rounding is done as `roundf` does it (truncate, then step away from zero when
/// the dropped fraction is at least one half; `r - trunc(r)` is exact), so the
/// blocks are bit-identical to the scalar ones (the quant tests check it). Of a
/// decode step of many sequences, the scalar `roundf` calls took about a tenth;
/// the maximum's horizontal step and the f16 roundings stay in registers (a
/// store and eight scalar compares, and four calls into `half`, took another
/// 4% of a step of 24 sequences).
///
/// # Safety
/// AVX2 and F16C; `x.len() == out.len() * QK`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn quantize_row_q8_1_avx2(x: &[f32], out: &mut [BlockQ81]) {
    use std::arch::x86_64::*;
    let sign = _mm256_set1_ps(-0.0);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        // SAFETY: `xs` holds 32 floats.
        let v: [__m256; 4] =
            std::array::from_fn(|k| unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * k)) });
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vk in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vk));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let idv = _mm256_set1_ps(id);
        let q: [__m256i; 4] = std::array::from_fn(|k| {
            let r = _mm256_mul_ps(v[k], idv);
            let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(r);
            let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(r, t));
            let up = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, half);
            let step = _mm256_or_ps(_mm256_and_ps(r, sign), one);
            _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, step)))
        });
        // The values are within +-127: packing to bytes is exact, and the
        // packs' lane interleave is undone by one permute (llama.cpp's
        // `quantize_row_q8_1` for AVX2 does the same).
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: `qs` is 32 bytes.
        unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, bytes) };
        let total = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let halves = _mm_add_epi32(
            _mm256_castsi256_si128(total),
            _mm256_extracti128_si256::<1>(total),
        );
        let pairs = _mm_add_epi32(halves, _mm_unpackhi_epi64(halves, halves));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(pairs, _mm_shuffle_epi32::<1>(pairs)));
        set_scales(b, d, sum);
    }
}
