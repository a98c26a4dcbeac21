//! Where a model's weights come from and the layer types that hold them.
//!
//! A [`Checkpoint`] is either Hugging Face safetensors (single or sharded, memory
//! mapped, any float dtype converted to f32) or a GGUF file, whose blocks are either
//! dequantized to f32 ([`WeightMode::F32`], what transformers does with a GGUF) or kept
//! quantized for candle's quantized matmul ([`WeightMode::Quantized`], what llama.cpp
//! does: activations are quantized to the block type's dot-product partner, e.g. Q8_1
//! for Q4_1). Model code asks for weights by their checkpoint name, so a missing
//! tensor error names the exact key.

use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::quant::{QFormat, QMatrix};

/// How GGUF blocks are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightMode {
    /// Dequantize every tensor to f32 (reference numerics, ~4x the memory).
    F32,
    /// Keep quantized blocks and use quantized matmuls (llama.cpp numerics).
    #[default]
    Quantized,
}

/// Where a checkpoint's tensors are read from.
pub enum Source {
    /// Hugging Face safetensors, possibly sharded.
    Safetensors {
        /// The model folder, for error messages.
        dir: PathBuf,
        /// Memory-mapped weights, converted to f32 on access.
        vb: VarBuilder<'static>,
    },
    /// A GGUF file.
    Gguf {
        /// The open file.
        file: GgufFile,
        /// Dequantize or keep blocks.
        mode: WeightMode,
    },
    /// Random N(0, 0.02) weights of whatever shape is asked for: a model of a
    /// real architecture's shape for speed measurements (speed depends on shape
    /// only), without downloading it.
    Random {
        /// What to call it in messages.
        label: PathBuf,
    },
}

/// The weights of one model, from one of the supported formats; when trainable,
/// every tensor is handed out as a [`Var`] and recorded by name.
pub struct Checkpoint {
    source: Source,
    vars: Option<VarMap>,
    quantize_to: Option<QFormat>,
}

impl Checkpoint {
    /// Memory-maps safetensors `files` of the model folder `dir`.
    pub fn safetensors(dir: &Path, files: &[PathBuf]) -> Result<Self> {
        // SAFETY: the files are memory-mapped read-only; modifying them while the
        // model is loaded is undefined behaviour, as with every mmap-based loader.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, DType::F32, &Device::Cpu) }
            .map_err(|e| EngineError::bad_file(dir, format!("cannot read safetensors: {e}")))?;
        Ok(Self {
            source: Source::Safetensors {
                dir: dir.to_path_buf(),
                vb,
            },
            vars: None,
            quantize_to: None,
        })
    }

    /// An open GGUF file whose blocks are held as `mode` says.
    pub fn gguf(file: GgufFile, mode: WeightMode) -> Self {
        Self {
            source: Source::Gguf { file, mode },
            vars: None,
            quantize_to: None,
        }
    }

    /// Random weights of every asked-for shape (see [`Source::Random`]).
    pub fn random(label: &str) -> Self {
        Self {
            source: Source::Random {
                label: PathBuf::from(label),
            },
            vars: None,
            quantize_to: None,
        }
    }

    /// When `trainable`, hands out every weight as a trainable f32 [`Var`]
    /// (quantized blocks are dequantized), recorded in [`Checkpoint::vars`].
    pub fn trainable(mut self, trainable: bool) -> Self {
        self.vars = trainable.then(VarMap::new);
        self
    }

    /// Quantizes float matrices (linear weights and token embeddings whose width
    /// is a multiple of 32) to `format` as they load, so any checkpoint runs on
    /// the engine's quantized kernels. Kept GGUF blocks and trainable weights are
    /// left as they are.
    pub fn quantize_to(mut self, format: Option<QFormat>) -> Self {
        self.quantize_to = format;
        self
    }

    /// The trainable weights by checkpoint name, when [`Checkpoint::trainable`].
    pub fn vars(&self) -> Option<&VarMap> {
        self.vars.as_ref()
    }

    fn path(&self) -> &Path {
        match &self.source {
            Source::Safetensors { dir, .. } => dir,
            Source::Gguf { file, .. } => file.path(),
            Source::Random { label } => label,
        }
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Safetensors { vb, .. } => vb.contains_tensor(name),
            Source::Gguf { file, .. } => file.has_tensor(name),
            Source::Random { .. } => true,
        }
    }

    fn missing(&self, name: &str) -> EngineError {
        EngineError::MissingTensor {
            path: self.path().to_path_buf(),
            name: name.to_string(),
        }
    }

    fn gguf_tensor(&self, file: &GgufFile, name: &str, dims: &[usize]) -> Result<QTensor> {
        let t = file.tensor(name)?;
        if t.shape().dims() != dims {
            return Err(EngineError::bad_file(
                file.path(),
                format!(
                    "tensor `{name}` has shape {:?}, expected {dims:?}",
                    t.shape().dims()
                ),
            ));
        }
        Ok(t)
    }

    /// An f32 tensor of the given shape (norm weights, biases, embeddings in f32 mode).
    pub fn dense(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        if !self.contains(name) {
            return Err(self.missing(name));
        }
        let t = match &self.source {
            Source::Safetensors { vb, dir } => vb
                .get(dims, name)
                .map_err(|e| EngineError::bad_file(dir, format!("tensor `{name}`: {e}")))?,
            Source::Gguf { file, .. } => {
                let q = self.gguf_tensor(file, name, dims)?;
                q.dequantize(&Device::Cpu)?
            }
            Source::Random { .. } => Tensor::randn(0f32, 0.02, dims, &Device::Cpu)?,
        };
        let Some(vars) = &self.vars else {
            return Ok(t);
        };
        let var = Var::from_tensor(&t)?;
        let mut map = vars.data().lock().map_err(|_| {
            EngineError::invalid("weights", "the variable map was poisoned by a panic")
        })?;
        map.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    /// A linear layer `y = x W^T (+ b)` with `W` of shape `(out, in)`.
    pub fn linear(&self, name: &str, bias: Option<&str>, out: usize, inp: usize) -> Result<Linear> {
        let bias = bias.map(|b| self.dense(b, &[out])).transpose()?;
        let weight = match self.quantized(name, &[out, inp])? {
            Some(w) => w,
            None => LinearWeight::Dense(self.dense(name, &[out, inp])?),
        };
        Ok(Linear { weight, bias })
    }

    /// An embedding table of shape `(rows, dim)`.
    pub fn embedding(&self, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
        Ok(Embedding(match self.quantized(name, &[rows, dim])? {
            Some(w) => w,
            None => LinearWeight::Dense(self.dense(name, &[rows, dim])?),
        }))
    }

    /// An embedding table that is never quantized (position tables, read a row
    /// at a time and small).
    pub fn dense_embedding(&self, name: &str, rows: usize, dim: usize) -> Result<Embedding> {
        Ok(Embedding(LinearWeight::Dense(
            self.dense(name, &[rows, dim])?,
        )))
    }

    /// The blocks of a 2-D weight when it is to be quantized: kept from a GGUF
    /// in quantized mode, or made at load by [`Checkpoint::quantize_to`]; `None`
    /// when the weight is to be dense.
    fn quantized(&self, name: &str, dims: &[usize]) -> Result<Option<LinearWeight>> {
        if self.vars.is_some() {
            return Ok(None);
        }
        if let Source::Gguf {
            file,
            mode: WeightMode::Quantized,
        } = &self.source
        {
            if !self.contains(name) {
                return Err(self.missing(name));
            }
            let q = self.gguf_tensor(file, name, dims)?;
            return Ok(Some(LinearWeight::from_qtensor(q)?));
        }
        match (self.quantize_to, dims) {
            (Some(format), [_, cols]) if cols % 32 == 0 => {
                let t = self.dense(name, dims)?;
                let q = QTensor::quantize(&t, format.ggml_dtype())?;
                Ok(Some(LinearWeight::from_qtensor(q)?))
            }
            _ => Ok(None),
        }
    }
}

/// The weight matrix of a linear layer, dense or in quantized blocks.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// f32 `(out, in)`; differentiable when it is a `Var`.
    Dense(Tensor),
    /// Quantized blocks `(out, in)`, multiplied by candle's quantized matmul.
    Quantized(std::sync::Arc<QMatMul>),
    /// Q4_1/Q8_0 blocks `(out, in)`, multiplied by the engine's own kernels.
    Quant(std::sync::Arc<QMatrix>),
}

impl LinearWeight {
    fn from_qtensor(q: QTensor) -> Result<Self> {
        // F32/F16 "quantized" tensors gain nothing from the quantized path.
        if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            return Ok(Self::Dense(q.dequantize(&Device::Cpu)?));
        }
        if let Some(m) = QMatrix::from_qtensor(&q)? {
            return Ok(Self::Quant(std::sync::Arc::new(m)));
        }
        Ok(Self::Quantized(std::sync::Arc::new(QMatMul::from_qtensor(
            q,
        )?)))
    }
}

/// A linear layer.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer sharing another's weight (tied LM head).
    pub fn tied(embedding: &Embedding) -> Self {
        Self {
            weight: embedding.0.clone(),
            bias: None,
        }
    }

    /// Keeps the weight's blocks also as AMX tiles ([`QMatrix::keep_tiles`]),
    /// for a layer that takes many rows at once (the LM head).
    pub fn keep_tiles(&self) {
        if let LinearWeight::Quant(q) = &self.weight {
            q.keep_tiles();
        }
    }

    /// Whether the weight is kept in quantized blocks.
    pub fn is_quantized(&self) -> bool {
        !matches!(self.weight, LinearWeight::Dense(_))
    }

    /// Width of the output.
    pub fn out_features(&self) -> usize {
        match &self.weight {
            LinearWeight::Dense(w) => w.dims()[0],
            LinearWeight::Quant(q) => q.rows(),
            LinearWeight::Quantized(q) => match q.as_ref() {
                QMatMul::QTensor(t) => t.shape().dims()[0],
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims()[0],
            },
        }
    }

    /// One layer computing `parts` side by side (outputs concatenated), when their
    /// weights can be stacked: one matmul reads the input once and dispatches
    /// once instead of once per part. `None` when they cannot (mixed formats,
    /// trainable weights, candle-quantized blocks).
    pub fn fuse(parts: &[&Linear]) -> Result<Option<Linear>> {
        let with_bias = parts.iter().filter(|p| p.bias.is_some()).count();
        if parts.len() < 2 || (with_bias != 0 && with_bias != parts.len()) {
            return Ok(None);
        }
        let weight = if let Some(ws) = parts
            .iter()
            .map(|p| match &p.weight {
                LinearWeight::Dense(w) if !w.is_variable() => Some(w),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
        {
            LinearWeight::Dense(Tensor::cat(&ws, 0)?)
        } else if let Some(qs) = parts
            .iter()
            .map(|p| match &p.weight {
                LinearWeight::Quant(q) => Some(q.as_ref()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
        {
            match QMatrix::concat(&qs) {
                Some(q) => LinearWeight::Quant(std::sync::Arc::new(q)),
                None => return Ok(None),
            }
        } else {
            return Ok(None);
        };
        let bias = if with_bias == 0 {
            None
        } else {
            let bs: Vec<&Tensor> = parts.iter().filter_map(|p| p.bias.as_ref()).collect();
            Some(Tensor::cat(&bs, 0)?)
        };
        Ok(Some(Linear { weight, bias }))
    }

    /// `x W^T + b` over the last dimension of `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            // Not for trainable weights: gemv records no gradient.
            LinearWeight::Dense(w) if crate::gemv::use_gemv(w, x) => {
                crate::threads::install(|| crate::gemv::gemv(w, x))?
            }
            LinearWeight::Dense(w) => match x.dims() {
                [b, t, k] => {
                    let y = x.reshape((b * t, *k))?.matmul(&w.t()?)?;
                    y.reshape((*b, *t, ()))?
                }
                _ => x.broadcast_matmul(&w.t()?)?,
            },
            LinearWeight::Quantized(q) => q.forward(x)?,
            LinearWeight::Quant(q) => crate::quant::qmatmul_forward(q, x)?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// Runs `f` on the values of an f32 CPU tensor, in row-major order (a strided
/// tensor is made contiguous first). Reading is all a decode step needs, so the
/// same weights serve candle's forward pass and the engine's raw kernels.
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(EngineError::invalid("weights", "must be on the CPU"));
    };
    let start = layout.start_offset();
    let values = &cpu.as_slice::<f32>()?[start..start + layout.shape().elem_count()];
    Ok(f(values))
}

impl Linear {
    /// `x W^T + b` for `m` rows of `x` given as plain values (a decode step):
    /// `m * out_features` values, row-major. Records no gradient.
    pub fn forward_rows(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        Ok(self
            .forward_rows_parts(x, m, &[self.out_features()])?
            .pop()
            .expect("one part"))
    }

    /// [`Linear::forward_rows`] of a fused projection ([`Linear::fuse`]): the
    /// outputs of each stacked projection (`widths`, summing to
    /// `out_features`) in their own `m * width` buffer, written there by the
    /// matrix product itself rather than copied out of one shared matrix.
    pub fn forward_rows_parts(
        &self,
        x: &[f32],
        m: usize,
        widths: &[usize],
    ) -> Result<Vec<Vec<f32>>> {
        let mut parts = match &self.weight {
            LinearWeight::Dense(w) => {
                with_values(w, |w| crate::gemv::gemv_rows_parts(w, widths, x, m))?
            }
            LinearWeight::Quant(q) => q.matmul_parts(x, m, widths),
            LinearWeight::Quantized(q) => {
                let x = Tensor::from_slice(x, (m, x.len() / m.max(1)), &Device::Cpu)?;
                let y = q.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
                split_rows(y, m, widths)
            }
        };
        if let Some(b) = &self.bias {
            with_values(b, |b| {
                let mut start = 0;
                for (part, &w) in parts.iter_mut().zip(widths) {
                    for row in part.chunks_exact_mut(w) {
                        for (o, b) in row.iter_mut().zip(&b[start..start + w]) {
                            *o += b;
                        }
                    }
                    start += w;
                }
            })?;
        }
        Ok(parts)
    }
}

/// The columns of each part (`widths` side by side) of `m` rows of `y`.
fn split_rows(y: Vec<f32>, m: usize, widths: &[usize]) -> Vec<Vec<f32>> {
    if widths.len() == 1 {
        return vec![y];
    }
    let total: usize = widths.iter().sum();
    let mut start = 0;
    widths
        .iter()
        .map(|&w| {
            let mut part = Vec::with_capacity(m * w);
            for row in y.chunks_exact(total) {
                part.extend_from_slice(&row[start..start + w]);
            }
            start += w;
            part
        })
        .collect()
}

/// A token embedding table.
#[derive(Debug, Clone)]
pub struct Embedding(LinearWeight);

impl Embedding {
    /// Looks up rows: `ids` of any shape gives `ids.shape + [dim]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let ids_shape = ids.dims().to_vec();
        Ok(match &self.0 {
            LinearWeight::Dense(w) => {
                let mut dims = ids.dims().to_vec();
                dims.push(w.dim(D::Minus1)?);
                w.index_select(&ids.flatten_all()?, 0)?.reshape(dims)?
            }
            LinearWeight::Quantized(q) => q.embedding(ids)?,
            LinearWeight::Quant(q) => {
                let ids = ids.flatten_all()?.to_vec1::<u32>()?;
                let rows = q.dequantize_rows(&ids)?;
                let mut dims = ids_shape;
                dims.push(q.cols());
                Tensor::from_vec(rows, dims, &Device::Cpu)?
            }
        })
    }
}

impl Embedding {
    /// The rows of `ids` as plain values (`ids.len() * dim`), row-major.
    pub fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        match &self.0 {
            LinearWeight::Quant(q) => q.dequantize_rows(ids),
            _ => {
                let t = Tensor::new(ids, &Device::Cpu)?;
                Ok(self.forward(&t)?.flatten_all()?.to_vec1::<f32>()?)
            }
        }
    }
}

/// Root-mean-square layer norm (Zhang & Sennrich 2019), as `LlamaRMSNorm`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Loads the scale vector `name` of width `dim`.
    pub fn load(ckpt: &Checkpoint, name: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: ckpt.dense(name, &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::rms_norm(x, &self.weight, self.eps)
    }

    /// Normalises each row of `x` (plain values, rows of the weight's width) into
    /// `out`, with candle's formula (`x / sqrt(mean(x^2) + eps) * w`; the sum of
    /// squares in eight lanes, so it agrees with candle to rounding).
    pub fn forward_rows(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        with_values(&self.weight, |w| {
            for (x, out) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
                let sum2 = crate::vmath::sum_squares(x);
                let m = (sum2 / w.len() as f32 + self.eps).sqrt();
                for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
                    *o = x / m * w;
                }
            }
        })
    }
}

/// Layer norm with a scale and a shift (Ba et al. 2016), as `torch.nn.LayerNorm`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias` of width `dim`.
    pub fn load(ckpt: &Checkpoint, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: ckpt.dense(&format!("{prefix}.weight"), &[dim])?,
            bias: ckpt.dense(&format!("{prefix}.bias"), &[dim])?,
            eps: eps as f32,
        })
    }

    /// Normalises over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}
