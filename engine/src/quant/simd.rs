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
//! - AVX-512 also has a body for two groups at once (sixteen outputs, one
//!   group in each half of a 512-bit vector): a 512-bit `dpbusd` does twice a
//!   256-bit one's work at the same rate on Sapphire Rapids (two a cycle).
//!
//! Each format is one body built three times, and only the integer step
//! differs between the builds (VNNI's Q8_0 takes its activations biased to
//! unsigned bytes and subtracts the bias again); the sums are the same
//! integers and the float arithmetic that scales them is shared, so every
//! build gives the same bits (the quant tests compare them); the two-group
//! bodies repeat the AVX-512 ones lane for lane. A decode step of many
//! sequences is bound by these kernels' instructions, not memory, so each
//! instruction saved shows in its speed.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::kernels::{load_f16x8, prefetch, prefetch_record};
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
            rows8(acc)
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
            rows8(acc)
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

/// Q4_1 x Q8_1 for two row groups (`a`, then `b`: sixteen outputs) and `N`
/// activation rows, on 512-bit vectors: lanes 0-7 are `a`'s rows and 8-15
/// `b`'s, and each lane does the arithmetic of [`dot8xn_q4_1_avx512`]'s, so
/// the bits are the same.
///
/// The two groups are two streams through memory. Each block asks for the
/// same record of the next pair (two groups on) into L1, and of the pair
/// after it into L2. 2 KiB ahead, as the one-group kernels ask, is the pair's
/// own second group for the first stream and nothing ahead for the second:
/// one thread's products from memory ran 20-30% slower that way, at 1 to 24
/// rows. The L2 requests do not hold one of L1's few miss buffers, so more of
/// them are in flight: whole-model decode of one sequence ran 13-21% faster
/// with them, of 24 sequences 0-5%.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI, F16C; `a.len() == b.len() == x.len() * 160`
/// for every `x` of `xs`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn dot16xn_q4_1_avx512<const N: usize>(
    a: &[u8],
    b: &[u8],
    xs: [&[BlockQ81]; N],
) -> [[f32; 2 * GROUP]; N] {
    let rec = QFormat::Q4_1.group_bytes();
    let nb = a.len() / rec;
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); N];
    let xp: [*const BlockQ81; N] = xs.map(|x| x.as_ptr());
    for blk in 0..nb {
        // SAFETY: record `blk` lies inside both groups, and block `blk` inside
        // every activation row (the caller's length contract).
        unsafe {
            let (pa, pb) = pair_records(a, b, blk, rec);
            let mut sum = [_mm512_setzero_si512(); N];
            for c in 0..4 {
                let v = load_pair(pa, pb, 32 + 32 * c);
                let lo = _mm512_and_si512(v, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
                for (s, x) in sum.iter_mut().zip(&xp) {
                    let xq = (*x.add(blk)).qs.as_ptr() as *const i32;
                    let x_lo = _mm512_set1_epi32(xq.add(c).read_unaligned());
                    let x_hi = _mm512_set1_epi32(xq.add(4 + c).read_unaligned());
                    *s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(*s, lo, x_lo), hi, x_hi);
                }
            }
            let d = load_f16x16(pa, pb);
            let m = load_f16x16(pa.add(16), pb.add(16));
            for ((acc, s), x) in acc.iter_mut().zip(sum).zip(&xp) {
                let xb = &*x.add(blk);
                let isum = _mm512_cvtepi32_ps(s);
                *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(xb.d)), isum, *acc);
                *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(xb.s), *acc);
            }
        }
    }
    rows16(acc)
}

/// Q8_0 x Q8_1 for two row groups and `N` activation rows (biased, as
/// [`super::kernels::Kernel::prepare`] leaves them for VNNI), on 512-bit
/// vectors, each lane as [`dot8xn_q8_0_avx512`]'s, fetched ahead as
/// [`dot16xn_q4_1_avx512`] is.
///
/// # Safety
/// As [`dot16xn_q4_1_avx512`], with 272-byte records.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn dot16xn_q8_0_avx512<const N: usize>(
    a: &[u8],
    b: &[u8],
    xs: [&[BlockQ81]; N],
) -> [[f32; 2 * GROUP]; N] {
    let rec = QFormat::Q8_0.group_bytes();
    let nb = a.len() / rec;
    let ones = _mm512_set1_epi8(1);
    let mut acc = [_mm512_setzero_ps(); N];
    let xp: [*const BlockQ81; N] = xs.map(|x| x.as_ptr());
    for blk in 0..nb {
        // SAFETY: as in `dot16xn_q4_1_avx512`.
        unsafe {
            let (pa, pb) = pair_records(a, b, blk, rec);
            let mut sum = [_mm512_setzero_si512(); N];
            let mut ws = _mm512_setzero_si512();
            for c in 0..8 {
                let w = load_pair(pa, pb, 16 + 32 * c);
                ws = _mm512_dpbusd_epi32(ws, ones, w);
                for (s, x) in sum.iter_mut().zip(&xp) {
                    let xq = (*x.add(blk)).qs.as_ptr() as *const i32;
                    *s = _mm512_dpbusd_epi32(*s, _mm512_set1_epi32(xq.add(c).read_unaligned()), w);
                }
            }
            let d = load_f16x16(pa, pb);
            let bias = _mm512_slli_epi32(ws, 7);
            for ((acc, s), x) in acc.iter_mut().zip(sum).zip(&xp) {
                let scale = _mm512_mul_ps(d, _mm512_set1_ps((*x.add(blk)).d));
                let isum = _mm512_cvtepi32_ps(_mm512_sub_epi32(s, bias));
                *acc = _mm512_fmadd_ps(scale, isum, *acc);
            }
        }
    }
    rows16(acc)
}

/// Record `blk` of each of the groups `a` and `b` (adjacent in memory), having
/// asked for the same record of the next pair into L1 and of the pair after
/// it into L2 (see [`dot16xn_q4_1_avx512`]).
///
/// # Safety
/// Record `blk` (of `rec` bytes) lies inside both groups.
#[inline(always)]
unsafe fn pair_records(a: &[u8], b: &[u8], blk: usize, rec: usize) -> (*const u8, *const u8) {
    let next = 2 * a.len();
    // SAFETY: forwarded to the caller.
    let (pa, pb) = unsafe { (a.as_ptr().add(blk * rec), b.as_ptr().add(blk * rec)) };
    prefetch_record::<true>(pa.wrapping_add(next), rec);
    prefetch_record::<true>(pb.wrapping_add(next), rec);
    prefetch_record::<false>(pa.wrapping_add(2 * next), rec);
    prefetch_record::<false>(pb.wrapping_add(2 * next), rec);
    (pa, pb)
}

/// The 32 bytes at `a + off`, then those at `b + off`.
///
/// # Safety
/// 32 readable bytes at each; AVX-512 F.
#[inline]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn load_pair(a: *const u8, b: *const u8, off: usize) -> __m512i {
    // SAFETY: forwarded to the caller.
    unsafe {
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_loadu_si256(a.add(off) as *const __m256i)),
            _mm256_loadu_si256(b.add(off) as *const __m256i),
        )
    }
}

/// Eight f16 values at `a` then eight at `b`, widened to f32.
///
/// # Safety
/// 16 readable bytes at each; AVX-512 F.
#[inline]
#[target_feature(enable = "avx2,f16c,avx512f")]
unsafe fn load_f16x16(a: *const u8, b: *const u8) -> __m512 {
    // SAFETY: forwarded to the caller.
    unsafe {
        let h = _mm256_inserti128_si256::<1>(
            _mm256_castsi128_si256(_mm_loadu_si128(a as *const __m128i)),
            _mm_loadu_si128(b as *const __m128i),
        );
        _mm512_cvtph_ps(h)
    }
}

/// Each accumulator's eight lanes as one row of outputs, stored in the
/// kernel itself: `array::map` over the accumulators was left out of line
/// for some tile sizes, every vector then crossing the stack in 16-byte
/// pieces (one thread's 1536x576 Q4_1 product of six rows held in cache
/// took 39 us that way, 30 this way).
#[inline]
#[target_feature(enable = "avx")]
fn rows8<const N: usize>(acc: [__m256; N]) -> [[f32; GROUP]; N] {
    let mut out = [[0f32; GROUP]; N];
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: a row holds eight floats.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}

/// [`rows8`] for sixteen lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn rows16<const N: usize>(acc: [__m512; N]) -> [[f32; 2 * GROUP]; N] {
    let mut out = [[0f32; 2 * GROUP]; N];
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: a row holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
    out
}
