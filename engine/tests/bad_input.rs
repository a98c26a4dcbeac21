//! Bad model files give an error naming the file and the problem, never a panic:
//! a truncated GGUF, a file that is not GGUF, a config with an unknown
//! architecture, a checkpoint missing a tensor, a broken shard index.

mod common;

use std::path::Path;

use common::fixture;
use engine::{EngineError, LoadOptions, Model};

fn load_err(path: &Path) -> EngineError {
    Model::load(path, LoadOptions::default()).expect_err("loading must fail")
}

/// Copies the tiny Llama fixture so a test can break the copy.
fn llama_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("llama-tiny")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn truncated_gguf_names_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::default_model();
    let path = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(&path).to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");

    // Cut inside the header: the parser itself must fail cleanly.
    std::fs::write(&path, &bytes[..4096]).unwrap();
    let e = load_err(&path).to_string();
    assert!(
        e.contains("cut.gguf") && e.contains("not a valid GGUF"),
        "{e}"
    );
}

#[test]
fn non_gguf_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.gguf");
    std::fs::write(&path, b"this is not a model").unwrap();
    let e = load_err(&path).to_string();
    assert!(
        e.contains("fake.gguf") && e.contains("not a valid GGUF"),
        "{e}"
    );
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"hello").unwrap();
    let e = load_err(&path).to_string();
    assert!(e.contains("notes.txt") && e.contains("not a model"), "{e}");
    let e = load_err(&dir.path().join("absent.gguf")).to_string();
    assert!(e.contains("absent.gguf"), "{e}");
}

#[test]
fn unknown_architecture_is_named() {
    let dir = llama_copy();
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"llama\"", "\"mamba\"");
    std::fs::write(&cfg, text).unwrap();
    let e = load_err(dir.path());
    assert!(
        matches!(e, EngineError::UnsupportedArchitecture { .. }),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(e.contains("config.json") && e.contains("mamba"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = llama_copy();
    // Point the index's entry for one tensor at a shard that lacks it.
    let index = dir.path().join("model.safetensors.index.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    let map = v["weight_map"].as_object_mut().unwrap();
    let victim = "model.layers.1.mlp.down_proj.weight";
    let shard = map[victim].as_str().unwrap().to_string();
    // Rewrite that shard without the tensor.
    let path = dir.path().join(&shard);
    let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let kept: std::collections::HashMap<_, _> =
        tensors.into_iter().filter(|(k, _)| k != victim).collect();
    candle_core::safetensors::save(&kept, &path).unwrap();
    map.remove(victim);
    std::fs::write(&index, v.to_string()).unwrap();
    let e = load_err(dir.path());
    assert!(matches!(e, EngineError::MissingTensor { .. }), "{e:?}");
    assert!(e.to_string().contains(victim), "{e}");
}

#[test]
fn broken_shard_index_and_config_are_named() {
    let dir = llama_copy();
    std::fs::remove_file(dir.path().join("model-00002-of-00003.safetensors")).unwrap();
    let e = load_err(dir.path()).to_string();
    assert!(
        e.contains("model.safetensors.index.json") && e.contains("00002"),
        "{e}"
    );

    let dir = llama_copy();
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let e = load_err(dir.path()).to_string();
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );

    let dir = llama_copy();
    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    std::fs::write(&cfg, text).unwrap();
    let e = load_err(dir.path()).to_string();
    assert!(e.contains("not a multiple"), "{e}");
}

#[test]
fn generation_rejects_bad_arguments_by_name() {
    let model = Model::load(fixture("llama-tiny"), LoadOptions::default()).unwrap();
    let e = engine::generate(&model, &[], &Default::default(), |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("prompt"), "{e}");
    let long = vec![5u32; 300];
    let e = engine::generate(&model, &long, &Default::default(), |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("context"), "{e}");
    let params = engine::GenerateParams {
        sampling: engine::SamplingParams {
            temperature: -1.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = engine::generate(&model, &[5, 6], &params, |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("temperature"), "{e}");
}
