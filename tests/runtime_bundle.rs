//! Integer model bundles: a saved bundle reloads to identical outputs, and damaged or hostile
//! files (truncated, corrupt header, wrong dtype, wrong length, malformed or hostile metadata, a
//! float model instead of an integer one) are errors naming the file: never a panic or a huge
//! allocation.

use qatlas::data::{Loader, Normalization, Split, load_split};
use qatlas::quant::plan::{Precision, QuantPlan};
use qatlas::quant::ptq;
use qatlas::runtime::spec::ModelSpec;
use qatlas::runtime::store::{self, TensorData};
use qatlas::runtime::{ConvertOptions, IntModel};
use qatlas::zoo::Arch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

fn bundle(dir: &Path) -> (PathBuf, IntModel, qatlas::tensor::Tensor) {
    let mnist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mnist");
    let norm = Normalization::mnist();
    let calib = load_split(&mnist, Split::Train).unwrap().limit(64);
    let g = Arch::SeedCnn.build([1, 28, 28], 10, 1).unwrap();
    let plan = QuantPlan::default_for(&g, Precision::Int4);
    let x = Loader::new(&calib, &norm, 64, None, false)
        .next()
        .unwrap()
        .0;
    let res = ptq(&g, &plan, [x.clone()], &AtomicBool::new(false), &mut |_| {}).unwrap();
    let m = IntModel::convert(&res.prepared.graph, &ConvertOptions::default()).unwrap();
    let p = dir.join("m.qat.safetensors");
    m.save(&p).unwrap();
    (p, m, x)
}

fn load_err(p: &Path) -> String {
    let e = match IntModel::load(p) {
        Ok(_) => panic!("{} loaded", p.display()),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(&p.display().to_string()),
        "error does not name the file: {e}"
    );
    e
}

fn rewrite(
    p: &Path,
    out: &Path,
    f: impl FnOnce(&mut ModelSpec, &mut BTreeMap<String, TensorData>),
) {
    let (mut spec, mut t) = store::load(p).unwrap();
    f(&mut spec, &mut t);
    store::save(&spec, &t, out).unwrap();
}

#[test]
fn bundle_round_trip_is_exact_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m, x) = bundle(dir.path());
    let back = IntModel::load(&p).unwrap();
    assert_eq!(m.infer(&x).unwrap(), back.infer(&x).unwrap());
    assert_eq!(back.spec(), m.spec());
    // int4 weights: (144 + 4608 + 62720) / 2 bytes plus 58 f32 biases, and a small header.
    let len = std::fs::metadata(&p).unwrap().len() as usize;
    assert_eq!(m.weight_bytes(), 33_736 + 58 * 4);
    assert!(len < m.weight_bytes() + 16_000, "{len}");
    // Told apart from other files by the header alone (what `qatlas eval` relies on).
    assert!(qatlas::runtime::is_bundle(&p));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!qatlas::runtime::is_bundle(
        &root.join("assets/seed_cnn_mnist.safetensors")
    ));
    let bytes = std::fs::read(&p).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..20]).unwrap();
    assert!(!qatlas::runtime::is_bundle(&cut));
    assert!(!qatlas::runtime::is_bundle(&dir.path().join("missing")));
}

#[test]
fn damaged_bundles_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _, _) = bundle(dir.path());
    let bytes = std::fs::read(&p).unwrap();
    let d = dir.path();

    let t = d.join("truncated.safetensors");
    std::fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    eprintln!("{}", load_err(&t));

    // Header length claiming 2^62 bytes.
    let h = d.join("header.safetensors");
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    std::fs::write(&h, &b).unwrap();
    eprintln!("{}", load_err(&h));

    let e = d.join("empty.safetensors");
    std::fs::write(&e, b"").unwrap();
    load_err(&e);

    // Weights stored as f32 where the spec says s8 / int4.
    let w = d.join("dtype.safetensors");
    rewrite(&p, &w, |_, t| {
        t.insert("conv2.weight".into(), TensorData::F32(vec![0.0; 4608]));
    });
    let msg = load_err(&w);
    assert!(msg.contains("conv2"), "{msg}");

    let l = d.join("length.safetensors");
    rewrite(&p, &l, |_, t| {
        t.insert("fc.weight".into(), TensorData::U8(vec![0; 10]));
    });
    load_err(&l);

    let m = d.join("missing.safetensors");
    rewrite(&p, &m, |_, t| {
        t.remove("fc.bias");
    });
    load_err(&m);

    // Hostile shapes: a 2^40 x 2^40 input, a layer claiming 2^40 outputs, a grid out of range,
    // a step reading a slot nobody wrote.
    for (name, f) in [
        (
            "input",
            Box::new(|s: &mut ModelSpec| s.input_shape = [1, 1 << 40, 1 << 40])
                as Box<dyn Fn(&mut ModelSpec)>,
        ),
        (
            "cout",
            Box::new(|s: &mut ModelSpec| s.layers[2].cout = 1 << 40),
        ),
        (
            "grid",
            Box::new(|s: &mut ModelSpec| {
                if let Some(g) = &mut s.layers[0].output {
                    g.hi = 4000;
                }
            }),
        ),
        (
            "slot",
            Box::new(|s: &mut ModelSpec| {
                let layer_src = s.steps.iter_mut().rev().find_map(|st| match st {
                    qatlas::runtime::spec::Step::Layer { src, .. } => Some(src),
                    _ => None,
                });
                *layer_src.unwrap() = 99;
            }),
        ),
    ] {
        let q = d.join(format!("hostile-{name}.safetensors"));
        rewrite(&p, &q, |s, _| f(s));
        eprintln!("{name}: {}", load_err(&q));
    }

    // Malformed metadata.
    let r = d.join("ron.safetensors");
    let (spec, t) = store::load(&p).unwrap();
    let mut b = store::encode(&spec, &t, &r).unwrap();
    let text = String::from_utf8_lossy(&b).into_owned();
    let at = text.find("Conv(").unwrap();
    b[at..at + 5].copy_from_slice(b"Cxnv(");
    std::fs::write(&r, &b).unwrap();
    eprintln!("{}", load_err(&r));

    // A float model is not an integer model.
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/seed_cnn_mnist.safetensors");
    let msg = load_err(&f);
    assert!(msg.contains("float"), "{msg}");
}

#[test]
fn opening_a_bundle_as_a_model_says_what_it_is_and_what_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _, _) = bundle(dir.path());
    let e = qatlas::io::load_any(&p).unwrap_err().to_string();
    assert!(
        e.contains(&p.display().to_string())
            && e.contains("integer bundle")
            && e.contains("qatlas eval"),
        "{e}"
    );
}
