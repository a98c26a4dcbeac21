//! Tensor operations with two implementations: candle's fused kernels for
//! inference, and compositions of differentiable primitives when autograd is
//! recording (an input or weight is a `Var` or comes from one).
//!
//! candle's fused `rms_norm`, `layer_norm`, `softmax_last_dim`, `rope` and `rope_i`
//! (`candle-nn/src/ops.rs`, `rotary_emb.rs`) are applied with `apply_op*_no_bwd`:
//! their outputs carry no graph, so a gradient would silently stop there. Every
//! model family calls these wrappers instead of candle's directly, which keeps the
//! f32 forward pass trainable (the student fine-tuning needs it) without slowing
//! inference.

use candle_core::{D, Tensor};

use crate::config::RopeStyle;
use crate::error::Result;

/// Whether autograd records an operation on any of `ts`.
fn recording(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// Root-mean-square norm over the last dimension: `x / sqrt(mean(x^2) + eps) * w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(if recording(&[x, w]) {
        candle_nn::ops::rms_norm_slow(x, w, eps)?
    } else {
        candle_nn::ops::rms_norm(x, w, eps)?
    })
}

/// Layer norm over the last dimension: `(x - mean) / sqrt(var + eps) * w + b`.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(if recording(&[x, w, b]) {
        candle_nn::ops::layer_norm_slow(x, w, b, eps)?
    } else {
        candle_nn::ops::layer_norm(&x.contiguous()?, w, b, eps)?
    })
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    Ok(if recording(&[x]) {
        candle_nn::ops::softmax(x, D::Minus1)?
    } else {
        candle_nn::ops::softmax_last_dim(x)?
    })
}

/// Rotary position embedding of `x` `[b, heads, t, d]` with tables `[t, d / 2]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, style: RopeStyle) -> Result<Tensor> {
    let x = x.contiguous()?;
    let slow = recording(&[&x]);
    Ok(match (style, slow) {
        (RopeStyle::Half, false) => candle_nn::rotary_emb::rope(&x, cos, sin)?,
        (RopeStyle::Half, true) => candle_nn::rotary_emb::rope_slow(&x, cos, sin)?,
        (RopeStyle::Interleaved, false) => candle_nn::rotary_emb::rope_i(&x, cos, sin)?,
        (RopeStyle::Interleaved, true) => candle_nn::rotary_emb::rope_i_slow(&x, cos, sin)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Both implementations compute the same values, and the recording one
    /// passes gradients through.
    #[test]
    fn fast_and_differentiable_forms_agree() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.1, 8, &dev).unwrap();
        let b = Tensor::randn(0f32, 0.1, 8, &dev).unwrap();
        let cos = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        type Op<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
        let cases: Vec<(&str, Op)> = vec![
            ("rms_norm", Box::new(|x| rms_norm(x, &w, 1e-5).unwrap())),
            (
                "layer_norm",
                Box::new(|x| layer_norm(x, &w, &b, 1e-5).unwrap()),
            ),
            ("softmax", Box::new(|x| softmax_last_dim(x).unwrap())),
            (
                "rope",
                Box::new(|x| rope(x, &cos, &sin, RopeStyle::Half).unwrap()),
            ),
            (
                "rope_i",
                Box::new(|x| rope(x, &cos, &sin, RopeStyle::Interleaved).unwrap()),
            ),
        ];
        for (name, f) in cases {
            let fast = f(&x);
            let slow = f(xv.as_tensor());
            let diff = (&fast - &slow)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "{name}: {diff}");
            assert!(slow.track_op(), "{name} records no graph");
            // Weight the outputs so even softmax (rows sum to 1) has a gradient.
            let weights = Tensor::randn(0f32, 1.0, slow.shape(), &dev).unwrap();
            let grads = (slow * weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g = grads
                .get(xv.as_tensor())
                .expect("gradient reaches the input");
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(norm > 0.0, "{name}: zero gradient");
        }
    }
}
