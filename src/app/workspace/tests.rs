//! Tests of the workspace (`super`): plan edits, revisions, the sensitivity rule.

use super::*;
use crate::analysis::sensitivity::LayerSensitivity;
use crate::zoo::Arch;

fn ws() -> Workspace {
    let g = Arch::SeedCnn.build([1, 28, 28], 10, 0).unwrap();
    Workspace::for_model(7, Ok(QuantPlan::default_for(&g, Precision::Int8)))
}

fn row(layer: &str, drop: f64) -> LayerSensitivity {
    LayerSensitivity {
        layer: layer.into(),
        op: "Conv2d".into(),
        only: None,
        only_drop_pp: Some(drop),
        all_but: None,
        all_but_gain_pp: None,
        layer_sqnr_db: None,
    }
}

#[test]
fn an_edit_makes_a_new_revision_and_asks_for_an_evaluation() {
    let mut w = ws();
    let names: Vec<String> = w
        .plan
        .as_ref()
        .unwrap()
        .layers
        .iter()
        .map(|l| l.layer.clone())
        .collect();
    assert_eq!(names.len(), 3);
    let rev = w.rev;
    let fx = w
        .apply(PlanCommand::Edit(
            Target::Layers(vec![names[1].clone()]),
            PlanEdit::Weights(Precision::Int4),
        ))
        .unwrap();
    assert_eq!(fx, vec![Effect::Evaluate { rev: rev + 1 }]);
    assert_eq!(w.layer_plan(&names[1]).unwrap().precision, Precision::Int4);
    assert_eq!(w.layer_plan(&names[0]).unwrap().precision, Precision::Int8);
    // The same edit again changes nothing and starts nothing.
    let fx = w
        .apply(PlanCommand::Edit(
            Target::Layers(vec![names[1].clone()]),
            PlanEdit::Weights(Precision::Int4),
        ))
        .unwrap();
    assert!(fx.is_empty());
    assert_eq!(w.rev, rev + 1);
    // Reset goes back to the default plan.
    assert_eq!(w.apply(PlanCommand::Reset).unwrap().len(), 1);
    assert_eq!(w.plan, w.default_plan);
}

#[test]
fn bulk_edits_touch_the_targeted_layers_and_clear_their_pinned_ranges() {
    let mut w = ws();
    let first = w.plan.as_ref().unwrap().layers[0].layer.clone();
    let range = |point: &str| PointRange {
        point: point.into(),
        value: "x".into(),
        dtype: crate::quant::scheme::QDtype::S8,
        scheme: crate::quant::scheme::Scheme::Symmetric,
        min: vec![-1.0],
        max: vec![1.0],
        scale: vec![1.0 / 127.0],
        zero_point: vec![0],
    };
    w.pin_range(
        &first,
        TensorRole::Weight,
        range(&format!("{first}.weight.fq")),
    );
    // An output point is named after the value it quantizes, not after the layer.
    w.pin_range(&first, TensorRole::Output, range("relu1.fq"));
    assert_eq!(w.plan_to_evaluate().unwrap().ranges.len(), 2);
    w.apply(PlanCommand::Edit(
        Target::All,
        PlanEdit::Weights(Precision::Fp16),
    ))
    .unwrap();
    let plan = w.plan_to_evaluate().unwrap();
    assert!(plan.layers.iter().all(|l| l.precision == Precision::Fp16));
    assert!(
        plan.ranges.is_empty(),
        "a changed layer drops its pinned range"
    );
}

#[test]
fn keep_sensitive_keeps_the_top_layers_at_the_chosen_precision() {
    let mut w = ws();
    let names: Vec<String> = w
        .plan
        .as_ref()
        .unwrap()
        .layers
        .iter()
        .map(|l| l.layer.clone())
        .collect();
    assert!(
        w.apply(PlanCommand::KeepSensitive {
            n: 1,
            keep: Precision::Int8
        })
        .is_err()
    );
    w.start_sweep(SweepSettings::default());
    w.on_sweep_event(SensitivityEvent::Layer(row(&names[0], 0.2)));
    w.on_sweep_event(SensitivityEvent::Layer(row(&names[1], 1.5)));
    w.on_sweep_event(SensitivityEvent::Layer(row(&names[2], 0.7)));
    assert_eq!(w.ranked_layers()[0].0, names[1]);
    w.apply(PlanCommand::KeepSensitive {
        n: 2,
        keep: Precision::Fp16,
    })
    .unwrap();
    let p = |i: usize| w.layer_plan(&names[i]).unwrap().precision;
    assert_eq!(
        (p(0), p(1), p(2)),
        (Precision::Int4, Precision::Fp16, Precision::Fp16)
    );
}

#[test]
fn a_model_without_a_plan_refuses_edits_with_the_reason() {
    let mut w = Workspace::for_model(1, Err("already quantized".into()));
    let e = w
        .apply(PlanCommand::Edit(
            Target::All,
            PlanEdit::Weights(Precision::Int4),
        ))
        .unwrap_err();
    assert_eq!(e, "already quantized");
    assert!(w.apply(PlanCommand::Select("x".into())).is_ok());
}

#[test]
fn whatif_percentiles_of_recorded_times() {
    let mut w = ws();
    assert!(w.whatif_percentiles().is_none());
    w.whatif_seconds = vec![0.5, 0.1, 0.3, 0.2, 0.4];
    let (p50, p90, n) = w.whatif_percentiles().unwrap();
    assert_eq!((p50, p90, n), (0.3, 0.5, 5));
}
