//! Quantized products of many activation rows on Intel's AMX (Sapphire Rapids
//! and later): one `tdpbsud` multiplies a 16x32 byte tile by a 32x16 byte tile
//! into 16x16 i32 sums, the work of 256 `dpbusd` lanes, so for a decode step of
//! many sequences or a prefill the integer products cost little and what
//! remains is scaling each block's sums (AVX-512, sixteen outputs a vector).
//! The idea is llama.cpp's AMX backend (`ggml-cpu/amx/mmq.cpp`), on this
//! crate's interleaved groups.
//!
//! The tiles: activations are the signed operand as they are, Q4_1's nibbles
//! the unsigned one (`tdpbsud`), Q8_0's bytes a signed one (`tdpbssd`), so
//! every sum is the exact integer of the other kernels; the float arithmetic
//! that scales it is theirs too (`fma(d_w * d_x, sum, acc)`, then
//! `fma(m_w, s_x, acc)` for Q4_1), block after block in the same order. A row
//! therefore gets the same bits here as from the AVX2 and VNNI kernels (the
//! quant tests check it), so a sequence's text does not depend on how many
//! others share its step.
//!
//! What it costs, measured on a 2-core Sapphire Rapids-class VM: a 16-row
//! `tdpbsud` takes about 17 cycles whether a row holds 32 or 64 bytes, an
//! 8-row one about 10, and storing a 16-row sum tile about 17; while the tile
//! unit works, 512-bit float instructions issue about one a cycle, not two.
//! So the scaling (four instructions a row and block) is most of the time; a
//! product's rows are split evenly between its tiles (24 rows: two of 12, not
//! 16 and 8), and four sum tiles take blocks in turn so that three products
//! run ahead of the scaling.
//!
//! The weights stay in the interleaved layout: record `c`'s 32-byte vector of a
//! group is, byte for byte, row `c` of the VNNI-ordered right-hand tile for
//! its eight rows (Q4_1: its low nibbles row `c`, its high nibbles row
//! `4 + c`), so two groups side by side make one 16-output tile, staged
//! block by block. (Q8_0 tiles could be read in place, one group's eight
//! outputs a tile, two products a block: a decode step of 12-24 sequences
//! ran 2-5% slower than with the copy.)
//!
//! Rust has no stable AMX intrinsics; the tile instructions are inline
//! assembly. Linux hands out the tile registers only on request
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), asked once per process.

#![cfg(target_arch = "x86_64")]

use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::OnceLock;

use super::kernels::prefetch_record;
use super::{BlockQ81, GROUP, QFormat, QMatrix};

/// Fewest activation rows a product of `format` takes AMX for; fewer go
/// through the VNNI kernels. Measured on a 2-core Sapphire Rapids-class VM:
/// - Q8_0 (4096x576 and the 49152x576 LM head, one thread) ran even with
///   the 512-bit VNNI kernels at 8 rows and 10-35% faster from 10, in cache
///   or streamed.
/// - Q4_1: since the VNNI kernels take twelve rows a call, greedy decode of
///   20 and 24 sequences (10 and 12 rows a thread) ran 6% and 1.5% faster
///   with those rows on VNNI, and of 28 and 32 (14 and 16) about 5% faster
///   on AMX.
pub(super) fn min_rows(format: QFormat) -> usize {
    match format {
        QFormat::Q4_1 => 13,
        QFormat::Q8_0 => 10,
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

/// The quantized activation rows as the tiles read them, in place: a tile's
/// rows of block `b` are the blocks' `qs` one row (`nb` blocks) apart, which
/// `tileloadd` takes as its stride, so nothing is copied. [`PAD_ROWS`] rows
/// follow the last: a tile may read them, and their outputs are dropped (a
/// row's sums and scaling never touch another row's), so they need not be
/// zeros.
pub(super) struct Activations<'a> {
    blocks: &'a [BlockQ81],
    nb: usize,
}

/// Rows after the activations that tiles may read: a pass's at most four
/// tiles split its rows evenly, rounded up to an even count, so they read at
/// most seven rows past its last.
pub(super) const PAD_ROWS: usize = 8;

impl<'a> Activations<'a> {
    /// Rows of `nb` blocks each, the last [`PAD_ROWS`] of them padding.
    pub(super) fn new(blocks: &'a [BlockQ81], nb: usize) -> Self {
        assert!(
            blocks.len() >= PAD_ROWS * nb && blocks.len().is_multiple_of(nb),
            "activations padded with {PAD_ROWS} rows"
        );
        Self { blocks, nb }
    }

    /// Block `b` of row `t`.
    ///
    /// # Safety
    /// Row `t` (padding included) and block `b` lie inside the activations.
    #[inline(always)]
    unsafe fn at(&self, t: usize, b: usize) -> *const BlockQ81 {
        // SAFETY: forwarded to the caller.
        unsafe { self.blocks.as_ptr().add(t * self.nb + b) }
    }
}

/// The tile configuration (palette 1) for tiles of `rows` activation rows:
/// tiles 0-3 the `rows`x16 i32 sums of [`RING`] blocks in flight, 4 and 5 the
/// activations (`rows` rows of one block, 32 bytes), 6 and 7 the weights (8
/// rows of four bytes for each of 16 outputs), each pair used by alternate
/// blocks. A tile's product and store take time in proportion to its rows,
/// hence `rows` rather than always 16.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new(rows: u8) -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        // Bytes per row (u16 at 16 + 2t) and rows (u8 at 48 + t) of tile t.
        let tiles = [
            (64u8, rows),
            (64, rows),
            (64, rows),
            (64, rows),
            (32, rows),
            (32, rows),
            (64, 8),
            (64, 8),
        ];
        for (t, (bytes, rows)) in tiles.into_iter().enumerate() {
            c[16 + 2 * t] = bytes;
            c[48 + t] = rows;
        }
        Self(c)
    }
}

/// Blocks whose weights are staged at a time: their tiles (4 KiB) and the
/// activations they meet (512 bytes a row) stay in L1 while every row tile
/// passes over them.
const CHUNK: usize = 8;

/// Blocks in flight: block `j` of a chunk goes to sum tile `j % RING`, and the
/// products run `RING - 1` blocks ahead of the scaling (with two in flight,
/// the scaling waited on the tile unit).
const RING: usize = 4;

/// One block's weight tile: eight 64-byte rows.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct WeightTile([u8; 512]);

/// One block's sums: up to 16x16 i32.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct SumTile([i32; TILE * TILE]);

/// Sixteen lanes, one per output of a group pair.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Lanes<T>([T; TILE]);

/// A thread's working space for one chunk of a group pair's blocks: the
/// weight tiles, scales and minimums (f32); [`RING`] blocks' sums; and the running
/// outputs of every row (at most [`super::STRIPE_ROWS`]) between chunks.
struct Scratch {
    weights: [WeightTile; CHUNK],
    d: [Lanes<f32>; CHUNK],
    m: [Lanes<f32>; CHUNK],
    sums: [SumTile; RING],
    acc: [Lanes<f32>; super::STRIPE_ROWS + PAD_ROWS],
}

thread_local! {
    /// Each thread's AMX working space (boxed: about 14 KiB).
    static SCRATCH: std::cell::RefCell<Box<Scratch>> = std::cell::RefCell::new(Box::new(Scratch {
        weights: [WeightTile([0; 512]); CHUNK],
        d: [Lanes([0.0; TILE]); CHUNK],
        m: [Lanes([0.0; TILE]); CHUNK],
        sums: [SumTile([0; TILE * TILE]); RING],
        acc: [Lanes([0.0; TILE]); super::STRIPE_ROWS + PAD_ROWS],
    }));
}

/// Features `features` (whole groups) of the activation rows `rows` (at most
/// [`super::STRIPE_ROWS`]) of `acts` into `tile` (row-major,
/// `features.len()` values a row), as `QMatrix::fill_tile` does with the VNNI
/// kernels.
pub(super) fn fill_tile(
    mat: &QMatrix,
    acts: &Activations,
    tile: &mut [f32],
    rows: Range<usize>,
    features: Range<usize>,
) {
    let m = rows.len();
    assert!(m <= super::STRIPE_ROWS, "{m} rows in one AMX pass");
    let width = features.len();
    let groups = features.start / GROUP..features.end.div_ceil(GROUP);
    // Rows per tile: the rows split evenly between the fewest tiles, rounded
    // up to an even count (fewer kernels to build); the rest read padding rows.
    let tiles = m.div_ceil(TILE);
    let per_tile = m.div_ceil(tiles).next_multiple_of(2);
    assert!(
        (rows.start + tiles * per_tile) * acts.nb <= acts.blocks.len(),
        "{tiles} tiles of {per_tile} rows from row {} read past the padding",
        rows.start
    );
    let config = TileConfig::new(per_tile as u8);
    let q4 = mat.format == QFormat::Q4_1;
    SCRATCH.with_borrow_mut(|scratch| {
        // SAFETY: `available()` held before this path was taken (AMX granted,
        // AVX-512 present); the configuration is this thread's until released.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
        for g in groups.clone().step_by(2) {
            // Two groups make a tile; a lone last group is paired with itself.
            let g1 = if g + 1 < groups.end { g + 1 } else { g };
            let (w0, w1) = (mat.group(g), mat.group(g1));
            for first in (0..acts.nb).step_by(CHUNK) {
                let blocks = first..(first + CHUNK).min(acts.nb);
                // SAFETY: as above; the chunk's records lie inside both groups,
                // and every tile's rows inside `acts` (padded past the last).
                unsafe {
                    if q4 {
                        stage_weights::<true>(w0, w1, blocks.clone(), scratch);
                    } else {
                        stage_weights::<false>(w0, w1, blocks.clone(), scratch);
                    }
                    for t in 0..tiles {
                        let t0 = rows.start + t * per_tile;
                        let acc = t * per_tile;
                        macro_rules! by_rows {
                            ($($mt:literal)*) => {
                                match per_tile {
                                    $($mt => if q4 {
                                        pair_tile::<$mt, true>(acts, t0, blocks.clone(), scratch, acc)
                                    } else {
                                        pair_tile::<$mt, false>(acts, t0, blocks.clone(), scratch, acc)
                                    },)*
                                    _ => unreachable!("{per_tile} rows a tile"),
                                }
                            };
                        }
                        by_rows!(2 4 6 8 10 12 14 16);
                    }
                }
            }
            let col = g * GROUP - features.start;
            let n = (width - col).min(if g1 > g { TILE } else { GROUP });
            for (t, o) in scratch.acc[..m].iter().enumerate() {
                tile[t * width + col..][..n].copy_from_slice(&o.0[..n]);
            }
        }
        // SAFETY: gives the tile state back (cheaper context switches).
        unsafe { asm!("tilerelease", options(nostack)) };
    })
}

/// Block `b`'s product of the activation rows `t0..` and the weight tile `w`,
/// stored as `rows`x16 i32 at `sums`, on sum tile `SET` with the activation
/// and weight tiles of its parity. Q4_1 (`Q4`) weights are unsigned nibbles
/// (`tdpbsud`), Q8_0 signed bytes (`tdpbssd`); the activations are signed.
///
/// # Safety
/// AMX configured by [`fill_tile`]; the tile's rows from `t0` and block `b`
/// lie inside `acts`.
#[inline(always)]
unsafe fn product<const SET: usize, const Q4: bool>(
    acts: &Activations,
    t0: usize,
    b: usize,
    w: *const WeightTile,
    sums: *mut SumTile,
) {
    let stride = acts.nb * std::mem::size_of::<BlockQ81>();
    // SAFETY: forwarded to the caller (`qs` leads a block).
    let a = unsafe { acts.at(t0, b) } as *const u8;
    // The tiles: sums, activations, weights.
    macro_rules! on_tiles {
        ($op:literal, $c:literal, $a:literal, $w:literal) => {
            asm!(
                concat!("tileloadd tmm", $a, ", [{a} + {stride}]"),
                concat!("tileloadd tmm", $w, ", [{w} + {row}]"),
                concat!("tilezero tmm", $c),
                concat!($op, " tmm", $c, ", tmm", $a, ", tmm", $w),
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
        match (SET, Q4) {
            (0, true) => on_tiles!("tdpbsud", "0", "4", "6"),
            (0, false) => on_tiles!("tdpbssd", "0", "4", "6"),
            (1, true) => on_tiles!("tdpbsud", "1", "5", "7"),
            (1, false) => on_tiles!("tdpbssd", "1", "5", "7"),
            (2, true) => on_tiles!("tdpbsud", "2", "4", "6"),
            (2, false) => on_tiles!("tdpbssd", "2", "4", "6"),
            (_, true) => on_tiles!("tdpbsud", "3", "5", "7"),
            (_, false) => on_tiles!("tdpbssd", "3", "5", "7"),
        }
    }
}

/// Adds a block's sums (at `sums`; block `b` of the activations, `k` of the
/// staged chunk) to the `MT` rows' accumulators: `fma(d_w * d_x, sum, acc)`
/// and, with `Q4` (Q4_1), `fma(m_w, s_x, acc)`, the other kernels' arithmetic.
///
/// # Safety
/// AVX-512F; rows `t0..t0 + MT` and block `b` lie inside `acts`, `k` inside
/// the chunk.
#[inline(always)]
unsafe fn scale_block<const MT: usize, const Q4: bool>(
    acts: &Activations,
    t0: usize,
    b: usize,
    k: usize,
    scratch: &Scratch,
    sums: *const SumTile,
    acc: &mut [__m512; MT],
) {
    let nb = acts.nb;
    // SAFETY: forwarded to the caller.
    unsafe {
        let d = _mm512_load_ps(scratch.d[k].0.as_ptr());
        let m = _mm512_load_ps(scratch.m[k].0.as_ptr());
        let sums = (*sums).0.as_ptr();
        let x = acts.at(t0, b);
        for (t, a) in acc.iter_mut().enumerate() {
            let xb = &*x.add(t * nb);
            let isum = _mm512_cvtepi32_ps(_mm512_load_si512(sums.add(TILE * t) as *const _));
            let scale = _mm512_mul_ps(d, _mm512_set1_ps(xb.d));
            *a = _mm512_fmadd_ps(scale, isum, *a);
            if Q4 {
                *a = _mm512_fmadd_ps(m, _mm512_set1_ps(xb.s), *a);
            }
        }
    }
}

/// Adds the staged chunk's blocks `blocks` to the running outputs of the `MT`
/// activation rows from `t0` (`scratch.acc` from `acc`): each block's product
/// on the tiles, its sums stored to one of [`RING`] small buffers that stay in
/// L1, and scaled into accumulators held in registers while the next blocks'
/// products run. The outputs start from zero at the matrix's first block.
///
/// # Safety
/// AMX configured by [`fill_tile`] for `MT` rows a tile; AVX-512 (F, BW, VL);
/// the rows from `t0` and `blocks` lie inside `acts`, whose chunk is staged.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,fma")]
unsafe fn pair_tile<const MT: usize, const Q4: bool>(
    acts: &Activations,
    t0: usize,
    blocks: Range<usize>,
    scratch: &mut Scratch,
    acc_at: usize,
) {
    let first = blocks.start;
    let n = blocks.len();
    let sums = scratch.sums.as_mut_ptr();
    let weights = scratch.weights.as_ptr();
    let mut acc = [_mm512_setzero_ps(); MT];
    // SAFETY: the caller's contract; `sums` holds `RING` tiles, `weights` the
    // chunk, and `scratch.acc` every row of the pass plus padding.
    unsafe {
        let saved = scratch.acc.as_mut_ptr().add(acc_at);
        if first > 0 {
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_load_ps((*saved.add(t)).0.as_ptr());
            }
        }
        let scratch = &*scratch;
        macro_rules! issue {
            ($j:expr) => {{
                let j = $j;
                let (b, w, c) = (first + j, weights.add(j), sums.add(j % RING));
                match j % RING {
                    0 => product::<0, Q4>(acts, t0, b, w, c),
                    1 => product::<1, Q4>(acts, t0, b, w, c),
                    2 => product::<2, Q4>(acts, t0, b, w, c),
                    _ => product::<3, Q4>(acts, t0, b, w, c),
                }
            }};
        }
        for j in 0..(RING - 1).min(n) {
            issue!(j);
        }
        for k in 0..n {
            if k + RING - 1 < n {
                issue!(k + RING - 1);
            }
            scale_block::<MT, Q4>(
                acts,
                t0,
                first + k,
                k,
                scratch,
                sums.add(k % RING),
                &mut acc,
            );
        }
        for (t, a) in acc.into_iter().enumerate() {
            _mm512_store_ps((*saved.add(t)).0.as_mut_ptr(), a);
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

/// The weight tiles, scales and (Q4_1) minimums of the blocks `blocks` of
/// the groups `w0` and `w1` (group `w0`'s eight outputs then `w1`'s) into
/// the chunk's slots. Q4_1 (`Q4`): tile row `c` the low nibbles of vector
/// `c`, row `4 + c` the high ones; Q8_0: the vectors as they are.
///
/// # Safety
/// AVX-512 (F, BW) and F16C; `blocks` lie inside both groups and number at
/// most [`CHUNK`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c")]
unsafe fn stage_weights<const Q4: bool>(
    w0: &[u8],
    w1: &[u8],
    blocks: Range<usize>,
    scratch: &mut Scratch,
) {
    let rec = if Q4 { QFormat::Q4_1 } else { QFormat::Q8_0 }.group_bytes();
    let low = _mm512_set1_epi8(0x0F);
    for (k, b) in blocks.enumerate() {
        // SAFETY: record `b` lies inside both groups (the caller's contract).
        let (p0, p1) = unsafe { (w0.as_ptr().add(b * rec), w1.as_ptr().add(b * rec)) };
        // The same record of the next pair, as the 512-bit VNNI kernels ask:
        // a Q8_0 product of 48-64 rows from memory ran 5-10% faster than
        // with the record 2 KiB ahead in each group.
        let ahead = 2 * w0.len();
        prefetch_record::<true>(p0.wrapping_add(ahead), rec);
        prefetch_record::<true>(p1.wrapping_add(ahead), rec);
        // SAFETY: each record is `rec` bytes; slot `k` lies in the chunk.
        unsafe {
            let tile = scratch.weights[k].0.as_mut_ptr();
            let row = |r: usize, v: __m512i| _mm512_store_si512(tile.add(64 * r) as *mut _, v);
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
            scratch.d[k] = f16x16(p0, p1);
            if Q4 {
                scratch.m[k] = f16x16(p0.add(16), p1.add(16));
            }
        }
    }
}
