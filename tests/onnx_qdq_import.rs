//! QDQ ONNX files open as quantized models: the pretrained seed-cnn, quantized with PTQ (int8,
//! W4A8, W4A4, and a mixed plan with an fp16 layer), exported as QDQ ONNX and read back, has the
//! same fake quantizers and gives bit-identical logits on 500 real MNIST test images; the file
//! read back converts to the integer runtime with the same accuracy as the original model. A
//! DequantizeLinear that disagrees with its QuantizeLinear is an error naming the node.

use qatlas::data::{Loader, Split, load_split};
use qatlas::graph::Graph;
use qatlas::io::{load_any, load_model, save_onnx};
use qatlas::ops::{OpKind, QuantGrid};
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::runtime::{ConvertOptions, IntModel};
use qatlas::tensor::slice;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (grid, axis) of every fake quantizer, in graph order.
fn quantizers(g: &Graph) -> Vec<(QuantGrid, Option<usize>)> {
    g.nodes
        .iter()
        .filter_map(|n| match &n.op {
            OpKind::FakeQuant(a) => Some((a.grid, a.axis)),
            _ => None,
        })
        .collect()
}

#[test]
fn exported_qdq_models_read_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let model = load_model(&root().join("assets/seed_cnn_mnist.safetensors")).unwrap();
    let norm = model.meta.normalization.clone();
    let mnist = root().join("assets/mnist");
    let calib = load_split(&mnist, Split::Train).unwrap().limit(500);
    let test = load_split(&mnist, Split::Test).unwrap().limit(500);
    let x = Loader::new(&test, &norm, 500, None, false)
        .next()
        .unwrap()
        .0;
    let mut mixed = QuantPlan::default_for(&model.graph, Precision::Int8);
    mixed.layer_mut("conv2").unwrap().precision = Precision::Fp16;
    mixed.layer_mut("fc").unwrap().precision = Precision::Int4;
    let plans = [
        (
            "int8",
            QuantPlan::default_for(&model.graph, Precision::Int8),
            13,
        ),
        (
            "w4a8",
            QuantPlan::default_for(&model.graph, Precision::Int4),
            21,
        ),
        (
            "w4a4",
            {
                let mut p = QuantPlan::default_for(&model.graph, Precision::Int4);
                p.layers
                    .iter_mut()
                    .for_each(|l| l.activations = Precision::Int4);
                p
            },
            21,
        ),
        ("mixed", mixed, 21),
    ];
    for (name, plan, opset) in plans {
        let batches = Loader::new(&calib, &norm, 250, None, false).map(|(x, _)| x);
        let q = qatlas::quant::ptq(
            &model.graph,
            &plan,
            batches,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let g = &q.prepared.graph;
        let path = dir.path().join(format!("seed_cnn_{name}.onnx"));
        save_onnx(g, &path, opset).unwrap();
        let back = load_any(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let unsupported: Vec<_> = back
            .graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, OpKind::Unsupported { .. }))
            .map(|n| n.name.clone())
            .collect();
        assert!(unsupported.is_empty(), "{name}: {unsupported:?}");
        assert_eq!(quantizers(&back.graph), quantizers(g), "{name}");
        let (a, b) = (g.infer(&x).unwrap(), back.graph.infer(&x).unwrap());
        let differ = slice(&a)
            .iter()
            .zip(slice(&b))
            .filter(|(u, v)| u.to_bits() != v.to_bits())
            .count();
        assert_eq!(differ, 0, "{name}: {differ} of {} logits differ", a.len());
        // Deployment from the file read back equals deployment from the original.
        let opts = ConvertOptions {
            normalization: norm.clone(),
            ..Default::default()
        };
        let m0 = IntModel::convert(g, &opts).unwrap();
        let m1 = IntModel::convert(&back.graph, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let acc = |m: &IntModel| {
            qatlas::runtime::eval::evaluate(m, &test, &norm, 250)
                .unwrap()
                .accuracy
        };
        let (acc0, acc1) = (acc(&m0), acc(&m1));
        assert_eq!(acc0, acc1, "{name}");
        assert!(acc1 > 0.97, "{name}: integer accuracy {acc1}");
        assert_eq!(m0.weight_bytes(), m1.weight_bytes(), "{name}");
    }
}

#[test]
fn a_dequantize_that_disagrees_with_its_quantize_is_an_error_naming_it() {
    use prost::Message;
    use qatlas::io::onnx::proto::ModelProto;
    let dir = tempfile::tempdir().unwrap();
    let model = load_model(&root().join("assets/seed_cnn_mnist.safetensors")).unwrap();
    let mnist = root().join("assets/mnist");
    let calib = load_split(&mnist, Split::Train).unwrap().limit(64);
    let norm = model.meta.normalization.clone();
    let plan = QuantPlan::default_for(&model.graph, Precision::Int8);
    let batches = Loader::new(&calib, &norm, 64, None, false).map(|(x, _)| x);
    let q = qatlas::quant::ptq(
        &model.graph,
        &plan,
        batches,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let path = dir.path().join("q.onnx");
    save_onnx(&q.prepared.graph, &path, 13).unwrap();
    let mut m = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    // The first DequantizeLinear of an activation reads a scale of its own, twice as large.
    let dq = g
        .node
        .iter()
        .position(|n| n.op_type == "DequantizeLinear" && n.input[0].ends_with(".q"))
        .unwrap();
    let scale_name = g.node[dq].input[1].clone();
    let mut t = g
        .initializer
        .iter()
        .find(|t| t.name == scale_name)
        .unwrap()
        .clone();
    let v = f32::from_le_bytes(t.raw_data[..4].try_into().unwrap()) * 2.0;
    t.raw_data = v.to_le_bytes().to_vec();
    t.name = "other_scale".into();
    g.initializer.push(t);
    g.node[dq].input[1] = "other_scale".into();
    let dq_name = g.node[dq].name.clone();
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, m.encode_to_vec()).unwrap();
    let e = load_any(&bad).unwrap_err().to_string();
    assert!(e.contains(&dq_name) && e.contains("differ"), "{e}");
    assert!(e.contains("bad.onnx"), "{e}");
}
