//! Quantization-aware training of the built-in pretrained seed-cnn at W4A8 on a background
//! job, printing its typed events as they arrive (the studio's QAT tab draws the same ones).
//!
//! ```text
//! cargo run --release --example qat_events
//! ```
//! One epoch on the first 6,000 training images, evaluated on 2,000 test images.

use qatlas::data::{Split, load_split};
use qatlas::io::load_model;
use qatlas::jobs::{Job, JobEvent, QatEvent, QatSpec};
use qatlas::quant::qat::QatOptions;
use qatlas::quant::{Precision, QuantPlan};
use qatlas::train::{OptimizerConfig, Schedule, TrainConfig, TrainEvent};
use std::path::PathBuf;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = load_model(&root.join("assets/seed_cnn_mnist.safetensors"))?;
    let mnist = root.join("assets/mnist");
    let train = Arc::new(load_split(&mnist, Split::Train)?.limit(6000));
    let eval = Arc::new(load_split(&mnist, Split::Test)?.limit(2000));
    let plan = QuantPlan::default_for(&model.graph, Precision::Int4);
    let spec = QatSpec {
        model,
        plan,
        opts: QatOptions::default(),
        // `qatlas qat`'s defaults: AdamW at 1e-4, cosine to 0, batch 64.
        train: TrainConfig {
            epochs: 1,
            batch_size: 64,
            optimizer: OptimizerConfig::AdamW {
                lr: 1e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            schedule: Schedule::Cosine {
                warmup_steps: 0,
                min_factor: 0.0,
            },
            seed: 0,
        },
        calib_samples: 1000,
        freeze_bn_after: None,
        freeze_observers_after: None,
        bn_reestimate_batches: 0,
        checkpoint: None,
    };
    let job = Job::qat(spec, train, Some(eval), Arc::new(|| {}))?;
    loop {
        let ended = job.is_finished();
        for e in job.drain() {
            match e {
                JobEvent::Qat(QatEvent::Started {
                    float_accuracy,
                    start_accuracy,
                    quantizers,
                    ..
                }) => println!(
                    "started: {quantizers} quantizers, float {:?}, PTQ start {:?}",
                    float_accuracy, start_accuracy
                ),
                JobEvent::Train(TrainEvent::Step {
                    step,
                    total_steps,
                    loss,
                    images_per_s,
                    ..
                }) if step % 20 == 0 || step == total_steps => {
                    println!("step {step}/{total_steps}: loss {loss:.4}, {images_per_s:.0} img/s")
                }
                JobEvent::Train(TrainEvent::Epoch(rec)) => println!(
                    "epoch {}: train loss {:.4}, eval {:?}",
                    rec.epoch + 1,
                    rec.train_loss,
                    rec.eval.map(|e| e.accuracy)
                ),
                JobEvent::QatFinished(o) => {
                    println!(
                        "finished: deployable model accuracy {:?}{}",
                        o.quantized_accuracy,
                        o.error.map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                }
                JobEvent::Failed(e) => anyhow::bail!(e),
                _ => {}
            }
        }
        if ended {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
