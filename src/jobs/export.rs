//! Exporting the converted model, then measuring what was written: QDQ ONNX (the fake-quant
//! graph as QuantizeLinear / DequantizeLinear with quantized weight initializers), the native
//! integer bundle, or float ONNX. After writing, the file is read back (the bundle by the
//! integer runtime, an ONNX file by qatlas's importer) and evaluated, so the accuracy shown is
//! the accuracy of the file, not of the model in memory. Used by `qatlas export` and by the
//! studio's Export tab (on a worker, through [`Job::export`]).

use super::{IntegerCheck, Job, JobEvent, Waker};
use crate::data::Normalization;
use crate::graph::Graph;
use crate::io::{Model, load_onnx, save_onnx_with};
use crate::ops::{OpKind, QuantGrid};
use crate::quant::PtqResult;
use crate::runtime::{ConvertOptions, IntModel, evaluate as runtime_evaluate};
use crate::train::evaluate;
use std::path::PathBuf;
use std::sync::Arc;

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExportFormat {
    /// QDQ ONNX of the quantized model (ONNX Runtime runs it with its integer kernels).
    OnnxQdq,
    /// The native integer bundle (`.safetensors`) that qatlas's integer runtime runs.
    Bundle,
    /// Float ONNX of the float model.
    OnnxFloat,
}

impl ExportFormat {
    pub const ALL: [ExportFormat; 3] = [
        ExportFormat::OnnxQdq,
        ExportFormat::Bundle,
        ExportFormat::OnnxFloat,
    ];

    /// Name shown to people (and the CLI's `--format` value).
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::OnnxQdq => "onnx-qdq",
            ExportFormat::Bundle => "bundle",
            ExportFormat::OnnxFloat => "onnx",
        }
    }

    /// The file extension the format is written with.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Bundle => "safetensors",
            _ => "onnx",
        }
    }
}

/// An export to run.
#[derive(Clone, Debug)]
pub struct ExportSpec {
    pub format: ExportFormat,
    pub path: PathBuf,
    /// ONNX opset (QDQ with 4-bit grids needs 21).
    pub opset: i64,
    /// Data to measure the written file on (`None`: write only).
    pub check: Option<IntegerCheck>,
}

/// What was written and what it measures.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ExportReport {
    pub format: ExportFormat,
    pub path: PathBuf,
    /// Size of the file written.
    pub bytes: u64,
    /// The float model's parameters as f32 (the size reference).
    pub float_bytes: u64,
    /// Accuracy of the file read back and the images it was measured on.
    pub accuracy: Option<(f64, usize)>,
    /// Which engine measured it ("integer runtime", "qatlas float engine (ONNX read back)").
    pub measured_by: &'static str,
}

impl ExportReport {
    /// Float parameter bytes over file bytes.
    pub fn compression(&self) -> f64 {
        self.float_bytes as f64 / self.bytes.max(1) as f64
    }
}

/// The lowest opset that holds every fake quantizer of `g` (21 for 4-bit grids, else 13).
pub fn min_qdq_opset(g: &Graph) -> i64 {
    let four_bit = g.nodes.iter().any(|n| {
        matches!(&n.op, OpKind::FakeQuant(a)
            if matches!(a.grid, QuantGrid::Int { qmin, qmax } if qmax - qmin < 255))
    });
    if four_bit { 21 } else { 13 }
}

/// Writes `quantized` (a fake-quant graph) or `float` as `spec` says, reads the file back and
/// measures it. `norm` (the model's input normalisation) is stored in the file. Errors name
/// the file.
pub fn export(
    float: &Graph,
    quantized: Option<&Graph>,
    norm: &Normalization,
    spec: &ExportSpec,
) -> Result<ExportReport, String> {
    let path = &spec.path;
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if ext.as_deref() != Some(spec.format.extension()) {
        return Err(format!(
            "{}: {} is written as a .{} file",
            path.display(),
            spec.format.name(),
            spec.format.extension()
        ));
    }
    let need_quantized = || {
        quantized.ok_or_else(|| {
            format!(
                "{}: there is no quantized model to write as {} (calibrate a plan or open a quantized model)",
                path.display(),
                spec.format.name()
            )
        })
    };
    let measure_onnx = |what: &str| -> Result<Option<(f64, usize)>, String> {
        let Some(c) = &spec.check else {
            return Ok(None);
        };
        let back = load_onnx(path).map_err(|e| format!("reading back {what}: {e}"))?;
        let ds = c.data.first(c.samples.min(c.data.len()).max(1));
        let r = evaluate(&back.graph, &ds, &c.norm, 250).map_err(|e| at(&e))?;
        Ok(Some((r.accuracy, r.images)))
    };
    let (accuracy, measured_by) = match spec.format {
        ExportFormat::OnnxQdq => {
            let q = need_quantized()?;
            save_onnx_with(q, Some(norm), path, spec.opset).map_err(|e| e.to_string())?;
            (
                measure_onnx("the QDQ file")?,
                "qatlas (the ONNX file read back)",
            )
        }
        ExportFormat::OnnxFloat => {
            save_onnx_with(float, Some(norm), path, spec.opset).map_err(|e| e.to_string())?;
            (
                measure_onnx("the float ONNX file")?,
                "qatlas float engine (the ONNX file read back)",
            )
        }
        ExportFormat::Bundle => {
            let q = need_quantized()?;
            let opts = ConvertOptions {
                normalization: norm.clone(),
                ..Default::default()
            };
            let m = IntModel::convert(q, &opts).map_err(|e| {
                format!(
                    "{}: cannot convert to the integer runtime: {e}",
                    path.display()
                )
            })?;
            m.save(path).map_err(|e| e.to_string())?;
            let acc = match &spec.check {
                None => None,
                Some(c) => {
                    let back = IntModel::load(path).map_err(|e| e.to_string())?;
                    let ds = c.data.first(c.samples.min(c.data.len()).max(1));
                    let r = runtime_evaluate(&back, &ds, &c.norm, 250).map_err(|e| at(&e))?;
                    Some((r.accuracy, r.images))
                }
            };
            (acc, "integer runtime (the bundle read back)")
        }
    };
    let bytes = std::fs::metadata(path).map_err(|e| at(&e))?.len();
    Ok(ExportReport {
        format: spec.format,
        path: path.clone(),
        bytes,
        float_bytes: float_parameter_bytes(float),
        accuracy,
        measured_by,
    })
}

/// Bytes of `g`'s parameters as f32, leaving out fake quantizers' scales and zero points.
pub fn float_parameter_bytes(g: &Graph) -> u64 {
    let mut qparam = vec![false; g.params.len()];
    for n in &g.nodes {
        if matches!(n.op, OpKind::FakeQuant(_)) {
            for &v in &n.inputs[1..] {
                if let Some(p) = g.param_of(v) {
                    qparam[p] = true;
                }
            }
        }
    }
    let elems: usize = g
        .params
        .iter()
        .zip(&qparam)
        .filter(|(_, q)| !**q)
        .map(|(p, _)| p.tensor.len())
        .sum();
    4 * elems as u64
}

/// What the studio exports from.
#[derive(Clone)]
pub enum ExportSource {
    /// A model as it is (float, or already quantized: it holds fake quantizers).
    Model(Arc<Model>),
    /// The float model and its calibrated plan's fake-quant graph.
    Plan {
        model: Arc<Model>,
        ptq: Arc<PtqResult>,
    },
}

impl ExportSource {
    /// (float graph, quantized graph if there is one).
    pub fn graphs(&self) -> (&Graph, Option<&Graph>) {
        match self {
            ExportSource::Model(m) => {
                let q = m
                    .graph
                    .nodes
                    .iter()
                    .any(|n| matches!(n.op, OpKind::FakeQuant(_)));
                (&m.graph, q.then_some(&m.graph))
            }
            ExportSource::Plan { model, ptq } => (&model.graph, Some(&ptq.prepared.graph)),
        }
    }
}

impl Job {
    /// Runs [`export`] on a worker; reports [`JobEvent::Exported`].
    pub fn export(
        source: ExportSource,
        norm: Normalization,
        spec: ExportSpec,
        waker: Waker,
    ) -> std::io::Result<Job> {
        Job::spawn("qatlas-export", waker, move |out, _| {
            let (float, quantized) = source.graphs();
            out.send(JobEvent::Exported(export(float, quantized, &norm, &spec)));
        })
    }
}
