use super::*;
use crate::jobs::qat_request::{QatPrecision, QatRequest};

fn sample(dir: &Path) -> Project {
    let model = dir.join("models/m.safetensors");
    std::fs::create_dir_all(model.parent().unwrap()).unwrap();
    std::fs::write(&model, b"not really a model, but bytes to hash").unwrap();
    let (sha256, bytes) = file_sha256(&model).unwrap();
    Project {
        model: ModelRef {
            path: model,
            sha256,
            bytes,
        },
        data: DataRef {
            dir: PathBuf::from("/somewhere/else/mnist"),
            normalization: Some(Normalization {
                mean: vec![0.1307],
                std: vec![0.3081],
            }),
            transform: crate::data::ImageTransform::imagenet(),
        },
        calibration: Calibration {
            calib_samples: 512,
            eval_samples: 2000,
        },
        qat: Some(QatRequest {
            precision: QatPrecision::W4A8,
            epochs: 2,
            lr: 5e-4,
            lsq: true,
            freeze_bn_after: Some(1),
            freeze_observers_after: None,
            limit: Some(6000),
            ..QatRequest::default()
        }),
        export: Some(ExportSettings {
            format: ExportFormat::Bundle,
            path: dir.join("out/m.int.safetensors"),
            opset: 17,
            from: ExportFrom::Plan,
        }),
        results: Results {
            float_accuracy: Some(Measured {
                accuracy: 0.9887,
                images: 2000,
            }),
            weight_bytes: Some(70_602),
            ..Results::default()
        },
        ..Project::default()
    }
}

#[test]
fn a_saved_project_reads_back_equal_with_paths_under_its_folder_stored_relative() {
    let tmp = tempfile::tempdir().unwrap();
    let p = sample(tmp.path());
    let file = tmp.path().join("work.qatlas.ron");
    p.save(&file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"models/m.safetensors\""), "{text}");
    assert!(text.contains("\"out/m.int.safetensors\""), "{text}");
    assert!(text.contains("\"/somewhere/else/mnist\""), "{text}");
    let back = Project::load(&file).unwrap();
    assert_eq!(back, p);
    assert!(back.settings_eq(&p));
    assert_eq!(Project::name_of(&file), "work");
    // The project folder moves: the model comes along.
    let moved = tempfile::tempdir().unwrap();
    let to = moved.path().join("w");
    std::fs::rename(tmp.path(), &to)
        .or_else(|_| {
            // Another file system: copy what the project refers to.
            std::fs::create_dir_all(to.join("models"))?;
            std::fs::copy(
                tmp.path().join("models/m.safetensors"),
                to.join("models/m.safetensors"),
            )?;
            std::fs::copy(&file, to.join("work.qatlas.ron")).map(|_| ())
        })
        .unwrap();
    let again = Project::load(&to.join("work.qatlas.ron")).unwrap();
    assert_eq!(again.model.path, to.join("models/m.safetensors"));
    assert_eq!(model_changed(&again.model).unwrap(), None);
}

#[test]
fn missing_fields_take_their_defaults() {
    let p = Project::parse(
        "(version: 1, model: (path: \"/m.safetensors\"))",
        Path::new("/p/x.qatlas.ron"),
    )
    .unwrap();
    assert_eq!(p.model.path, PathBuf::from("/m.safetensors"));
    assert_eq!(p.calibration, Calibration::default());
    assert_eq!(p.plan, None);
    assert_eq!(p.results, Results::default());
    // A relative path is under the project's folder.
    let p = Project::parse(
        "(version: 1, model: (path: \"m.onnx\"))",
        Path::new("/p/x.ron"),
    )
    .unwrap();
    assert_eq!(p.model.path, PathBuf::from("/p/m.onnx"));
}

#[test]
fn a_newer_version_an_unversioned_file_and_garbage_are_errors_naming_the_file() {
    let at = Path::new("/projects/a.qatlas.ron");
    let e = Project::parse("(version: 7, model: (path: \"m\"), future: 1)", at).unwrap_err();
    assert!(
        matches!(e, ProjectError::NewerVersion { found: 7, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("/projects/a.qatlas.ron") && msg.contains("newer"),
        "{msg}"
    );
    let e = Project::parse("(model: (path: \"m\"))", at).unwrap_err();
    assert!(e.to_string().contains("no `version`"), "{e}");
    let e = Project::parse("{{{ not ron", at).unwrap_err();
    assert!(matches!(e, ProjectError::Parse { .. }), "{e}");
    assert!(e.to_string().contains("/projects/a.qatlas.ron"), "{e}");
    let e = Project::parse("(version: 1, calibration: (calib_samples: \"many\"))", at).unwrap_err();
    assert!(matches!(e, ProjectError::Parse { .. }), "{e}");
    let e = Project::parse("(version: 1)", at).unwrap_err();
    assert!(e.to_string().contains("names no model"), "{e}");
}

#[test]
fn an_oversized_file_is_refused_before_it_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("huge.qatlas.ron");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(MAX_PROJECT_BYTES + 1).unwrap();
    let e = Project::load(&file).unwrap_err();
    assert!(matches!(e, ProjectError::TooLarge { .. }), "{e}");
    let e = Project::load(&tmp.path().join("absent.qatlas.ron")).unwrap_err();
    assert!(e.to_string().contains("absent.qatlas.ron"), "{e}");
}

#[test]
fn a_changed_model_file_is_reported_with_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let p = sample(tmp.path());
    assert_eq!(model_changed(&p.model).unwrap(), None);
    std::fs::write(&p.model.path, b"other bytes").unwrap();
    let why = model_changed(&p.model).unwrap().expect("changed");
    assert!(why.contains("changed since the project was saved"), "{why}");
    assert!(why.contains(&p.model.sha256[..12]), "{why}");
    assert!(why.contains("11 bytes"), "{why}");
}

#[test]
fn sha256_matches_the_standard_test_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("abc");
    std::fs::write(&f, b"abc").unwrap();
    let (h, n) = file_sha256(&f).unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        h,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn settings_eq_ignores_results_but_not_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let a = sample(tmp.path());
    let mut b = a.clone();
    b.results = Results::default();
    assert!(a.settings_eq(&b));
    b.calibration.calib_samples += 1;
    assert!(!a.settings_eq(&b));
}
