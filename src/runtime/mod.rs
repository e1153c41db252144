//! The integer runtime: executes a converted model on the integer kernels, mixed per layer
//! (int8 or int4 weights with u8 activations on the int8 GEMM, fp16-stored weights computed in
//! f32, fp32 layers in f32), and stores it as a compact bundle.
//!
//! [`IntModel::convert`] lowers a fake-quant graph (PTQ's `Prepared::graph`, or a QAT model
//! file, see `convert`) to a [`ModelSpec`]: a list of steps over u8/f32 buffers in NHWC layout
//! with each Conv2d/Linear's weights quantized once, exactly as the simulation's fake quantizers
//! round them. Inference ([`IntModel::infer`]) quantizes the input with the fake quantizer's
//! formula, runs integer im2row + GEMM with requantization straight to the next layer's u8 grid
//! (by default `acc · (s_in·s_w) + bias` in f32 and the fake quantizer's round-half-even; or a
//! 31-bit fixed-point multiplier and shift, also half to even, see [`Requantization`]), and
//! dequantizes the logits. The integer model
//! therefore equals the simulation except where the simulation's f32 convolution sum rounds a
//! value across a quantization boundary (see `tests/runtime_*.rs` for the measured agreement).
//!
//! Sits beside `train`/`io`: depends on `graph`, `ops` (attributes, fake-quant formulas),
//! `kernels`, `data` (evaluation) and `io::atomic`; knows nothing of the CLI or GUI.
//!
//! ```
//! use qatlas::quant::{ptq, plan::{Precision, QuantPlan}};
//! use qatlas::runtime::{ConvertOptions, IntModel};
//! use std::sync::atomic::AtomicBool;
//! let g = qatlas::zoo::Arch::SeedCnn.build([1, 8, 8], 3, 0).unwrap();
//! let x = qatlas::tensor::from_vec(&[4, 1, 8, 8], (0..256).map(|i| (i % 7) as f32 * 0.3 - 0.5).collect());
//! let plan = QuantPlan::default_for(&g, Precision::Int8);
//! let res = ptq(&g, &plan, [x.clone()], &AtomicBool::new(false), &mut |_| {}).unwrap();
//! let m = IntModel::convert(&res.prepared.graph, &ConvertOptions::default()).unwrap();
//! let y = m.infer(&x).unwrap();
//! assert_eq!(y.shape(), &[4, 3]);
//! ```

pub mod convert;
pub mod engine;
pub mod error;
pub mod eval;
pub mod layer;
pub mod nhwc;
pub mod profile;
pub mod spec;
pub mod store;

pub use convert::ConvertOptions;
pub use error::RuntimeError;
pub use eval::{FloatEngine, evaluate, evaluate_float};
pub use profile::{Profile, StepTime};
pub use spec::{ModelSpec, Requantization, WeightStorage};
pub use store::{TensorData, is_bundle};

use crate::graph::Graph;
use crate::tensor::{Tensor, from_vec};
use engine::Engine;
use std::collections::BTreeMap;
use std::path::Path;

/// A converted model, ready to run.
pub struct IntModel {
    spec: ModelSpec,
    tensors: BTreeMap<String, TensorData>,
    engine: Engine,
}

/// One layer as the runtime runs it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub storage: WeightStorage,
    /// "int" (integer GEMM) or "float".
    pub compute: &'static str,
    /// The int8 micro-kernel the weights were packed for.
    pub kernel: Option<&'static str>,
    pub weight_bytes: usize,
}

impl IntModel {
    /// Lowers a fake-quant (or float) graph; see [`convert`].
    pub fn convert(g: &Graph, opts: &ConvertOptions) -> Result<Self, RuntimeError> {
        let (spec, tensors) = convert::convert(g, opts)?;
        Self::from_parts(spec, tensors)
    }

    /// The float inference engine of a float graph: BatchNorm folded into the layers before it
    /// (as PTQ folds it), then lowered like a fake-quant graph with no quantizer, so every layer
    /// computes in f32 in NHWC buffers with bias and activation fused into the GEMM's epilogue
    /// and buffers reused across calls. Outputs match [`Graph::infer`] up to f32 summation order.
    pub fn from_float(g: &Graph, opts: &ConvertOptions) -> Result<Self, RuntimeError> {
        let (folded, _) = crate::quant::fold_batchnorm(g)
            .map_err(|e| RuntimeError::Invalid(format!("folding BatchNorm: {e}")))?;
        Self::convert(&folded, opts)
    }

    /// Validates a description against its tensors and builds the engine.
    pub fn from_parts(
        spec: ModelSpec,
        tensors: BTreeMap<String, TensorData>,
    ) -> Result<Self, RuntimeError> {
        let engine = Engine::build(&spec, &tensors)?;
        Ok(IntModel {
            spec,
            tensors,
            engine,
        })
    }

    /// Reads a bundle written by [`IntModel::save`]; every problem is an error naming the file.
    pub fn load(path: &Path) -> Result<Self, RuntimeError> {
        let (spec, tensors) = store::load(path)?;
        Self::from_file_parts(spec, tensors, path)
    }

    /// [`IntModel::load`] over a bundle's contents already in memory (`path` names it in
    /// errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, RuntimeError> {
        let (spec, tensors) = store::decode(bytes, path)?;
        Self::from_file_parts(spec, tensors, path)
    }

    /// [`IntModel::from_parts`] of a decoded file: a model that contradicts itself is a format
    /// error naming the file.
    fn from_file_parts(
        spec: ModelSpec,
        tensors: BTreeMap<String, TensorData>,
        path: &Path,
    ) -> Result<Self, RuntimeError> {
        Self::from_parts(spec, tensors).map_err(|e| match e {
            RuntimeError::Format { .. } | RuntimeError::Read { .. } => e,
            e => RuntimeError::Format {
                path: path.to_path_buf(),
                problem: e.to_string(),
            },
        })
    }

    /// Writes the bundle atomically.
    pub fn save(&self, path: &Path) -> Result<(), RuntimeError> {
        store::save(&self.spec, &self.tensors, path)
    }

    /// The description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Bytes of stored weights and biases.
    pub fn weight_bytes(&self) -> usize {
        self.tensors.values().map(TensorData::bytes).sum()
    }

    /// The layers: storage, compute and kernel.
    pub fn layers(&self) -> Vec<LayerInfo> {
        self.spec
            .layers
            .iter()
            .zip(self.engine.layers())
            .map(|(s, l)| LayerInfo {
                name: s.name.clone(),
                storage: s.storage,
                compute: if s.input.is_some() { "int" } else { "float" },
                kernel: l.kernel_name(),
                weight_bytes: self.tensors.get(&s.weight).map_or(0, TensorData::bytes),
            })
            .collect()
    }

    /// Per-image input and output element counts.
    pub fn io_elems(&self) -> (usize, usize) {
        self.engine.io_elems()
    }

    /// Runs `n` images (`x`: `n x c·h·w` f32, NCHW, normalised) into `out` (`n x outputs`).
    pub fn infer_into(&self, x: &[f32], n: usize, out: &mut [f32]) -> Result<(), RuntimeError> {
        self.engine.run(x, n, out)
    }

    /// Runs a batch `[N, c, h, w]` and returns the outputs `[N, ...output_shape]`.
    pub fn infer(&self, x: &Tensor) -> Result<Tensor, RuntimeError> {
        let [c, h, w] = self.spec.input_shape;
        let s = x.shape();
        let per: usize = s.iter().skip(1).product();
        if s.is_empty() || per != c * h * w {
            return Err(RuntimeError::Input {
                expected: format!("{c}, {h}, {w}"),
                found: s.to_vec(),
            });
        }
        let x = crate::tensor::standard(x.clone());
        let n = s[0];
        let (_, oe) = self.engine.io_elems();
        let mut out = vec![0.0f32; n * oe];
        self.engine.run(crate::tensor::slice(&x), n, &mut out)?;
        let mut shape = vec![n];
        shape.extend(&self.spec.output_shape);
        Ok(from_vec(&shape, out))
    }
}
