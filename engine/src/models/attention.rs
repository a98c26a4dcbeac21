//! Attention pieces every family shares: the additive mask (causal, plus left
//! padding), token positions that skip padding, and scaled dot-product attention
//! with an optional additive bias (BLOOM's ALiBi).

use candle_core::{Device, Tensor};

use crate::error::{EngineError, Result};

/// What masked scores are set to. transformers uses the dtype's minimum rather
/// than −∞ so that a row with every key masked (a padding query) softmaxes to a
/// finite uniform row instead of NaN, which would then leak into later layers.
const MASKED: f32 = f32::MIN;

/// A padded batch's token mask `[b, t]` (1 on tokens, 0 on padding) as rows.
pub(crate) fn padding_rows(padding: &Tensor, ids: &Tensor) -> Result<Vec<Vec<u32>>> {
    if padding.dims() != ids.dims() {
        return Err(EngineError::invalid(
            "attention_mask",
            format!(
                "has shape {:?} but the ids have {:?}",
                padding.dims(),
                ids.dims()
            ),
        ));
    }
    let rows = padding
        .to_dtype(candle_core::DType::U32)?
        .to_vec2::<u32>()?;
    if rows.iter().flatten().any(|&m| m > 1) {
        return Err(EngineError::invalid(
            "attention_mask",
            "must hold only 0 and 1",
        ));
    }
    Ok(rows)
}

/// Additive mask `[b, 1, t, offset + t]` for `t` new positions after `offset`
/// cached ones: causal, and with padded keys masked when `padding` is given
/// (padding needs an empty cache). `None` when nothing is masked (one new
/// position, no padding).
pub(crate) fn mask(
    t: usize,
    offset: usize,
    padding: Option<&[Vec<u32>]>,
) -> Result<Option<Tensor>> {
    let total = offset + t;
    let rows: Vec<Option<&Vec<u32>>> = match padding {
        Some(p) => {
            if offset != 0 {
                return Err(EngineError::invalid(
                    "attention_mask",
                    "a padded batch must start from an empty cache",
                ));
            }
            p.iter().map(Some).collect()
        }
        None if t <= 1 => return Ok(None),
        None => vec![None],
    };
    let b = rows.len();
    let mut m = Vec::with_capacity(b * t * total);
    for row in &rows {
        for i in 0..t {
            for j in 0..total {
                let padded = row.is_some_and(|r| r[j] == 0);
                m.push(if j > offset + i || padded {
                    MASKED
                } else {
                    0.0
                });
            }
        }
    }
    Ok(Some(Tensor::from_vec(m, (b, 1, t, total), &Device::Cpu)?))
}

/// Positions of `t` new tokens after `offset` cached ones, `[b or 1, t]`: with
/// padding, each token counts only the real tokens before it and padding sits at
/// 0 (transformers' `(cumsum(mask) - 1) * mask`), so padding moves nothing.
pub(crate) fn positions(t: usize, offset: usize, padding: Option<&[Vec<u32>]>) -> Vec<Vec<u32>> {
    match padding {
        None => vec![(offset as u32..(offset + t) as u32).collect()],
        Some(rows) => rows
            .iter()
            .map(|row| {
                let mut seen = 0u32;
                row.iter()
                    .map(|&m| {
                        seen += m;
                        (seen.saturating_sub(1)) * m
                    })
                    .collect()
            })
            .collect(),
    }
}

/// `softmax(q k^T * scale + bias + mask) v` for `q` `[b, h, t, d]` and `k`, `v`
/// `[b, h, total, d]`; `bias` and `mask` broadcast to `[b, h, t, total]`.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    bias: Option<&Tensor>,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let mut scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scale)?;
    if let Some(b) = bias {
        scores = scores.broadcast_add(b)?;
    }
    if let Some(m) = mask {
        scores = scores.broadcast_add(m)?;
    }
    let probs = crate::ops::softmax_last_dim(&scores)?;
    Ok(probs.matmul(&v.contiguous()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_positions_follow_transformers() {
        let rows = vec![vec![0, 0, 1, 1, 1], vec![1, 1, 1, 1, 1]];
        assert_eq!(
            positions(5, 0, Some(&rows)),
            vec![vec![0, 0, 0, 1, 2], vec![0, 1, 2, 3, 4]]
        );
        assert_eq!(positions(2, 7, None), vec![vec![7, 8]]);
    }

    #[test]
    fn mask_is_causal_and_hides_padding() {
        let rows = vec![vec![0, 1, 1]];
        let m = mask(3, 0, Some(&rows)).unwrap().unwrap();
        let m = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let allowed: Vec<bool> = m.iter().map(|&v| v == 0.0).collect();
        #[rustfmt::skip]
        let want = [
            false, false, false,
            false, true, false,
            false, true, true,
        ];
        assert_eq!(allowed, want);
        assert!(mask(1, 4, None).unwrap().is_none());
        assert!(mask(2, 4, Some(&rows)).is_err());
    }
}
