//! The f32 forward pass is differentiable: loaded trainable, every weight of the
//! tiny Llama, Qwen2, BLOOM and OPT fixtures gets a gradient from a language-modelling loss,
//! and the gradients agree with finite differences of the loss. The student
//! fine-tuning trains these same implementations.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{fixture, ids, reference};
use engine::{LoadOptions, Model};

/// Next-token cross-entropy of the fixture's reference input.
fn loss(model: &Model, input: &[u32]) -> Tensor {
    let lm = model.lm();
    let x = Tensor::new(input, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = lm
        .forward(&x, &mut lm.new_cache())
        .unwrap()
        .squeeze(0)
        .unwrap();
    let n = input.len() - 1;
    let targets = Tensor::new(&input[1..], &Device::Cpu).unwrap();
    candle_nn::loss::cross_entropy(&logits.narrow(0, 0, n).unwrap(), &targets).unwrap()
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

/// Sets element `i` of `var` to `value`.
fn set(var: &Var, i: usize, value: f32) {
    let mut v = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    v[i] = value;
    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
        .unwrap();
}

/// Checks every weight's gradient, and finite differences on `keys`.
fn gradients_match_finite_differences(name: &str, keys: &[&str]) {
    let model = Model::load(
        fixture(name),
        LoadOptions {
            trainable: true,
            ..LoadOptions::default()
        },
    )
    .expect("fixture loads trainable");
    let input = ids(&reference(name)["input_ids"]);
    let vars = model.vars().expect("trainable weights").all_vars();
    let names: Vec<String> = {
        let data = model.vars().unwrap().data().lock().unwrap();
        let mut names: Vec<String> = data.keys().cloned().collect();
        names.sort();
        names
    };
    for key in keys {
        assert!(
            names.iter().any(|n| n == key),
            "{name}: {key} is not among the trainable weights {names:?}"
        );
    }

    let grads = loss(&model, &input).backward().unwrap();
    for var in &vars {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| {
            panic!(
                "{name}: a weight of shape {:?} gets no gradient",
                var.shape()
            )
        });
        assert!(
            scalar(&g.sqr().unwrap().sum_all().unwrap()) > 0.0,
            "{name}: zero gradient for a weight of shape {:?}",
            var.shape()
        );
    }

    // Central differences on the largest-gradient element of a few weights.
    let data = model.vars().unwrap().data().lock().unwrap().clone();
    for key in keys {
        let var = &data[*key];
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let (i, &gi) = g
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap();
        let w = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()[i];
        let h = 1e-2;
        set(var, i, w + h);
        let up = scalar(&loss(&model, &input));
        set(var, i, w - h);
        let down = scalar(&loss(&model, &input));
        set(var, i, w);
        let numeric = (up - down) / (2.0 * h);
        assert!(
            (numeric - gi).abs() <= 0.05 * gi.abs().max(1e-3),
            "{name} {key}[{i}]: autograd {gi}, finite difference {numeric}"
        );
    }
}

#[test]
fn llama_gradients_match_finite_differences() {
    gradients_match_finite_differences(
        "llama-tiny",
        &[
            "model.layers.0.input_layernorm.weight",
            "model.layers.1.self_attn.k_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.norm.weight",
        ],
    );
}

#[test]
fn qwen2_gradients_match_finite_differences() {
    gradients_match_finite_differences(
        "qwen2-tiny",
        &[
            "model.layers.0.self_attn.q_proj.bias",
            "model.layers.1.mlp.gate_proj.weight",
            "lm_head.weight",
        ],
    );
}

#[test]
fn bloom_gradients_match_finite_differences() {
    gradients_match_finite_differences(
        "bloom-tiny-6h",
        &[
            "transformer.word_embeddings_layernorm.bias",
            "transformer.h.0.self_attention.query_key_value.weight",
            "transformer.h.1.mlp.dense_4h_to_h.bias",
            "transformer.ln_f.weight",
        ],
    );
}

#[test]
fn opt_gradients_match_finite_differences() {
    gradients_match_finite_differences(
        "opt-tiny-post",
        &[
            "model.decoder.embed_positions.weight",
            "model.decoder.project_in.weight",
            "model.decoder.layers.0.self_attn.v_proj.weight",
            "model.decoder.layers.1.final_layer_norm.weight",
        ],
    );
}
