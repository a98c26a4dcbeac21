//! Quantized products of many activation rows on Intel's AMX (Sapphire Rapids
//! and later): one `tdpbusd` multiplies a 16x32 byte tile by a 32x16 byte tile
//! into 16x16 i32 sums, the work of 256 `dpbusd` lanes, so for a decode step of
//! many sequences or a prefill the integer products cost next to nothing and
//! what remains is scaling each block's sums (AVX-512, sixteen outputs a
//! vector). The idea is llama.cpp's AMX backend (`ggml-cpu/amx/mmq.cpp`), on
//! this crate's interleaved groups.
//!
//! The tiles: activations are the unsigned operand, shifted by 128 (`q + 128`,
//! a byte), and each block's sums lose `128 * sum(q_w)` again, so every sum is
//! the exact integer of the other kernels; the float arithmetic that scales it
//! is theirs too (`fma(d_w * d_x, sum, acc)`, then `fma(m_w, s_x, acc)` for
//! Q4_1), block after block in the same order. A row therefore gets the same
//! bits here as from the AVX2 and VNNI kernels (the quant tests check it), so
//! a sequence's text does not depend on how many others share its step.
//!
//! The weights stay in the interleaved layout: record `c`'s 32-byte vector of a
//! group is, byte for byte, row `c` of the VNNI-ordered right-hand tile for
//! its eight rows (Q4_1: its low nibbles row `c`, its high nibbles row
//! `4 + c`), so two groups side by side make one 16-output tile.
//!
//! Rust has no stable AMX intrinsics; the five instructions are inline
//! assembly. Linux hands out the tile registers only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once per process.

#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::OnceLock;

use super::kernels::prefetch_record;
use super::{BlockQ81, GROUP, QFormat, QK, QMatrix};

/// Fewest activation rows a product of `format` weights takes AMX for; fewer
/// go through the VNNI kernels. A tile's cost does not shrink with its rows,
/// and each block's sums make a round trip through memory. One thread's
/// products of weights streamed from memory (1536x576 and 576x1536 Q4_1,
/// 4096x576 Q8_0), on a 2-core Sapphire Rapids-class VM, against the 512-bit
/// VNNI kernels: Q4_1 ran 10-25% slower on AMX at 24-32 rows, even at 48-64
/// and 5-15% faster at 128 (ties go to AMX, on which prefills ran faster);
/// Q8_0 ran even at 24-32 rows and 15-45% faster from 48.
pub(super) fn min_rows(format: QFormat) -> usize {
    match format {
        QFormat::Q4_1 => 64,
        QFormat::Q8_0 => 40,
    }
}

/// Rows (activations) and columns (outputs) of a result tile.
const TILE: usize = 16;

/// Whether this process may use AMX: the CPU has AMX-INT8 and AVX-512 (the
/// scaling), Linux granted the tile registers, and `TEACHERLM_AMX` is not `0`
/// (which keeps the VNNI kernels, to compare the two).
pub(super) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if std::env::var("TEACHERLM_AMX").is_ok_and(|v| v == "0") {
            return false;
        }
        use std::arch::is_x86_feature_detected as has;
        // CPUID leaf 7: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8 (the stable
        // feature macro does not know AMX yet).
        let leaf7 = __cpuid_count(7, 0);
        let amx = leaf7.edx & (1 << 24) != 0 && leaf7.edx & (1 << 25) != 0;
        amx && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512vnni")
            && has!("f16c")
            && request_tiles()
    })
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`); false where it refuses or the OS is another.
fn request_tiles() -> bool {
    #[cfg(target_os = "linux")]
    {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: the arch_prctl system call reads no memory for this request;
        // the kernel clobbers rcx and r11 on `syscall`.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        ret == 0
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Activations ready for the tiles: each row's quantized values plus 128 as
/// bytes (`nb * 32` a row), and each block's scale and scaled sum, rows padded
/// to a whole tile with zeros.
pub(super) struct Activations {
    bytes: Vec<u8>,
    d: Vec<f32>,
    s: Vec<f32>,
    nb: usize,
}

impl Activations {
    /// `m` rows of `nb` blocks each.
    pub(super) fn new(blocks: &[BlockQ81], m: usize, nb: usize) -> Self {
        let padded = m.next_multiple_of(TILE);
        let mut bytes = vec![0u8; padded * nb * QK];
        let (mut d, mut s) = (vec![0f32; padded * nb], vec![0f32; padded * nb]);
        for (i, b) in blocks.iter().enumerate() {
            for (o, &q) in bytes[i * QK..(i + 1) * QK].iter_mut().zip(&b.qs) {
                *o = (q as u8) ^ 0x80;
            }
            d[i] = b.d;
            s[i] = b.s;
        }
        Self { bytes, d, s, nb }
    }
}

/// The tile configuration (palette 1): tiles 0 and 3 the 16x16 i32 sums, 1
/// and 4 the activations (16 rows of one block, 32 bytes), 2 and 5 the weights
/// (8 rows of four bytes for each of 16 outputs). Two sets, so that one
/// block's product need not wait for the previous block's to be stored.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    const fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        // Bytes per row (u16 at 16 + 2t) and rows (u8 at 48 + t) of tile t.
        let tiles = [(64u8, 16u8), (32, 16), (64, 8), (64, 16), (32, 16), (64, 8)];
        let mut t = 0;
        while t < tiles.len() {
            c[16 + 2 * t] = tiles[t].0;
            c[48 + t] = tiles[t].1;
            t += 1;
        }
        Self(c)
    }
}

static CONFIG: TileConfig = TileConfig::new();

/// One block's weight tile: eight 64-byte rows.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct WeightTile([u8; 512]);

/// One block's 16x16 sums.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct SumTile([i32; TILE * TILE]);

/// Sixteen lanes, one per output of a group pair.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Lanes<T>([T; TILE]);

/// A thread's working space for one group pair, every block of it: the weight
/// tiles, each block's excess (`128 * sum(q_w)` per output), scales and
/// minimums (f32); and two blocks' sums.
#[derive(Default)]
struct Scratch {
    weights: Vec<WeightTile>,
    excess: Vec<Lanes<i32>>,
    d: Vec<Lanes<f32>>,
    m: Vec<Lanes<f32>>,
    sums: Vec<SumTile>,
}

impl Scratch {
    fn fit(&mut self, nb: usize) {
        self.weights.resize(nb, WeightTile([0; 512]));
        self.excess.resize(nb, Lanes([0; TILE]));
        self.d.resize(nb, Lanes([0.0; TILE]));
        self.m.resize(nb, Lanes([0.0; TILE]));
        self.sums.resize(2, SumTile([0; TILE * TILE]));
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Features `features` (whole groups) of the activation rows `rows` of `acts`
/// into `tile` (row-major, `features.len()` values a row), as
/// `QMatrix::fill_tile` does with the VNNI kernels.
pub(super) fn fill_tile(
    mat: &QMatrix,
    acts: &Activations,
    tile: &mut [f32],
    rows: Range<usize>,
    features: Range<usize>,
) {
    let width = features.len();
    let groups = features.start / GROUP..features.end.div_ceil(GROUP);
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.fit(acts.nb);
        // SAFETY: `available()` held before this path was taken (AMX granted,
        // AVX-512 present); the configuration is this thread's until released.
        unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack)) };
        let mut out = [[0f32; TILE]; TILE];
        for g in groups.clone().step_by(2) {
            // Two groups make a tile; a lone last group is paired with itself.
            let g1 = if g + 1 < groups.end { g + 1 } else { g };
            let col = g * GROUP - features.start;
            let n = (width - col).min(if g1 > g { TILE } else { GROUP });
            // SAFETY: as above; both groups hold `nb` records, and the
            // activation rows of every tile lie inside `acts` (padded to
            // whole tiles).
            unsafe {
                match mat.format {
                    QFormat::Q4_1 => stage_weights::<true>(mat.group(g), mat.group(g1), scratch),
                    QFormat::Q8_0 => stage_weights::<false>(mat.group(g), mat.group(g1), scratch),
                }
                for t0 in rows.clone().step_by(TILE) {
                    let mt = TILE.min(rows.end - t0);
                    let min = mat.format == QFormat::Q4_1;
                    match (min, mt > TILE / 2) {
                        (true, true) => pair_tile::<TILE, true>(acts, t0, scratch, &mut out),
                        (true, false) => {
                            pair_tile::<{ TILE / 2 }, true>(acts, t0, scratch, &mut out)
                        }
                        (false, true) => pair_tile::<TILE, false>(acts, t0, scratch, &mut out),
                        (false, false) => {
                            pair_tile::<{ TILE / 2 }, false>(acts, t0, scratch, &mut out)
                        }
                    }
                    for (t, o) in out.iter().enumerate().take(mt) {
                        let at = (t0 - rows.start + t) * width + col;
                        tile[at..at + n].copy_from_slice(&o[..n]);
                    }
                }
            }
        }
        // SAFETY: gives the tile state back (cheaper context switches).
        unsafe { asm!("tilerelease", options(nostack)) };
    })
}

/// Block `b`'s product of the activation rows `t0..t0 + 16` and its weight
/// tile, stored as 16x16 i32 at `sums`, on tile set `SET` (0: tiles 0-2, 1:
/// tiles 3-5; alternating sets lets one block's product run while the last
/// one's sums are scaled).
///
/// # Safety
/// AMX configured with [`CONFIG`]; rows `t0..t0 + 16` and block `b` lie inside
/// `acts`, block `b` inside `scratch`, and `sums` holds 256 i32.
#[inline(always)]
unsafe fn product<const SET: usize>(
    acts: &Activations,
    t0: usize,
    b: usize,
    scratch: &Scratch,
    sums: *mut SumTile,
) {
    let stride = acts.nb * QK;
    let a = acts.bytes[t0 * stride + b * QK..].as_ptr();
    let w = scratch.weights[b].0.as_ptr();
    // The set's tiles: sums, activations, weights.
    macro_rules! on_tiles {
        ($c:literal, $a:literal, $w:literal) => {
            asm!(
                concat!("tileloadd tmm", $a, ", [{a} + {stride}]"),
                concat!("tileloadd tmm", $w, ", [{w} + {row}]"),
                concat!("tilezero tmm", $c),
                concat!("tdpbusd tmm", $c, ", tmm", $a, ", tmm", $w),
                concat!("tilestored [{c} + {row}], tmm", $c),
                a = in(reg) a, stride = in(reg) stride, w = in(reg) w,
                c = in(reg) sums, row = in(reg) 64usize,
                options(nostack)
            )
        };
    }
    // SAFETY: forwarded to the caller; the asm reads the two tiles' memory and
    // writes `sums`.
    unsafe {
        if SET == 0 {
            on_tiles!("0", "1", "2")
        } else {
            on_tiles!("3", "4", "5")
        }
    }
}

/// Adds block `b`'s sums (at `sums`) to the first `MT` activation rows'
/// accumulators: `fma(d_w * d_x, sum - excess, acc)` and, with `MIN` (Q4_1),
/// `fma(m_w, s_x, acc)`, the other kernels' arithmetic.
///
/// # Safety
/// AVX-512F; rows `t0..t0 + MT` and block `b` lie inside `acts` and `scratch`.
#[inline(always)]
unsafe fn scale_block<const MT: usize, const MIN: bool>(
    acts: &Activations,
    t0: usize,
    b: usize,
    scratch: &Scratch,
    sums: *const SumTile,
    acc: &mut [__m512; MT],
) {
    let nb = acts.nb;
    // SAFETY: forwarded to the caller.
    unsafe {
        let excess = _mm512_load_si512(scratch.excess[b].0.as_ptr() as *const _);
        let d = _mm512_load_ps(scratch.d[b].0.as_ptr());
        let m = _mm512_load_ps(scratch.m[b].0.as_ptr());
        let sums = (*sums).0.as_ptr();
        for (t, a) in acc.iter_mut().enumerate() {
            let at = (t0 + t) * nb + b;
            let row = _mm512_load_si512(sums.add(TILE * t) as *const _);
            let isum = _mm512_cvtepi32_ps(_mm512_sub_epi32(row, excess));
            let scale = _mm512_mul_ps(d, _mm512_set1_ps(*acts.d.get_unchecked(at)));
            *a = _mm512_fmadd_ps(scale, isum, *a);
            if MIN {
                *a = _mm512_fmadd_ps(m, _mm512_set1_ps(*acts.s.get_unchecked(at)), *a);
            }
        }
    }
}

/// The first `MT` activation rows' sixteen outputs (rows `t0..`) of the group
/// pair in `scratch`, blocks in order: each block's product on the tiles, its
/// sums stored to one of two small buffers that stay in L1 (one per block
/// went to L2, and the stores then cost three times the product), and scaled
/// into accumulators that stay in registers while the next block's product
/// runs.
///
/// # Safety
/// AMX configured with [`CONFIG`]; AVX-512 (F, BW, VL); rows `t0..t0 + 16` lie
/// inside `acts`; `scratch` holds `acts.nb` blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
unsafe fn pair_tile<const MT: usize, const MIN: bool>(
    acts: &Activations,
    t0: usize,
    scratch: &mut Scratch,
    out: &mut [[f32; TILE]; TILE],
) {
    let nb = acts.nb;
    let sums = scratch.sums.as_mut_ptr();
    let scratch = &*scratch;
    let mut acc = [_mm512_setzero_ps(); MT];
    // SAFETY: the caller's contract; `sums` holds at least two tiles.
    unsafe {
        product::<0>(acts, t0, 0, scratch, sums);
        let mut b = 0;
        while b < nb {
            if b + 1 < nb {
                product::<1>(acts, t0, b + 1, scratch, sums.add(1));
            }
            scale_block::<MT, MIN>(acts, t0, b, scratch, sums, &mut acc);
            if b + 1 < nb {
                if b + 2 < nb {
                    product::<0>(acts, t0, b + 2, scratch, sums);
                }
                scale_block::<MT, MIN>(acts, t0, b + 1, scratch, sums.add(1), &mut acc);
            }
            b += 2;
        }
        for (o, a) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), a);
        }
    }
}

/// Sixteen f16 values, eight at `p0` and eight at `p1`, as f32 lanes.
#[inline(always)]
unsafe fn f16x16(p0: *const u8, p1: *const u8) -> Lanes<f32> {
    let mut out = Lanes([0f32; TILE]);
    // SAFETY: 16 readable bytes at each (the caller's records).
    unsafe {
        let lo = _mm_loadu_si128(p0 as *const __m128i);
        let hi = _mm_loadu_si128(p1 as *const __m128i);
        let v = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
        _mm512_store_ps(out.0.as_mut_ptr(), v);
    }
    out
}

/// The 32-byte vectors `c` of two groups' records side by side.
#[inline(always)]
unsafe fn pair(p0: *const u8, p1: *const u8) -> __m512i {
    // SAFETY: 32 readable bytes at each (the caller's records).
    unsafe {
        let v0 = _mm256_loadu_si256(p0 as *const __m256i);
        let v1 = _mm256_loadu_si256(p1 as *const __m256i);
        _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1)
    }
}

/// The weight tiles, excess, scales and (Q4_1) minimums of every block of
/// the groups `w0` and `w1`, group `w0`'s eight outputs then `w1`'s. Q4_1
/// (`Q4`): tile row `c` the low nibbles of vector `c`, row `4 + c` the high
/// ones; Q8_0: the vectors as they are (signed bytes, as `tdpbusd` takes its
/// right operand).
///
/// # Safety
/// AVX-512 (F, BW, VNNI) and F16C; `scratch` fits the groups' blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn stage_weights<const Q4: bool>(w0: &[u8], w1: &[u8], scratch: &mut Scratch) {
    let rec = if Q4 { QFormat::Q4_1 } else { QFormat::Q8_0 }.group_bytes();
    let low = _mm512_set1_epi8(0x0F);
    let ones = _mm512_set1_epi8(1);
    for (b, (r0, r1)) in w0.chunks_exact(rec).zip(w1.chunks_exact(rec)).enumerate() {
        let (p0, p1) = (r0.as_ptr(), r1.as_ptr());
        // The same record of the next pair, as the 512-bit VNNI kernels ask:
        // a Q8_0 product of 48-64 rows from memory ran 5-10% faster than
        // with the record 2 KiB ahead in each group.
        let ahead = 2 * w0.len();
        prefetch_record::<true>(p0.wrapping_add(ahead), rec);
        prefetch_record::<true>(p1.wrapping_add(ahead), rec);
        // SAFETY: each record is `rec` bytes; block `b` fits `scratch`.
        unsafe {
            let tile = scratch.weights[b].0.as_mut_ptr();
            let mut wsum = _mm512_setzero_si512();
            let mut row = |r: usize, v: __m512i| {
                _mm512_store_si512(tile.add(64 * r) as *mut _, v);
                wsum = _mm512_dpbusd_epi32(wsum, ones, v);
            };
            if Q4 {
                for c in 0..4 {
                    let v = pair(p0.add(32 + 32 * c), p1.add(32 + 32 * c));
                    row(c, _mm512_and_si512(v, low));
                    row(4 + c, _mm512_and_si512(_mm512_srli_epi16(v, 4), low));
                }
            } else {
                for c in 0..8 {
                    row(c, pair(p0.add(16 + 32 * c), p1.add(16 + 32 * c)));
                }
            }
            let excess = _mm512_slli_epi32(wsum, 7);
            _mm512_store_si512(scratch.excess[b].0.as_mut_ptr() as *mut _, excess);
            scratch.d[b] = f16x16(p0, p1);
            if Q4 {
                scratch.m[b] = f16x16(p0.add(16), p1.add(16));
            }
        }
    }
}
