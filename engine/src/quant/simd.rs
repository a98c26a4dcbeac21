//! The x86 kernels of [`super::kernels`]: Q4_1 and Q8_0 weights times Q8_1
//! activations, eight weight rows at a time over the interleaved layout of
//! [`super::QMatrix`], in three builds (AVX2, and two of VNNI).
//!
//! - AVX2 follows llama.cpp's repacked GEMV (`ggml_gemv_q4_0_8x8_q8_0` in
//!   `ggml-cpu/repack.cpp`): the weights of eight rows for the same four
//!   activation values sit side by side in one 32-byte vector, so one `maddubs`
//!   against the four activations broadcast serves eight rows, the eight scales
//!   convert in one instruction, and one accumulator holds the eight outputs.
//! - VNNI (Intel's Ice Lake and later, AMD's Zen 4 and later): `dpbusd`
//!   multiplies unsigned by signed bytes and adds each four products into an
//!   i32 lane, one instruction where AVX2 takes three (`maddubs`, `madd` by
//!   ones, an add). Built twice: with AVX-512's VL extension (EVEX, 32 vector
//!   registers, so a Q8_0 tile holds eight rows) and with AVX-VNNI (the VEX
//!   encoding of Alder Lake-class cores without AVX-512, sixteen registers).
//!
//! Each format is one body built three times, and only the integer step
//! differs between the builds (VNNI's Q8_0 takes its activations biased to
//! unsigned bytes and subtracts the bias again); the sums are the same
//! integers and the float arithmetic that scales them is shared, so every
//! build gives the same bits (the quant tests compare them). A decode step of
//! many sequences is bound by these kernels' instructions, not memory, so each
//! instruction saved shows in its speed.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::kernels::{lanes, load_f16x8, prefetch};
use super::{BlockQ81, GROUP, QFormat};

/// Generates the Q4_1 kernel of one build. `$features` are the CPU features
/// it needs; `step` adds a record vector's products for one row to its
/// running sum `s` (low nibbles `lo` against activations `x_lo`, high ones
/// `hi` against `x_hi`), and `i32` turns a block's running sum into eight i32
/// lanes.
macro_rules! q4_1_kernel {
    (
        $q4_1:ident, $features:literal,
        step: |$s:ident, $lo:ident, $x_lo:ident, $hi:ident, $x_hi:ident| $q4_step:expr,
        i32: |$t:ident| $q4_sum:expr $(,)?
    ) => {
        /// Q4_1 x Q8_1 for a row group and `N` activation rows. Record: `d[8]`,
        /// `m[8]` as f16, then four 32-byte vectors; byte `4j + k` of vector
        /// `c` is byte `4c + k` of row `j`'s block, so its low nibble pairs
        /// with activation `4c + k` and its high nibble with `16 + 4c + k`. The
        /// minimum's term goes into the same accumulator as the products: the
        /// sum is the same, and it saves `N` registers.
        ///
        /// # Safety
        #[doc = concat!("The CPU features ", $features, "; `group.len() == x.len() * 160` for every `x` of `xs`.")]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $q4_1<const N: usize>(
            group: &[u8],
            xs: [&[BlockQ81]; N],
        ) -> [[f32; GROUP]; N] {
            let rec = QFormat::Q4_1.group_bytes();
            let nb = group.len() / rec;
            let low = _mm256_set1_epi8(0x0F);
            let mut acc = [_mm256_setzero_ps(); N];
            // Raw pointers: the lengths were checked once by the caller's
            // contract, and per-row bounds checks in the inner loop cost
            // registers the tile needs.
            let xp: [*const BlockQ81; N] = xs.map(|x| x.as_ptr());
            for b in 0..nb {
                // SAFETY: record `b` lies inside `group`, and block `b` inside
                // every activation row (the caller's length contract); `qs` is
                // 32 bytes, read 4 at a time.
                unsafe {
                    let p = group.as_ptr().add(b * rec);
                    prefetch(p, rec);
                    let mut sum = [_mm256_setzero_si256(); N];
                    for c in 0..4 {
                        let v = _mm256_loadu_si256(p.add(32 + 32 * c) as *const __m256i);
                        let $lo = _mm256_and_si256(v, low);
                        let $hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                        for (s, x) in sum.iter_mut().zip(&xp) {
                            let xq = (*x.add(b)).qs.as_ptr() as *const i32;
                            let $x_lo = _mm256_set1_epi32(xq.add(c).read_unaligned());
                            let $x_hi = _mm256_set1_epi32(xq.add(4 + c).read_unaligned());
                            let $s = *s;
                            *s = $q4_step;
                        }
                    }
                    let d = load_f16x8(p);
                    let m = load_f16x8(p.add(16));
                    for ((a, $t), x) in acc.iter_mut().zip(sum).zip(&xp) {
                        let xb = &*x.add(b);
                        let isum = _mm256_cvtepi32_ps($q4_sum);
                        *a = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb.d)), isum, *a);
                        *a = _mm256_fmadd_ps(m, _mm256_set1_ps(xb.s), *a);
                    }
                }
            }
            acc.map(|a| lanes(a))
        }
    };
}

// AVX2: a block's products gather as i16 pairs (eight `maddubs` pairs are at
// most 8 * 2 * 15 * 127 < 2^15) and widen once per block.
q4_1_kernel!(
    dot8xn_q4_1_avx2, "avx2,fma,f16c",
    step: |s, lo, x_lo, hi, x_hi| _mm256_add_epi16(
        s,
        _mm256_add_epi16(_mm256_maddubs_epi16(lo, x_lo), _mm256_maddubs_epi16(hi, x_hi)),
    ),
    i32: |s| _mm256_madd_epi16(s, _mm256_set1_epi16(1)),
);
q4_1_kernel!(
    dot8xn_q4_1_avx512, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    step: |s, lo, x_lo, hi, x_hi| _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(s, lo, x_lo), hi, x_hi),
    i32: |s| s,
);
q4_1_kernel!(
    dot8xn_q4_1_avxvnni, "avx2,fma,f16c,avxvnni",
    step: |s, lo, x_lo, hi, x_hi| _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(s, lo, x_lo), hi, x_hi),
    i32: |s| s,
);

/// Generates the Q8_0 kernel of one build. Record: `d[8]` as f16, then eight
/// 32-byte vectors; byte `4j + k` of vector `c` is weight `4c + k` of row `j`.
/// Both integer steps want an unsigned left operand:
/// - AVX2 takes `|w|` times `x` carrying `w`'s sign, the same products (a
///   `maddubs` pair is at most `2 * 127 * 127 < 2^15` and widens at once);
/// - VNNI takes the activations biased (`q + 128` as a byte,
///   [`super::kernels::Kernel::prepare`]) times `w`, and each block's sums
///   lose `128 * sum(w)` again, which one `dpbusd` of ones against each
///   weight vector gives for all `N` rows: one instruction a row where the
///   sign moves took two.
///
/// The integers are the same either way, and so are the bits. `weight` turns
/// a weight vector `w` into its operand and updates the block's weight sum
/// `ws`, `step` adds one row's products of operand `op` (for `w`) and
/// activations `x` to its running sum `s`, and `sum` gives a row's block sum
/// `t` from its running sum and `ws`.
macro_rules! q8_0_kernel {
    (
        $name:ident, $features:literal,
        weight: |$w:ident, $ws:ident| $weight:expr,
        step: |$s:ident, $op:ident, $w2:ident, $x:ident| $step:expr,
        sum: |$t:ident, $ws2:ident| $sum:expr $(,)?
    ) => {
        /// Q8_0 x Q8_1 for a row group and `N` activation rows (as
        /// [`super::kernels::Kernel::prepare`] left them).
        ///
        /// # Safety
        #[doc = concat!("The CPU features ", $features, "; `group.len() == x.len() * 272` for every `x` of `xs`.")]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $name<const N: usize>(
            group: &[u8],
            xs: [&[BlockQ81]; N],
        ) -> [[f32; GROUP]; N] {
            let rec = QFormat::Q8_0.group_bytes();
            let nb = group.len() / rec;
            let mut acc = [_mm256_setzero_ps(); N];
            let xp: [*const BlockQ81; N] = xs.map(|x| x.as_ptr());
            for b in 0..nb {
                // SAFETY: as in the Q4_1 kernels.
                unsafe {
                    let p = group.as_ptr().add(b * rec);
                    prefetch(p, rec);
                    let mut sum = [_mm256_setzero_si256(); N];
                    let mut ws = _mm256_setzero_si256();
                    for c in 0..8 {
                        let w = _mm256_loadu_si256(p.add(16 + 32 * c) as *const __m256i);
                        let ($op, next) = {
                            let ($w, $ws) = (w, ws);
                            $weight
                        };
                        ws = next;
                        for (s, x) in sum.iter_mut().zip(&xp) {
                            let xq = (*x.add(b)).qs.as_ptr() as *const i32;
                            let $x = _mm256_set1_epi32(xq.add(c).read_unaligned());
                            let ($s, $w2) = (*s, w);
                            *s = $step;
                        }
                    }
                    let d = load_f16x8(p);
                    for ((a, $t), x) in acc.iter_mut().zip(sum).zip(&xp) {
                        let $ws2 = ws;
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps((*x.add(b)).d));
                        *a = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps($sum), *a);
                    }
                }
            }
            acc.map(|a| lanes(a))
        }
    };
}

q8_0_kernel!(
    dot8xn_q8_0_avx2, "avx2,fma,f16c",
    weight: |w, ws| (_mm256_sign_epi8(w, w), ws),
    step: |s, aw, w, x| _mm256_add_epi32(
        s,
        _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1)),
    ),
    sum: |t, _ws| t,
);
q8_0_kernel!(
    dot8xn_q8_0_avx512, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    weight: |w, ws| (w, _mm256_dpbusd_epi32(ws, _mm256_set1_epi8(1), w)),
    step: |s, w, _w, x| _mm256_dpbusd_epi32(s, x, w),
    sum: |t, ws| _mm256_sub_epi32(t, _mm256_slli_epi32(ws, 7)),
);
q8_0_kernel!(
    dot8xn_q8_0_avxvnni, "avx2,fma,f16c,avxvnni",
    weight: |w, ws| (w, _mm256_dpbusd_avx_epi32(ws, _mm256_set1_epi8(1), w)),
    step: |s, w, _w, x| _mm256_dpbusd_avx_epi32(s, x, w),
    sum: |t, ws| _mm256_sub_epi32(t, _mm256_slli_epi32(ws, 7)),
);
