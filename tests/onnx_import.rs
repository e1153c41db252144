//! ONNX import without ONNX Runtime: the committed fixtures open with the expected ops, an
//! unknown op opens as an `Unsupported` node that only blocks what needs it, the CLI takes ONNX
//! files, and malformed files (each built here by encoding a `ModelProto`) are errors that name
//! the file and the node.

use prost::Message;
use qatlas::graph::summarize;
use qatlas::io::onnx::OnnxError;
use qatlas::io::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_proto::DataType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension,
    type_proto,
};
use qatlas::io::{IoError, load_any, load_onnx, save_onnx};
use qatlas::ops::{Mode, OpKind};
use qatlas::tensor::from_vec;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

fn count(g: &qatlas::graph::Graph, f: impl Fn(&OpKind) -> bool) -> usize {
    g.nodes.iter().filter(|n| f(&n.op)).count()
}

#[test]
fn fixtures_open_with_the_expected_ops() {
    let seed = load_onnx(&fixture("seed_cnn_mnist.onnx")).unwrap();
    assert_eq!(seed.graph.input_shape, vec![1, 28, 28]);
    assert_eq!(seed.graph.num_trainable(), 67_530);
    assert_eq!(
        seed.meta.normalization,
        qatlas::data::Normalization::identity()
    );
    assert_eq!(seed.meta.class_names.len(), 10);
    // Parameters keep their initializer names.
    let names: Vec<&str> = seed.graph.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc.weight",
            "fc.bias"
        ]
    );

    // BatchNormalization stays BatchNorm2d (never folded at import), with ONNX's momentum 0.9
    // turned into PyTorch's 0.1 and the running statistics as non-trainable buffers.
    let res = load_onnx(&fixture("resnet_bn.onnx")).unwrap().graph;
    assert_eq!(count(&res, |o| matches!(o, OpKind::BatchNorm2d(_))), 6);
    assert_eq!(count(&res, |o| matches!(o, OpKind::Add)), 2);
    for n in &res.nodes {
        if let OpKind::BatchNorm2d(a) = &n.op {
            assert!((a.momentum - 0.1).abs() < 1e-6 && (a.eps - 1e-5).abs() < 1e-9);
            assert!(!res.params[res.param_of(n.inputs[3]).unwrap()].trainable);
            assert!(res.params[res.param_of(n.inputs[1]).unwrap()].trainable);
        }
    }

    let mob = load_onnx(&fixture("mobilenet_relu6.onnx")).unwrap().graph;
    let depthwise = count(&mob, |o| matches!(o, OpKind::Conv2d(a) if a.groups > 1));
    let relu6 = count(
        &mob,
        |o| matches!(o, OpKind::Clip(c) if c.min == 0.0 && c.max == 6.0),
    );
    assert_eq!((depthwise, relu6), (2, 5));

    let mix = load_onnx(&fixture("ops_mix.onnx")).unwrap().graph;
    for want in [
        "Mul",
        "AvgPool2d",
        "MaxPool2d",
        "Reshape",
        "MatMul",
        "Linear",
        "Softmax",
    ] {
        assert!(mix.nodes.iter().any(|n| n.op.name() == want), "{want}");
    }
    let h12 = load_onnx(&fixture("handbuilt_opset12.onnx")).unwrap().graph;
    let pads: Vec<[usize; 4]> = h12
        .nodes
        .iter()
        .filter_map(|n| match &n.op {
            OpKind::Conv2d(a) => Some(a.pads),
            _ => None,
        })
        .collect();
    // SAME_UPPER with stride 2 on 28 pixels and a 3x3 kernel pads 0 before, 1 after; SAME_LOWER
    // with a 4x4 kernel pads 2 before, 1 after.
    assert_eq!(pads, vec![[0, 0, 1, 1], [2, 2, 1, 1]]);
    for f in [
        "resnet_mini_mnist.onnx",
        "seed_cnn.onnx",
        "handbuilt_opset21.onnx",
    ] {
        load_onnx(&fixture(f)).unwrap();
    }
}

#[test]
fn load_any_opens_both_kinds() {
    let native = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/seed_cnn_mnist.safetensors");
    let a = load_any(&native).unwrap();
    let b = load_any(&fixture("seed_cnn_mnist.onnx")).unwrap();
    assert_eq!(a.graph.input_shape, b.graph.input_shape);
    // Content decides, not the name: an ONNX file called .bin still opens.
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("model.bin");
    std::fs::copy(fixture("seed_cnn.onnx"), &renamed).unwrap();
    assert_eq!(load_any(&renamed).unwrap().graph.nodes.len(), 7);
}

// ---- building ModelProtos by hand ----

fn tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// x [N,1,4,4] -> Conv(w [2,1,3,3], b [2], pad 1) -> Relu -> y.
fn small_model() -> ModelProto {
    let mut conv = node("Conv", "conv", &["x", "w", "b"], &["c"]);
    conv.attribute.push(AttributeProto {
        name: "pads".into(),
        r#type: AttributeType::Ints as i32,
        ints: vec![1, 1, 1, 1],
        ..Default::default()
    });
    let w: Vec<f32> = (0..18).map(|i| i as f32 * 0.1 - 0.9).collect();
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "small".into(),
            node: vec![conv, node("Relu", "relu", &["c"], &["y"])],
            initializer: vec![
                tensor("w", &[2, 1, 3, 3], &w),
                tensor("b", &[2], &[0.5, -0.5]),
            ],
            input: vec![value_info("x", &[None, Some(1), Some(4), Some(4)])],
            output: vec![value_info("y", &[None, Some(2), Some(4), Some(4)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

/// Loads `m` from a file and returns the import error, checking that the message names the
/// file and contains every one of `needles`.
fn import_error(m: &ModelProto, needles: &[&str]) -> OnnxError {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.onnx", m);
    let e = load_onnx(&p).expect_err("malformed model must not load");
    let msg = e.to_string();
    assert!(
        msg.contains("bad.onnx"),
        "message does not name the file: {msg}"
    );
    for n in needles {
        assert!(msg.contains(n), "message lacks '{n}': {msg}");
    }
    match e {
        IoError::Onnx { error, .. } => *error,
        other => panic!("expected an ONNX error, got {other}"),
    }
}

#[test]
fn the_small_model_imports_and_computes_a_hand_checked_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "small.onnx", &small_model());
    let g = load_onnx(&p).unwrap().graph;
    let x = from_vec(&[1, 1, 4, 4], vec![1.0; 16]);
    let y = g.infer(&x).unwrap();
    // Channel 0 at the centre (1,1): all 9 taps see ones: Σ w[0..9] + b = -4.5 + 0.5 = -4 -> 0
    // after ReLU; channel 1: Σ w[9..18] + b = 3.6 - 0.5 = 3.1.
    let v = |c: usize| y[[0, c, 1, 1]];
    assert_eq!(v(0), 0.0);
    assert!((v(1) - 3.1).abs() < 1e-5, "{}", v(1));
}

#[test]
fn unknown_ops_open_as_unsupported_nodes_that_block_only_what_needs_them() {
    let mut m = small_model();
    let g = m.graph.as_mut().unwrap();
    g.node[1] = node("Tanh", "mystery", &["c"], &["e"]);
    g.node.push(node("Relu", "relu", &["e"], &["y"]));
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "unsupported.onnx", &m);
    let model = load_onnx(&p).expect("a model with an unknown op still opens");
    let g = &model.graph;
    let n = g.nodes.iter().find(|n| n.name == "mystery").unwrap();
    assert_eq!(
        n.op,
        OpKind::Unsupported {
            op_type: "Tanh".into()
        }
    );
    // The summary works; shapes downstream of the unknown op are unknown (empty).
    let s = summarize(g).unwrap();
    assert_eq!(s[0].output_shape, vec![1, 2, 4, 4]);
    assert!(s[1].output_shape.is_empty() && s[2].output_shape.is_empty());
    // Forward (inference and training) and export fail, naming the node and the op type.
    let x = from_vec(&[1, 1, 4, 4], vec![1.0; 16]);
    let e = g.infer(&x).unwrap_err().to_string();
    assert!(e.contains("mystery") && e.contains("Tanh"), "{e}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let e = g
        .forward(std::slice::from_ref(&x), Mode::Train, true, &mut rng)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("mystery") && e.contains("Tanh"), "{e}");
    let e = save_onnx(g, &dir.path().join("out.onnx"), 17)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mystery") && e.contains("Tanh") && e.contains("out.onnx"),
        "{e}"
    );
    assert!(!dir.path().join("out.onnx").exists());
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().node.reverse();
    let dir = tempfile::tempdir().unwrap();
    let g = load_onnx(&write(dir.path(), "reversed.onnx", &m))
        .unwrap()
        .graph;
    assert_eq!(g.nodes[0].name, "conv");
}

#[test]
fn truncated_and_foreign_bytes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("resnet_bn.onnx")).unwrap();
    let p = dir.path().join("truncated.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_onnx(&p).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("not an ONNX model") && msg.contains("truncated.onnx"),
        "{msg}"
    );
    for junk in [
        &b"GIF89a\x01\x00\x01\x00"[..],
        b"\xff\xff\xff\xff\xff\xff\xff",
        b"",
    ] {
        let p = dir.path().join("junk.onnx");
        std::fs::write(&p, junk).unwrap();
        let msg = load_onnx(&p).unwrap_err().to_string();
        assert!(msg.contains("junk.onnx"), "{msg}");
    }
    let msg = load_onnx(&dir.path().join("missing.onnx"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cannot read") && msg.contains("missing.onnx"),
        "{msg}"
    );
}

#[test]
fn missing_initializer_and_undefined_values_name_the_node() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer.remove(0);
    let e = import_error(&m, &["'conv'", "Conv", "'w'"]);
    assert!(matches!(e, OnnxError::Undefined { .. }), "{e}");

    let mut m = small_model();
    m.graph.as_mut().unwrap().node[1].input[0] = "ghost".into();
    let e = import_error(&m, &["'relu'", "'ghost'"]);
    assert!(matches!(e, OnnxError::Undefined { .. }), "{e}");

    let mut m = small_model();
    m.graph.as_mut().unwrap().output[0].name = "nowhere".into();
    import_error(&m, &["'nowhere'", "not produced"]);
}

#[test]
fn initializer_shapes_that_do_not_fit_the_op_name_the_node() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[1] = tensor("b", &[3], &[0.0; 3]);
    let e = import_error(&m, &["'conv'", "bias", "[3]"]);
    assert!(matches!(e, OnnxError::Op { .. }), "{e}");

    // A weight for 3 input channels on a 1-channel input.
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0] = tensor("w", &[2, 3, 3, 3], &[0.1; 54]);
    import_error(&m, &["'conv'", "Conv"]);
}

#[test]
fn tensors_whose_declared_size_exceeds_their_bytes_are_rejected_before_allocating() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0]
        .raw_data
        .truncate(10);
    let e = import_error(&m, &["'conv'", "'w'", "holds 10 bytes"]);
    assert!(matches!(e, OnnxError::Tensor { .. }), "{e}");

    // 2^62 elements declared over 72 bytes: an error, not an allocation.
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 31, 1 << 31];
    import_error(&m, &["'w'", "holds 72 bytes"]);

    // Typed field shorter than declared.
    let mut m = small_model();
    let t = &mut m.graph.as_mut().unwrap().initializer[1];
    t.raw_data.clear();
    t.float_data = vec![1.0];
    import_error(&m, &["'b'", "float_data holds 1"]);
}

#[test]
fn unknown_data_types_are_rejected() {
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].data_type = 99;
    let e = import_error(&m, &["'w'", "99", "not an ONNX data type", "'conv'"]);
    assert!(matches!(e, OnnxError::DataType { .. }), "{e}");
    let mut m = small_model();
    m.graph.as_mut().unwrap().initializer[0].data_type = DataType::String as i32;
    import_error(&m, &["'w'", "STRING"]);
}

#[test]
fn cycles_are_detected() {
    let mut m = small_model();
    let g = m.graph.as_mut().unwrap();
    // conv reads the Relu's output, Relu reads conv's: a two-node cycle.
    g.node[0].input[0] = "y".into();
    let e = import_error(&m, &["cycle"]);
    match e {
        OnnxError::Cycle { node, others, .. } => {
            assert!(node == "conv" || node == "relu", "{node}");
            assert_eq!(others, 1);
        }
        other => panic!("expected a cycle error, got {other}"),
    }
}

#[test]
fn graph_level_problems_are_reported() {
    let mut m = small_model();
    m.graph
        .as_mut()
        .unwrap()
        .node
        .push(node("Relu", "again", &["c"], &["y"]));
    import_error(&m, &["'y'", "defined twice", "'again'"]);

    let mut m = small_model();
    m.opset_import[0].version = 6;
    import_error(&m, &["opset 6", "7 to 28"]);
    let mut m = small_model();
    m.opset_import[0].version = 29;
    import_error(&m, &["opset 29"]);

    let mut m = small_model();
    m.graph
        .as_mut()
        .unwrap()
        .input
        .push(value_info("x2", &[None, Some(3)]));
    import_error(&m, &["2 inputs", "'x2'"]);

    let mut m = small_model();
    m.graph.as_mut().unwrap().input[0] = value_info("x", &[None, Some(1), None, Some(4)]);
    import_error(&m, &["'x'", "symbolic"]);

    let mut m = small_model();
    m.graph = None;
    import_error(&m, &["no graph"]);

    // A Clip whose bounds do not form an interval (would otherwise panic in clamp).
    let mut m = small_model();
    let g = m.graph.as_mut().unwrap();
    g.node[1] = node("Clip", "clip", &["c", "lo", "hi"], &["y"]);
    g.initializer.push(tensor("lo", &[], &[6.0]));
    g.initializer.push(tensor("hi", &[], &[0.0]));
    import_error(&m, &["'clip'", "interval"]);

    // A Conv stride of zero.
    let mut m = small_model();
    m.graph.as_mut().unwrap().node[0]
        .attribute
        .push(AttributeProto {
            name: "strides".into(),
            r#type: AttributeType::Ints as i32,
            ints: vec![0, 1],
            ..Default::default()
        });
    import_error(&m, &["'conv'", "strides"]);
}

#[test]
fn cli_eval_info_and_export_take_onnx() {
    let exe = env!("CARGO_BIN_EXE_qatlas");
    let dir = tempfile::tempdir().unwrap();
    let m = fixture("seed_cnn_mnist.onnx");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(exe).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let ms = m.to_str().unwrap();
    let out = run(&[
        "eval", "--model", ms, "--mean", "0.1307", "--std", "0.3081", "--limit", "1000", "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["accuracy"].as_f64().unwrap() > 0.97, "{out}");
    let info = run(&["info", "--model", ms]);
    assert!(info.contains("Conv2d") && info.contains("Linear"), "{info}");
    let onnx_out = dir.path().join("copy.onnx");
    run(&["export", "--model", ms, "--out", onnx_out.to_str().unwrap()]);
    let native_out = dir.path().join("copy.safetensors");
    run(&[
        "export",
        "--model",
        onnx_out.to_str().unwrap(),
        "--out",
        native_out.to_str().unwrap(),
    ]);
    let a = load_any(&m).unwrap().graph;
    let b = load_any(&native_out).unwrap().graph;
    let x = from_vec(
        &[3, 1, 28, 28],
        (0..3 * 784)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect(),
    );
    assert_eq!(a.infer(&x).unwrap(), b.infer(&x).unwrap());
}
