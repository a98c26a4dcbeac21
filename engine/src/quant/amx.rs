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
//! So the scaling (four instructions a row and block) is much of the time; a
//! product's rows are split evenly between its tiles (24 rows: two of 12, not
//! 16 and 8), and four sum tiles take blocks in turn so that three products
//! run ahead of the scaling, over [`CHUNK`] blocks at a time.
//!
//! The weights: record `c`'s 32-byte vector of a group is, byte for byte, row
//! `c` of the VNNI-ordered right-hand tile for its eight rows (Q4_1: its low
//! nibbles row `c`, its high nibbles row `4 + c`), so two groups side by side
//! make one 16-output tile ([`PairBlock`]). A product stages a chunk of a
//! group pair's blocks before its row tiles run over it, or, for a Q8_0
//! matrix that keeps a tile copy ([`tile_copy`], the LM head), reads them in
//! place.
//! Staging is the rest of the time: a Q4_1 tile copy (every nibble a byte)
//! spared it but read 1.8 times the bytes, and a product of 12 rows from
//! memory ran no faster.
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
use crate::hugemem::HugeBytes;

/// Fewest activation rows a product of `format` takes AMX for, its weights
/// read from a tile copy (`copied`, [`tile_copy`]) or staged; fewer go
/// through the VNNI kernels. Measured on a 2-core Sapphire Rapids-class VM:
/// - Q8_0 staged (4096x576 and the 49152x576 LM head, one thread) ran even
///   with the 512-bit VNNI kernels at 8 rows and 10-35% faster from 10, in
///   cache or streamed; from the tile copy (the LM head, two threads), even
///   at 6 rows and 12-20% faster at 8.
/// - Q4_1: since the VNNI kernels take twelve rows a call, greedy decode of
///   20 and 24 sequences (10 and 12 rows a thread) ran 6% and 1.5% faster
///   with those rows on VNNI, and of 28 and 32 (14 and 16) about 5% faster
///   on AMX.
pub(super) fn min_rows(format: QFormat, copied: bool) -> usize {
    match format {
        QFormat::Q4_1 => 13,
        QFormat::Q8_0 if copied => 8,
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

/// Most blocks of a group pair a row tile passes over at a time (a row's
/// blocks split evenly into the fewest such chunks, each a multiple of
/// [`RING`]): staged, their weights (9 KiB) and the activations they meet
/// (1 KiB a row) stay in L1 while every row tile passes over them. A 16-row
/// product over 48 blocks (1536 columns) ran 25% slower in one pass, and
/// 10-30% slower in chunks of 24.
const CHUNK: usize = 16;

/// Blocks in flight: block `j` goes to sum tile `j % RING`, and the products
/// run `RING - 1` blocks ahead of the scaling (with two in flight, the scaling
/// waited on the tile unit).
const RING: usize = 4;

/// One block of a group pair as the tiles read it: the 512-byte weight tile
/// (eight 64-byte rows, the VNNI-ordered right-hand operand of 16 outputs),
/// then at [`SCALES_AT`] the 16 outputs' scales (f16, group `2p`'s eight then
/// `2p + 1`'s) and at [`MINS_AT`] their Q4_1 minimums.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(super) struct PairBlock([u8; PAIR_BLOCK]);

/// Bytes of a [`PairBlock`]: nine cache lines.
const PAIR_BLOCK: usize = 576;
/// Where a [`PairBlock`]'s scales start.
const SCALES_AT: usize = 512;
/// Where a [`PairBlock`]'s minimums start.
const MINS_AT: usize = 544;

/// One block's sums: up to 16x16 i32.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct SumTile([i32; TILE * TILE]);

/// Sixteen lanes, one per output of a group pair.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Lanes<T>([T; TILE]);

/// A thread's working space: a chunk of a group pair's blocks staged as tiles
/// (where the matrix keeps no tile copy), [`RING`] blocks' sums, and the
/// outputs of every row of the pass (at most [`super::STRIPE_ROWS`], plus
/// padding) between chunks.
struct Scratch {
    staged: Vec<PairBlock>,
    sums: [SumTile; RING],
    acc: [Lanes<f32>; super::STRIPE_ROWS + PAD_ROWS],
}

thread_local! {
    /// Each thread's AMX working space (boxed: the sums and outputs take
    /// about 9 KiB, the staged blocks as much).
    static SCRATCH: std::cell::RefCell<Box<Scratch>> = std::cell::RefCell::new(Box::new(Scratch {
        staged: Vec::new(),
        sums: [SumTile([0; TILE * TILE]); RING],
        acc: [Lanes([0.0; TILE]); super::STRIPE_ROWS + PAD_ROWS],
    }));
}

/// Whether a matrix keeps a tile copy ([`tile_copy`]): Q8_0 only, as its
/// tiles are its bytes rearranged (a Q4_1 copy would widen every nibble to a
/// byte, 1.8 times the memory).
pub(super) fn copies(format: QFormat) -> bool {
    format == QFormat::Q8_0 && available()
}

/// A Q8_0 matrix's blocks as [`PairBlock`]s, group pair after group pair
/// (a lone last group paired with itself), each pair's blocks in order: the
/// tiles then read the weights in place, with no staging in the product.
/// About 6% more bytes than the matrix. For the LM head, the product of every
/// row of a decode step: at 24 rows it spent a third of its time staging.
pub(super) fn tile_copy(mat: &QMatrix) -> HugeBytes {
    assert_eq!(
        mat.format,
        QFormat::Q8_0,
        "tile copies are of Q8_0 matrices"
    );

    let nb = mat.cols / super::QK;
    let groups = mat.rows.div_ceil(GROUP);
    let pairs = groups.div_ceil(2);
    let mut blocks = vec![PairBlock([0; PAIR_BLOCK]); nb];
    HugeBytes::build(pairs * nb * PAIR_BLOCK, |out| {
        for (p, dst) in out.chunks_exact_mut(nb * PAIR_BLOCK).enumerate() {
            let (g0, g1) = (2 * p, (2 * p + 1).min(groups - 1));
            // SAFETY: `available()` held (AVX-512 and F16C); both groups hold
            // `nb` records and `blocks` one slot for each.
            unsafe { stage::<false>(mat.group(g0), mat.group(g1), 0..nb, &mut blocks) };
            for (b, block) in blocks.iter().enumerate() {
                dst[b * PAIR_BLOCK..][..PAIR_BLOCK].copy_from_slice(&block.0);
            }
        }
    })
}

/// Features `features` (whole groups) of the activation rows `rows` (at most
/// [`super::STRIPE_ROWS`]) of `acts` into `dst`, as `QMatrix::fill_tile` does
/// with the VNNI kernels.
pub(super) fn fill_tile(
    mat: &QMatrix,
    acts: &Activations,
    dst: &mut crate::threads::Stripe<'_>,
    rows: Range<usize>,
    features: Range<usize>,
) {
    let m = rows.len();
    assert!(m <= super::STRIPE_ROWS, "{m} rows in one AMX pass");
    let nb = acts.nb;
    let groups = features.start / GROUP..features.end.div_ceil(GROUP);
    let all_groups = mat.rows.div_ceil(GROUP);
    assert!(
        groups.start.is_multiple_of(2),
        "features start at a group pair"
    );
    // Rows per tile: the rows split evenly between the fewest tiles, rounded
    // up to an even count (fewer kernels to build); the rest read padding rows.
    let tiles = m.div_ceil(TILE);
    let per_tile = m.div_ceil(tiles).next_multiple_of(2);
    assert!(
        (rows.start + tiles * per_tile) * nb <= acts.blocks.len(),
        "{tiles} tiles of {per_tile} rows from row {} read past the padding",
        rows.start
    );
    let config = TileConfig::new(per_tile as u8);
    // A row's blocks in the fewest chunks of at most `CHUNK`, evenly split.
    let chunk = nb.div_ceil(nb.div_ceil(CHUNK)).next_multiple_of(RING);
    let q4 = mat.format == QFormat::Q4_1;
    let copy = mat.tiles.get().map(|t| &t[..]);
    if let Some(copy) = copy {
        assert_eq!(copy.len(), all_groups.div_ceil(2) * nb * PAIR_BLOCK);
    }
    SCRATCH.with_borrow_mut(|scratch| {
        let Scratch { staged, sums, acc } = &mut **scratch;
        if copy.is_none() && staged.len() < CHUNK {
            staged.resize(CHUNK, PairBlock([0; PAIR_BLOCK]));
        }
        // SAFETY: `available()` held before this path was taken (AMX granted,
        // AVX-512 present); the configuration is this thread's until released.
        unsafe { asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack)) };
        for g in groups.clone().step_by(2) {
            // Two groups make a tile; a lone last group is paired with itself.
            let g1 = (g + 1).min(all_groups - 1);
            for first in (0..nb).step_by(chunk) {
                let blocks = first..(first + chunk).min(nb);
                let (weights, ahead) = match copy {
                    Some(copy) => {
                        let at = (g / 2 * nb + first) * PAIR_BLOCK;
                        // SAFETY: pair `g / 2` lies in the copy (checked above).
                        let w = unsafe { copy.as_ptr().add(at) } as *const PairBlock;
                        // The blocks two pairs on, fetched into L2 while this
                        // one runs (none past the copy's end): a 24-row LM
                        // head ran 5-10% faster than with the next pair's
                        // fetched into L1, and 1.5-2 times as fast as with
                        // neither.
                        let far = at + 2 * nb * PAIR_BLOCK + blocks.len() * PAIR_BLOCK;
                        let next = (far <= copy.len()).then(|| w.wrapping_add(2 * nb));
                        (w, next)
                    }
                    None => {
                        let out = &mut staged[..blocks.len()];
                        // SAFETY: as above (AVX-512, F16C); both groups hold
                        // `nb` records.
                        unsafe {
                            if q4 {
                                stage::<true>(mat.group(g), mat.group(g1), blocks.clone(), out);
                            } else {
                                stage::<false>(mat.group(g), mat.group(g1), blocks.clone(), out);
                            }
                        }
                        (staged.as_ptr(), None)
                    }
                };
                for t in 0..tiles {
                    let t0 = rows.start + t * per_tile;
                    // Only the first row tile fetches ahead: the others find
                    // the chunk's blocks in cache.
                    let ahead = if t == 0 { ahead } else { None };
                    let out = acc[t * per_tile..].as_mut_ptr();
                    let b = blocks.clone();
                    macro_rules! by_rows {
                        ($($mt:literal)*) => {
                            match per_tile {
                                $($mt => if q4 {
                                    pair_rows::<$mt, true>(acts, t0, b, weights, ahead, sums, out)
                                } else {
                                    pair_rows::<$mt, false>(acts, t0, b, weights, ahead, sums, out)
                                },)*
                                _ => unreachable!("{per_tile} rows a tile"),
                            }
                        };
                    }
                    // SAFETY: AMX configured for `per_tile` rows; the tile's
                    // rows lie inside `acts` (padded past the last), `weights`
                    // holds the chunk's blocks, `out` `per_tile` lanes of `acc`.
                    unsafe { by_rows!(2 4 6 8 10 12 14 16) };
                }
            }
            // A lone last group's outputs are its eight lanes; features past
            // the matrix's last row are not stored.
            let r = g * GROUP;
            let n = (features.end - r).min(if g1 > g { TILE } else { GROUP });
            for (t, o) in acc[..m].iter().enumerate() {
                if n == TILE {
                    dst.set_array(rows.start + t, r, &o.0);
                } else {
                    dst.set_run(rows.start + t, r, &o.0[..n]);
                }
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
/// lie inside `acts`; `w` is a readable block.
#[inline(always)]
unsafe fn product<const SET: usize, const Q4: bool>(
    acts: &Activations,
    t0: usize,
    b: usize,
    w: *const PairBlock,
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

/// Adds block `b`'s sums (at `sums`; the weights' scales and minimums in `w`)
/// to the `MT` rows' accumulators: `fma(d_w * d_x, sum, acc)` and, with `Q4`
/// (Q4_1), `fma(m_w, s_x, acc)`, the other kernels' arithmetic.
///
/// # Safety
/// AVX-512F and F16C; rows `t0..t0 + MT` and block `b` lie inside `acts`;
/// `w` is a readable block.
#[inline(always)]
unsafe fn scale_block<const MT: usize, const Q4: bool>(
    acts: &Activations,
    t0: usize,
    b: usize,
    w: *const PairBlock,
    sums: *const SumTile,
    acc: &mut [__m512; MT],
) {
    let nb = acts.nb;
    // SAFETY: forwarded to the caller.
    unsafe {
        let w = (*w).0.as_ptr();
        let d = _mm512_cvtph_ps(_mm256_load_si256(w.add(SCALES_AT) as *const _));
        let m = _mm512_cvtph_ps(_mm256_load_si256(w.add(MINS_AT) as *const _));
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

/// Adds the blocks `blocks` of a group pair (at `w`, the first of them) to
/// the 16 outputs of the `MT` activation rows from `t0`, held at `out[..MT]`
/// (which start from zero at the pair's first block): every block's product
/// on the tiles, its sums stored to one of [`RING`] small buffers that stay in
/// L1 and scaled into accumulators held in registers while the next blocks'
/// products run, block after block, as the other kernels add them. `ahead`,
/// where given, is a later pair's blocks, fetched into L2 a block at a time.
///
/// # Safety
/// AMX configured by [`fill_tile`] for `MT` rows a tile; AVX-512 (F, BW, VL)
/// and F16C; the rows from `t0` and `blocks` lie inside `acts`, whose first
/// block is a multiple of [`RING`]; `w` holds the blocks; `out` has room for
/// `MT` lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,f16c,fma")]
unsafe fn pair_rows<const MT: usize, const Q4: bool>(
    acts: &Activations,
    t0: usize,
    blocks: Range<usize>,
    w: *const PairBlock,
    ahead: Option<*const PairBlock>,
    sums: &mut [SumTile; RING],
    out: *mut Lanes<f32>,
) {
    let (start, end) = (blocks.start, blocks.end);
    debug_assert!(start.is_multiple_of(RING) && end <= acts.nb);
    let sums = sums.as_mut_ptr();
    let mut acc = [_mm512_setzero_ps(); MT];
    // SAFETY: the caller's contract; `sums` holds `RING` tiles.
    unsafe {
        if start > 0 {
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_load_ps((*out.add(t)).0.as_ptr());
            }
        }
        // Block `b` goes to sum tile `b % RING`; the loop steps `RING` blocks
        // at a time so that every product names its tiles (no jump table).
        const _: () = assert!(RING == 4);
        macro_rules! issue {
            ($set:literal, $b:expr) => {{
                let b = $b;
                product::<$set, Q4>(acts, t0, b, w.add(b - start), sums.add($set))
            }};
        }
        if end > start {
            issue!(0, start);
        }
        if end > start + 1 {
            issue!(1, start + 1);
        }
        if end > start + 2 {
            issue!(2, start + 2);
        }
        for first in (start..end).step_by(RING) {
            macro_rules! step {
                ($j:literal, $ahead:literal) => {{
                    let b = first + $j;
                    if b < end {
                        if b + RING - 1 < end {
                            issue!($ahead, b + RING - 1);
                        }
                        if let Some(next) = ahead {
                            prefetch_record::<false>(next.add(b - start) as *const u8, PAIR_BLOCK);
                        }
                        scale_block::<MT, Q4>(
                            acts,
                            t0,
                            b,
                            w.add(b - start),
                            sums.add($j),
                            &mut acc,
                        );
                    }
                }};
            }
            step!(0, 3);
            step!(1, 0);
            step!(2, 1);
            step!(3, 2);
        }
        for (t, a) in acc.into_iter().enumerate() {
            _mm512_store_ps((*out.add(t)).0.as_mut_ptr(), a);
        }
    }
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

/// Sixteen bytes at `p0` and sixteen at `p1` side by side (the two groups'
/// eight f16 scales or minimums).
#[inline(always)]
unsafe fn halves(p0: *const u8, p1: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes at each (the caller's records).
    unsafe {
        let lo = _mm_loadu_si128(p0 as *const __m128i);
        let hi = _mm_loadu_si128(p1 as *const __m128i);
        _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1)
    }
}

/// The blocks `blocks` of the groups `w0` and `w1` as [`PairBlock`]s into
/// `out` (group `w0`'s eight outputs then `w1`'s). Q4_1 (`Q4`): tile row `c`
/// the low nibbles of vector `c`, row `4 + c` the high ones; Q8_0: the vectors
/// as they are.
///
/// # Safety
/// AVX-512 (F, BW); both groups hold the blocks; `out` holds one per block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn stage<const Q4: bool>(w0: &[u8], w1: &[u8], blocks: Range<usize>, out: &mut [PairBlock]) {
    let rec = if Q4 { QFormat::Q4_1 } else { QFormat::Q8_0 }.group_bytes();
    debug_assert!(w0.len() >= blocks.end * rec && w1.len() >= blocks.end * rec);
    debug_assert_eq!(out.len(), blocks.len());
    let low = _mm512_set1_epi8(0x0F);
    for (b, block) in blocks.zip(out.iter_mut()) {
        // SAFETY: record `b` lies inside both groups (the caller's contract).
        let (p0, p1) = unsafe { (w0.as_ptr().add(b * rec), w1.as_ptr().add(b * rec)) };
        // The same record of the next pair, as the 512-bit VNNI kernels ask:
        // a Q8_0 product of 48-64 rows from memory ran 5-10% faster than
        // with the record 2 KiB ahead in each group.
        let ahead = 2 * w0.len();
        prefetch_record::<true>(p0.wrapping_add(ahead), rec);
        prefetch_record::<true>(p1.wrapping_add(ahead), rec);
        // SAFETY: each record is `rec` bytes; the block is 576.
        unsafe {
            let dst = block.0.as_mut_ptr();
            let row = |r: usize, v: __m512i| _mm512_store_si512(dst.add(64 * r) as *mut _, v);
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
            _mm256_store_si256(dst.add(SCALES_AT) as *mut _, halves(p0, p1));
            if Q4 {
                _mm256_store_si256(dst.add(MINS_AT) as *mut _, halves(p0.add(16), p1.add(16)));
            }
        }
    }
}
