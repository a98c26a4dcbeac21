//! The Q4_1 and Q8_0 kernels of [`super::kernels`] on CPUs with VNNI (Intel's
//! Ice Lake and later, AMD's Zen 4 and later): `dpbusd` multiplies unsigned by
//! signed bytes and adds each four products into an i32 lane, one instruction
//! where AVX2 takes three (`maddubs`, then `madd` by ones, then an add). The
//! weight layout, the integer sums and the float arithmetic that scales them
//! are those of the AVX2 kernels, so the outputs have the same bits (the quant
//! tests compare every kernel the CPU has with AVX2).
//!
//! Two builds of one body: with AVX-512's VL extension (EVEX encoding, 32 vector
//! registers, so eight Q8_0 rows fit in a tile) and with AVX-VNNI (the VEX
//! encoding of Alder Lake-class cores that lack AVX-512, sixteen registers). A
//! decode step of many sequences is bound by these kernels' instructions, not
//! memory, so the fewer instructions show directly in its speed.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::kernels::{lanes, load_f16x8, prefetch};
use super::{BlockQ81, GROUP, QFormat};

/// Generates the Q4_1 and Q8_0 kernels for one VNNI encoding: `$dp` is that
/// encoding's `dpbusd` intrinsic and `$features` the CPU features it needs.
macro_rules! vnni_kernels {
    ($q4_1:ident, $q8_0:ident, $features:literal, $dp:ident) => {
        /// Q4_1 x Q8_1 for a row group and `N` activation rows, with the record
        /// layout of `dot8xn_q4_1_avx2`: lane `j` of each `dpbusd` sums four
        /// products of row `j`.
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
            let xp: [*const BlockQ81; N] = xs.map(|x| x.as_ptr());
            for b in 0..nb {
                // SAFETY: record `b` lies inside `group`, and block `b` inside
                // every activation row (the caller's length contract).
                unsafe {
                    let p = group.as_ptr().add(b * rec);
                    prefetch(p, rec);
                    let mut sum = [_mm256_setzero_si256(); N];
                    for c in 0..4 {
                        let v = _mm256_loadu_si256(p.add(32 + 32 * c) as *const __m256i);
                        let lo = _mm256_and_si256(v, low);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                        for (s, x) in sum.iter_mut().zip(&xp) {
                            let xq = (*x.add(b)).qs.as_ptr() as *const i32;
                            let x_lo = _mm256_set1_epi32(xq.add(c).read_unaligned());
                            let x_hi = _mm256_set1_epi32(xq.add(4 + c).read_unaligned());
                            *s = $dp($dp(*s, lo, x_lo), hi, x_hi);
                        }
                    }
                    let d = load_f16x8(p);
                    let m = load_f16x8(p.add(16));
                    for ((a, s), x) in acc.iter_mut().zip(sum).zip(&xp) {
                        let xb = &*x.add(b);
                        let isum = _mm256_cvtepi32_ps(s);
                        *a = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb.d)), isum, *a);
                        *a = _mm256_fmadd_ps(m, _mm256_set1_ps(xb.s), *a);
                    }
                }
            }
            acc.map(|a| lanes(a))
        }

        /// Q8_0 x Q8_1 for a row group and `N` activation rows, with the record
        /// layout of `dot8xn_q8_0_avx2`. `dpbusd` wants an unsigned left
        /// operand: `|w|` times `x` carrying `w`'s sign, the same products.
        ///
        /// # Safety
        #[doc = concat!("The CPU features ", $features, "; `group.len() == x.len() * 272` for every `x` of `xs`.")]
        #[target_feature(enable = $features)]
        pub(super) unsafe fn $q8_0<const N: usize>(
            group: &[u8],
            xs: [&[BlockQ81]; N],
        ) -> [[f32; GROUP]; N] {
            let rec = QFormat::Q8_0.group_bytes();
            let nb = group.len() / rec;
            let mut acc = [_mm256_setzero_ps(); N];
            let xp: [*const BlockQ81; N] = xs.map(|x| x.as_ptr());
            for b in 0..nb {
                // SAFETY: as in the Q4_1 kernel.
                unsafe {
                    let p = group.as_ptr().add(b * rec);
                    prefetch(p, rec);
                    let mut sum = [_mm256_setzero_si256(); N];
                    for c in 0..8 {
                        let w = _mm256_loadu_si256(p.add(16 + 32 * c) as *const __m256i);
                        let aw = _mm256_sign_epi8(w, w);
                        for (s, x) in sum.iter_mut().zip(&xp) {
                            let xq = (*x.add(b)).qs.as_ptr() as *const i32;
                            let xv = _mm256_set1_epi32(xq.add(c).read_unaligned());
                            *s = $dp(*s, aw, _mm256_sign_epi8(xv, w));
                        }
                    }
                    let d = load_f16x8(p);
                    for ((a, s), x) in acc.iter_mut().zip(sum).zip(&xp) {
                        let scale = _mm256_mul_ps(d, _mm256_set1_ps((*x.add(b)).d));
                        *a = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(s), *a);
                    }
                }
            }
            acc.map(|a| lanes(a))
        }
    };
}

vnni_kernels!(
    dot8xn_q4_1_avx512,
    dot8xn_q8_0_avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    _mm256_dpbusd_epi32
);
vnni_kernels!(
    dot8xn_q4_1_avxvnni,
    dot8xn_q8_0_avxvnni,
    "avx2,fma,f16c,avxvnni",
    _mm256_dpbusd_avx_epi32
);
