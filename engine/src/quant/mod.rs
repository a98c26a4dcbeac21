//! Quantized matrix multiplication on the CPU for Q4_1 and Q8_0 weights, the
//! engine's own kernels.
//!
//! candle's CPU backend runs Q4_1 dot products with its generic scalar loop, and its
//! quantized matmul parks spinning worker threads that steal the second core from
//! everything else on a 2-core machine. Numerics follow llama.cpp
//! (`ggml_vec_dot_q4_1_q8_1`, `ggml_vec_dot_q8_0_q8_0`): activations are quantized
//! to Q8_1 per 32 values (`quantize_row_q8_1_ref`), and
//! `dot = sum_blocks(d_w * d_x * sum(q_w * q_x) (+ m_w * s_x for Q4_1))`.
//!
//! Weights are repacked at load time into groups of eight rows whose blocks are
//! interleaved (see [`QFormat::group_bytes`] and `kernels.rs`), so a kernel call
//! produces eight outputs; work is split over the engine pool by row groups.
//! The kernels: scalar (`kernels.rs`), AVX2 and VNNI (`simd.rs`), and AMX tiles
//! for products of many rows (`amx.rs`). All of them sum the same integers and
//! scale them with the same float operations, so a row's bits do not depend on
//! the CPU path it takes or on the rows beside it.

mod amx;
mod kernels;
mod simd;

use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::f16;

use crate::error::{EngineError, Result};
use crate::hugemem::HugeBytes;
use kernels::{Kernel, PAIR_TILE, TILE};

/// Values per block.
const QK: usize = 32;
/// Rows per interleaved group.
const GROUP: usize = 8;

/// Block formats with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QFormat {
    /// f16 scale, f16 minimum, 16 bytes of nibbles: `w = d * q + m`.
    Q4_1,
    /// f16 scale, 32 signed bytes: `w = d * q`.
    Q8_0,
}

impl QFormat {
    /// The GGUF block type.
    pub fn ggml_dtype(self) -> GgmlDType {
        match self {
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q8_0 => GgmlDType::Q8_0,
        }
    }

    /// Bytes of one GGUF block of 32 values.
    const fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }

    /// Bytes of one interleaved record: the blocks of eight rows at one block
    /// column. Q4_1: `d[8]`, `m[8]` (f16), then four 32-byte vectors whose byte
    /// `4j + k` of vector `c` is nibble byte `4c + k` of row `j`. Q8_0: `d[8]`,
    /// then eight 32-byte vectors whose byte `4j + k` of vector `c` is weight
    /// `4c + k` of row `j`.
    const fn group_bytes(self) -> usize {
        self.block_bytes() * GROUP
    }

    /// Where the quantized bytes start in a record.
    const fn qs_offset(self) -> usize {
        match self {
            Self::Q4_1 => 32,
            Self::Q8_0 => 16,
        }
    }

    /// Writes the GGUF block `block` of row `j` into the record `rec`.
    fn pack(self, block: &[u8], rec: &mut [u8], j: usize) {
        rec[2 * j..2 * j + 2].copy_from_slice(&block[..2]);
        let (qs, off) = match self {
            Self::Q4_1 => {
                rec[16 + 2 * j..18 + 2 * j].copy_from_slice(&block[2..4]);
                (&block[4..], 32)
            }
            Self::Q8_0 => (&block[2..], 16),
        };
        for (c, chunk) in qs.chunks_exact(4).enumerate() {
            let at = off + 32 * c + 4 * j;
            rec[at..at + 4].copy_from_slice(chunk);
        }
    }

    /// Row `j`'s block of a record: scale, minimum (0 for Q8_0) and the 32
    /// integer values in activation order.
    fn unpack(self, rec: &[u8], j: usize) -> (f32, f32, [i32; QK]) {
        let f = |at: usize| f16::from_le_bytes([rec[at], rec[at + 1]]).to_f32();
        let byte = |c: usize, k: usize| rec[self.qs_offset() + 32 * c + 4 * j + k];
        match self {
            Self::Q4_1 => (
                f(2 * j),
                f(16 + 2 * j),
                std::array::from_fn(|i| {
                    let (i, high) = (i % 16, i >= 16);
                    let b = byte(i / 4, i % 4);
                    i32::from(if high { b >> 4 } else { b & 0x0F })
                }),
            ),
            Self::Q8_0 => (
                f(2 * j),
                0.0,
                std::array::from_fn(|i| i32::from(byte(i / 4, i % 4) as i8)),
            ),
        }
    }
}

/// A quantized weight matrix `(rows, cols)`, repacked into interleaved groups of
/// eight rows (the last group padded with zero rows).
#[derive(Debug)]
pub struct QMatrix {
    format: QFormat,
    rows: usize,
    cols: usize,
    /// `ceil(rows / 8)` groups of `cols / 32` records each, on huge pages.
    data: HugeBytes,
    /// The blocks again as AMX tiles, where [`QMatrix::keep_tiles`] made them.
    tiles: std::sync::OnceLock<HugeBytes>,
}

/// One quantized activation block (Q8_1), scales already widened to f32.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct BlockQ81 {
    qs: [i8; QK],
    d: f32,
    s: f32,
}

impl BlockQ81 {
    /// A block of zeros (what a new activation buffer holds).
    const ZERO: Self = Self {
        qs: [0; QK],
        d: 0.0,
        s: 0.0,
    };
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
        let data = q.data()?;
        if data.len() != rows * cols / QK * format.block_bytes() {
            return Err(EngineError::invalid(
                "weights",
                format!(
                    "{format:?} tensor of {rows}x{cols} has {} bytes",
                    data.len()
                ),
            ));
        }
        Ok(Some(Self::pack(format, rows, cols, &data)))
    }

    /// Repacks GGUF row-major blocks.
    fn pack(format: QFormat, rows: usize, cols: usize, row_major: &[u8]) -> Self {
        let nb = cols / QK;
        let bb = format.block_bytes();
        let groups = rows.div_ceil(GROUP);
        let data = HugeBytes::build(groups * nb * format.group_bytes(), |data| {
            for (r, row) in row_major.chunks_exact(nb * bb).enumerate() {
                let (g, j) = (r / GROUP, r % GROUP);
                for (b, block) in row.chunks_exact(bb).enumerate() {
                    let at = (g * nb + b) * format.group_bytes();
                    format.pack(block, &mut data[at..at + format.group_bytes()], j);
                }
            }
        });
        Self {
            format,
            rows,
            cols,
            data,
            tiles: std::sync::OnceLock::new(),
        }
    }

    /// Keeps a copy of the blocks laid out as AMX tiles, where this CPU takes
    /// AMX and the format's tiles are its bytes rearranged (Q8_0): products of
    /// many rows then read their weights in place rather than staging them.
    /// For the LM head, which every row of a decode step goes through at once:
    /// its 24-row product ran in 2.2 ms, a third of it staging. Costs about
    /// 6% more memory than the matrix.
    pub fn keep_tiles(&self) {
        #[cfg(target_arch = "x86_64")]
        if amx::copies(self.format) {
            self.tiles.get_or_init(|| amx::tile_copy(self));
        }
    }

    /// Row `r` as GGUF blocks.
    fn row_major(&self, r: usize, out: &mut Vec<u8>) {
        let (g, j) = (r / GROUP, r % GROUP);
        for rec in self.group(g).chunks_exact(self.format.group_bytes()) {
            let mut block = [0u8; 34];
            let block = &mut block[..self.format.block_bytes()];
            // Unpacking the record's copy back: the inverse of `QFormat::pack`.
            block[..2].copy_from_slice(&rec[2 * j..2 * j + 2]);
            let off = self.format.qs_offset();
            let qs = match self.format {
                QFormat::Q4_1 => {
                    block[2..4].copy_from_slice(&rec[16 + 2 * j..18 + 2 * j]);
                    &mut block[4..]
                }
                QFormat::Q8_0 => &mut block[2..],
            };
            for (c, chunk) in qs.chunks_exact_mut(4).enumerate() {
                let at = off + 32 * c + 4 * j;
                chunk.copy_from_slice(&rec[at..at + 4]);
            }
            out.extend_from_slice(block);
        }
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
        let rows = parts.iter().map(|p| p.rows).sum();
        let mut row_major = Vec::with_capacity(rows * first.cols / QK * first.format.block_bytes());
        for p in parts {
            for r in 0..p.rows {
                p.row_major(r, &mut row_major);
            }
        }
        Some(Self::pack(first.format, rows, first.cols, &row_major))
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of stored blocks (what one product reads from memory).
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The records of row group `g`.
    fn group(&self, g: usize) -> &[u8] {
        let n = self.cols / QK * self.format.group_bytes();
        &self.data[g * n..(g + 1) * n]
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
            let (g, j) = (r / GROUP, r % GROUP);
            for rec in self.group(g).chunks_exact(self.format.group_bytes()) {
                let (d, m, q) = self.format.unpack(rec, j);
                out.extend(q.iter().map(|&q| q as f32 * d + m));
            }
        }
        Ok(out)
    }

    /// `y = x W^T` for `x` of `m` rows of `cols` values; returns `m * rows` values.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        self.matmul_parts(x, m, &[self.rows])
            .pop()
            .expect("one part")
    }

    /// [`QMatrix::matmul`] of a matrix that stacks several projections
    /// ([`QMatrix::concat`]), each projection's `m * widths[p]` outputs in its
    /// own buffer (`widths` sum to `rows`).
    pub fn matmul_parts(&self, x: &[f32], m: usize, widths: &[usize]) -> Vec<Vec<f32>> {
        assert_eq!(
            widths.iter().sum::<usize>(),
            self.rows,
            "the parts' widths cover the matrix's rows"
        );
        let nb = self.cols / QK;
        #[cfg(target_arch = "x86_64")]
        let (amx, pad) = {
            let amx =
                m >= amx::min_rows(self.format, self.tiles.get().is_some()) && amx::available();
            // AMX tiles may read a few rows past the last (whatever they hold).
            (amx, if amx { amx::PAD_ROWS } else { 0 })
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (amx, pad) = (false, 0);
        // Rows `0..m` are quantized below (the padding is only read): no
        // buffer is allocated or cleared per product (on two threads, readying
        // a 24-row product's activations fell from 9.5 to 6.9 microseconds for
        // 576 columns and from 20 to 12 for 1536).
        let mut buf = ACTIVATIONS.take();
        let len = (m + pad) * nb;
        if buf.len() < len {
            buf.resize(len, BlockQ81::ZERO);
        }
        let xq = &mut buf[..len];
        let kernel = Kernel::detect();
        // Many rows (a decode step of many sequences, a prefill) quantize on
        // every thread; a single row is not worth the hand-off.
        if m >= 4 {
            use rayon::prelude::*;
            xq.par_chunks_exact_mut(nb)
                .zip(x.par_chunks_exact(self.cols))
                .for_each(|(blocks, row)| kernel.quantize_row(row, blocks));
        } else {
            for (row, blocks) in x.chunks_exact(self.cols).zip(xq.chunks_exact_mut(nb)) {
                kernel.quantize_row(row, blocks);
            }
        }
        // Whole groups per stripe; about eight stripes per thread balance the load.
        let groups = self.rows.div_ceil(GROUP);
        let mut stripe = (groups / (rayon::current_num_threads() * 8)).clamp(1, 32) * GROUP;
        if kernel.pairs() || amx {
            // Whole pairs of groups, for the two-group kernels and AMX tiles
            // (a tile holds two groups' outputs).
            stripe = stripe.next_multiple_of(2 * GROUP);
        }
        #[cfg(target_arch = "x86_64")]
        if amx {
            let acts = amx::Activations::new(xq, nb);
            let out = crate::threads::par_features_parts(m, widths, stripe, |features, dst| {
                for first in (0..m).step_by(STRIPE_ROWS) {
                    let chunk = first..(first + STRIPE_ROWS).min(m);
                    amx::fill_tile(self, &acts, dst, chunk, features.clone());
                }
            });
            keep_activations(buf);
            return out;
        }
        kernel.prepare(self.format, xq);
        let rows: Vec<&[BlockQ81]> = xq.chunks_exact(nb).collect();
        let out = crate::threads::par_features_parts(m, widths, stripe, |features, dst| {
            for first in (0..m).step_by(STRIPE_ROWS) {
                let chunk = first..(first + STRIPE_ROWS).min(m);
                self.fill_tile(kernel, dst, first, &rows[chunk], features.clone());
            }
        });
        keep_activations(buf);
        out
    }

    /// Features `features` (whole row groups, or up to the last row) of the
    /// activation rows `rows`, rows `first..` of the product, into `dst`.
    /// Two whole groups go through one call where the kernel has a two-group
    /// body ([`Kernel::pairs`]). Each call's outputs of a row go straight to
    /// the output as one fixed-size store: gathering a stripe's outputs in a
    /// buffer first and copying each row's run out cost a twentieth of a
    /// 24-sequence decode step in copies.
    fn fill_tile(
        &self,
        kernel: Kernel,
        dst: &mut crate::threads::Stripe<'_>,
        first: usize,
        rows: &[&[BlockQ81]],
        features: Range<usize>,
    ) {
        let width = features.len();
        let m = rows.len();
        let mut g = features.start / GROUP;
        while g * GROUP < features.end {
            let col = g * GROUP - features.start;
            // The rows split evenly into the fewest tiles of at most `$cap`
            // (with eight at most, nine rows as five and four, not eight and
            // one: a tile's weight unpacking is shared by its rows, so a tile
            // of one costs nearly as much as one of four). One arm per tile size, as the kernel
            // takes its rows as an array. `$dot` gives a tile's outputs (one
            // or two groups'), of which the first `$n` are kept.
            macro_rules! tiles {
                (|$xs:ident| $dot:expr, $n:expr, $cap:expr, $($t:literal)*) => {{
                    let tiles = m.div_ceil($cap);
                    let mut i = 0;
                    for left in (1..=tiles).rev() {
                        let t = (m - i).div_ceil(left);
                        match t {
                            $($t => {
                                let $xs: [_; $t] = std::array::from_fn(|k| rows[i + k]);
                                for (k, out) in $dot.iter().enumerate() {
                                    let (row, r) = (first + i + k, features.start + col);
                                    if $n == out.len() {
                                        dst.set_array(row, r, out);
                                    } else {
                                        dst.set_run(row, r, &out[..$n]);
                                    }
                                }
                            })*
                            _ => unreachable!("a tile holds 1 to {} rows", $cap),
                        }
                        i += t;
                    }
                }};
            }
            if kernel.pairs() && width - col >= 2 * GROUP {
                let (a, b) = (self.group(g), self.group(g + 1));
                const _: () = assert!(PAIR_TILE == 12);
                tiles!(|xs| kernel.dot16xn(self.format, a, b, xs), 2 * GROUP, PAIR_TILE, 1 2 3 4 5 6 7 8 9 10 11 12);
                g += 2;
            } else {
                // The last group of the matrix may be padding past `rows`.
                let w = self.group(g);
                const _: () = assert!(TILE == 8);
                tiles!(|xs| kernel.dot8xn(self.format, w, xs), GROUP.min(width - col), TILE, 1 2 3 4 5 6 7 8);
                g += 1;
            }
        }
    }
}

/// Keeps a product's activation buffer for this thread's next product, unless
/// a long prefill grew it past [`KEPT_ACTIVATIONS`] blocks.
fn keep_activations(buf: Vec<BlockQ81>) {
    if buf.capacity() <= KEPT_ACTIVATIONS {
        ACTIVATIONS.set(buf);
    }
}

/// Activation blocks a thread keeps between products (2 MiB: about 680 rows
/// of 1536 columns, more than any decode step).
const KEPT_ACTIVATIONS: usize = (2 << 20) / std::mem::size_of::<BlockQ81>();

/// Activation rows per pass over a stripe's row groups: the stripe's weights
/// stay in cache between passes, and the output buffer stays small.
pub(super) const STRIPE_ROWS: usize = 64;

thread_local! {
    /// The quantized activation rows of this thread's products, kept for its
    /// next one (taken out while a product runs, so a product that starts
    /// while this thread waits inside another gets a buffer of its own).
    static ACTIVATIONS: std::cell::Cell<Vec<BlockQ81>> = const { std::cell::Cell::new(Vec::new()) };
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
mod tests;
