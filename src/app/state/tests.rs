//! Tests of the studio state (`super`).

use super::*;
use crate::data::{Normalization, Pixels};
use crate::io::ModelMeta;

fn tiny_model(arch: Option<&str>) -> Model {
    let graph = Arch::SeedCnn.build([1, 4, 4], 2, 0).unwrap();
    Model {
        graph,
        meta: ModelMeta {
            normalization: Normalization::mnist(),
            class_names: vec!["0".into(), "1".into()],
            arch: arch.map(str::to_string),
            train_config: None,
            history: None,
            command: None,
            qat: None,
        },
    }
}

fn dataset(shape: [usize; 3], labels: Vec<u32>) -> Arc<Dataset> {
    let n = labels.len() * shape.iter().product::<usize>();
    Arc::new(Dataset::new("test", Pixels::U8(vec![0; n]), labels, shape, vec![]).unwrap())
}

fn live_with(model: Model, test: Loadable<Arc<Dataset>>) -> Live {
    let mut live = Live::new(PathBuf::from("data"));
    let id = live.next_model_id();
    live.model = Some(ModelView::prepare(
        id,
        Arc::new(model),
        ModelOrigin::File("m.safetensors".into()),
    ));
    live.data.test = test;
    live
}

#[test]
fn train_request_overrides_only_epochs_and_lr() {
    let cfg = TrainRequest {
        arch: Arch::SeedCnn,
        epochs: 5,
        lr: 1e-3,
    }
    .config();
    let d = TrainConfig::default();
    assert_eq!((cfg.epochs, cfg.optimizer.lr()), (5, 1e-3));
    assert_eq!(
        (cfg.batch_size, &cfg.schedule, cfg.seed),
        (d.batch_size, &d.schedule, d.seed)
    );
}

#[test]
fn arch_is_read_from_the_metadata() {
    assert_eq!(arch_of(&tiny_model(Some("lenet5"))), Some(Arch::Lenet5));
    assert_eq!(arch_of(&tiny_model(Some("resnet-9000"))), None);
    assert_eq!(arch_of(&tiny_model(None)), None);
}

#[test]
fn model_view_counts_parameters_and_macs() {
    // seed-cnn on 1x4x4: conv1 16*(1*9)+16 = 160 params, 16*4*4*9 = 2304 MACs; conv2
    // 32*16*9+32 = 4640 params, 32*2*2*144 = 18432 MACs; fc 32*2*2*2+2 = 258 params, 256 MACs.
    let v = ModelView::prepare(
        1,
        Arc::new(tiny_model(None)),
        ModelOrigin::Trained {
            stopped_early: false,
        },
    );
    assert_eq!(v.trainable, 160 + 4640 + 258);
    assert_eq!(v.total_macs(), 2304 + 18432 + 256);
    assert_eq!(v.layers.as_ref().unwrap().len(), 7);
    assert_eq!(v.path(), None);
}

#[test]
fn evaluation_needs_a_fitting_test_set() {
    let live = live_with(tiny_model(None), Loadable::Loading);
    assert!(
        live.evaluate_blocker()
            .unwrap_err()
            .contains("still loading")
    );
    let live = live_with(
        tiny_model(None),
        Loadable::Ready(dataset([1, 4, 4], vec![0, 1])),
    );
    assert_eq!(live.evaluate_blocker(), Ok(()));
    let live = live_with(
        tiny_model(None),
        Loadable::Ready(dataset([1, 5, 5], vec![0, 1])),
    );
    assert!(live.evaluate_blocker().unwrap_err().contains("1×4×4"));
    let live = live_with(
        tiny_model(None),
        Loadable::Ready(dataset([1, 4, 4], vec![0, 1, 2])),
    );
    assert!(live.evaluate_blocker().unwrap_err().contains("3"));
    let mut live = live_with(tiny_model(None), Loadable::Failed("no such folder".into()));
    assert!(
        live.evaluate_blocker()
            .unwrap_err()
            .contains("no such folder")
    );
    live.model = None;
    assert_eq!(
        live.evaluate_blocker(),
        Err("no model is loaded".to_string())
    );
}

#[test]
fn evaluation_results_belong_to_their_model() {
    let mut live = live_with(tiny_model(None), Loadable::Loading);
    let r = EvalResult {
        accuracy: 0.5,
        loss: 1.0,
        images: 2,
        images_per_s: 10.0,
    };
    live.last_eval = Some((live.model.as_ref().unwrap().id, r.clone()));
    assert_eq!(live.current_eval(), Some(&r));
    let id = live.next_model_id();
    live.model = Some(ModelView::prepare(
        id,
        Arc::new(tiny_model(None)),
        ModelOrigin::Trained {
            stopped_early: false,
        },
    ));
    assert_eq!(live.current_eval(), None);
}
