//! The quantized products against candle's and across kernels, tiles and
//! batch sizes (the same bits), and the repacking's round trip.

use super::kernels::quantize_row_q8_1;
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
    let (rows, cols, m) = (75, 256, 5);
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
fn simd_quantization_is_bit_identical_to_scalar() {
    // Random rows, and a row of exact halves (ties round away from zero).
    let mut rows: Vec<Vec<f32>> = (0..6).map(|k| random(256, 70 + k)).collect();
    // With 127 in a block, d = 1 and every other value is an exact tie.
    let ties = (0..64).map(|i| {
        if i % 32 == 0 {
            127.0
        } else {
            (i % 32) as f32 - 16.5
        }
    });
    rows.push(ties.collect());
    rows.push(vec![0.0; 32]);
    for (x, kernel) in rows
        .iter()
        .flat_map(|x| Kernel::available().into_iter().map(move |k| (x, k)))
    {
        let mut want = vec![BlockQ81::ZERO; x.len() / QK];
        let mut got = want.clone();
        quantize_row_q8_1(x, &mut want);
        kernel.quantize_row(x, &mut got);
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.qs, g.qs, "{kernel:?}");
            assert_eq!(
                (w.d.to_bits(), w.s.to_bits()),
                (g.d.to_bits(), g.s.to_bits()),
                "{kernel:?}"
            );
        }
    }
}

#[test]
fn simd_and_scalar_kernels_agree() {
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let (rows, cols) = (16, 512);
        let w = Tensor::from_vec(random(rows * cols, 5), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let mat = QMatrix::from_qtensor(&q).unwrap().unwrap();
        // Twelve different activation rows, through tiles of every size.
        let xs: Vec<Vec<BlockQ81>> = (0..PAIR_TILE)
            .map(|k| {
                let mut q = vec![BlockQ81::ZERO; cols / QK];
                quantize_row_q8_1(&random(cols, 30 + k as u64), &mut q);
                q
            })
            .collect();
        for g in 0..rows / GROUP {
            let w = mat.group(g);
            let want: Vec<[f32; GROUP]> = xs
                .iter()
                .map(|x| Kernel::Scalar.dot8xn(mat.format, w, [&x[..]])[0])
                .collect();
            let mut first_simd: Option<Vec<[f32; GROUP]>> = None;
            for simd in Kernel::available().into_iter().skip(1) {
                let mut xs = xs.clone();
                for x in &mut xs {
                    simd.prepare(mat.format, x);
                }
                let mut got: Vec<Vec<[f32; GROUP]>> = vec![
                    simd.dot8xn::<1>(mat.format, w, [&xs[0][..]]).to_vec(),
                    simd.dot8xn::<3>(mat.format, w, std::array::from_fn(|k| &xs[k][..]))
                        .to_vec(),
                    simd.dot8xn::<6>(mat.format, w, std::array::from_fn(|k| &xs[k][..]))
                        .to_vec(),
                    simd.dot8xn::<TILE>(mat.format, w, std::array::from_fn(|k| &xs[k][..]))
                        .to_vec(),
                ];
                // A row's bits do not depend on the tile it is computed in.
                assert_eq!(got[0][0], got[3][0], "{dtype:?} {simd:?}");
                assert_eq!(got[1][..], got[3][..3], "{dtype:?} {simd:?}");
                assert_eq!(got[2][..], got[3][..6], "{dtype:?} {simd:?}");
                let got = got.swap_remove(3);
                for (want, got) in want.iter().zip(&got) {
                    for (a, b) in want.iter().zip(got) {
                        assert!(
                            (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                            "{dtype:?} {simd:?}: {a} vs {b}"
                        );
                    }
                }
                // Two groups at once: each half as its group alone.
                if g % 2 == 0 {
                    let (a, b) = (w, mat.group(g + 1));
                    let alone = |w: &[u8], k: usize| simd.dot8xn(mat.format, w, [&xs[k][..]])[0];
                    let pair: Vec<[f32; 2 * GROUP]> = [
                        simd.dot16xn::<1>(mat.format, a, b, [&xs[0][..]]).to_vec(),
                        simd.dot16xn::<5>(mat.format, a, b, std::array::from_fn(|k| &xs[k][..]))
                            .to_vec(),
                        simd.dot16xn::<PAIR_TILE>(
                            mat.format,
                            a,
                            b,
                            std::array::from_fn(|k| &xs[k][..]),
                        )
                        .to_vec(),
                    ]
                    .concat();
                    let rows = (0..1).chain(0..5).chain(0..PAIR_TILE);
                    for (k, two) in rows.zip(&pair) {
                        assert_eq!(two[..GROUP], alone(a, k), "{dtype:?} {simd:?} row {k}");
                        assert_eq!(two[GROUP..], alone(b, k), "{dtype:?} {simd:?} row {k}");
                    }
                }
                // Every SIMD kernel sums the same integers and scales them
                // with the same float operations: the same bits as AVX2.
                match &first_simd {
                    None => first_simd = Some(got),
                    Some(first) => assert_eq!(first, &got, "{dtype:?} {simd:?}"),
                }
            }
        }
    }
}

#[test]
fn a_row_gets_the_same_bits_alone_or_among_many() {
    // More rows than one pass over a stripe takes, a partial last group,
    // and enough groups for several stripes; on AMX (many rows), passes
    // of 64, 9 and 5 rows (tiles of 16, 10 and 6), a lone last group (nine
    // groups) as well as a pair, and 24 rows (two tiles of 12), with the
    // weights staged and (Q8_0) read from the tile copy; on the VNNI
    // kernels, 9 rows (one call) and Q4_1's 11 (one call; Q8_0's on AMX).
    for ((rows, cols, m), dtype) in [
        (203, 96, STRIPE_ROWS + 9),
        (69, 64, STRIPE_ROWS + 5),
        (37, 320, 24),
        (69, 64, 9),
        (203, 96, 11),
    ]
    .into_iter()
    .flat_map(|shape| [(shape, GgmlDType::Q4_1), (shape, GgmlDType::Q8_0)])
    {
        let w = Tensor::from_vec(random(rows * cols, 11), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let mat = QMatrix::from_qtensor(&q).unwrap().unwrap();
        let x = random(m * cols, 12);
        let staged = crate::threads::install(|| mat.matmul(&x, m));
        mat.keep_tiles();
        let copied = crate::threads::install(|| mat.matmul(&x, m));
        for (i, row) in x.chunks_exact(cols).enumerate() {
            let alone = mat.matmul(row, 1);
            for all in [&staged, &copied] {
                assert_eq!(
                    &all[i * rows..(i + 1) * rows],
                    &alone[..],
                    "{dtype:?} row {i}"
                );
            }
        }
    }
}

#[test]
fn concat_equals_the_parts_and_round_trips_rows() {
    let cols = 64;
    let parts: Vec<(QTensor, QMatrix)> = [5usize, 8, 11]
        .iter()
        .enumerate()
        .map(|(i, &rows)| {
            let w = Tensor::from_vec(
                random(rows * cols, 20 + i as u64),
                (rows, cols),
                &Device::Cpu,
            )
            .unwrap();
            let q = QTensor::quantize(&w, GgmlDType::Q4_1).unwrap();
            let m = QMatrix::from_qtensor(&q).unwrap().unwrap();
            (q, m)
        })
        .collect();
    let refs: Vec<&QMatrix> = parts.iter().map(|(_, m)| m).collect();
    let all = QMatrix::concat(&refs).unwrap();
    assert_eq!(all.rows(), 24);
    let x = random(2 * cols, 4);
    let got = all.matmul(&x, 2);
    let mut at = 0;
    for (q, m) in &parts {
        let mut row_major = Vec::new();
        for r in 0..m.rows() {
            m.row_major(r, &mut row_major);
        }
        assert_eq!(
            row_major,
            q.data().unwrap().as_ref(),
            "GGUF blocks round-trip"
        );
        let want = m.matmul(&x, 2);
        for i in 0..2 {
            let g = &got[i * 24 + at..i * 24 + at + m.rows()];
            assert_eq!(g, &want[i * m.rows()..(i + 1) * m.rows()]);
        }
        at += m.rows();
    }
}
