//! Helpers shared by the engine's integration tests: fixture paths, the default
//! model's location, small numeric comparisons.

#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{Device, Tensor};

/// `engine/tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture's `reference.json`.
pub fn reference(name: &str) -> serde_json::Value {
    let path = fixture(name).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference.json is valid JSON")
}

/// A tensor from the fixture's `reference.safetensors`.
pub fn reference_tensor(name: &str, tensor: &str) -> Tensor {
    let path = fixture(name).join("reference.safetensors");
    let mut all = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    all.remove(tensor)
        .unwrap_or_else(|| panic!("{}: no tensor {tensor}", path.display()))
}

/// JSON array of integers as token ids.
pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// The default model (SmolLM2-135M-Instruct Q4_1), fetched by `cargo xtask models`
/// into `$TEACHERLM_HOME/models` (default `~/.cache/teacherlm/models`).
pub fn default_model() -> PathBuf {
    let home = std::env::var_os("TEACHERLM_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/teacherlm")
        });
    let path = home
        .join("models")
        .join(shared::catalogue::DEFAULT_MODEL.file);
    assert!(
        path.exists(),
        "this test needs the default model at {}; fetch it with `cargo xtask models` \
         (`cargo xtask test` does so before running the tests)",
        path.display()
    );
    path
}

/// Largest absolute difference of two equally shaped tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Pearson correlation of two vectors.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let ma = a.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa.sqrt() * sbb.sqrt())
}
