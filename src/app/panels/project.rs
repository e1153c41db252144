//! The project box at the top of the Model & data tab: which project file the session is (or
//! that it is untitled), whether it has unsaved changes, Save / Open, and the figures saved with
//! an opened project beside the ones on screen now.

use crate::app::format;
use crate::app::panels::widgets::bytes;
use crate::app::project_control::{ProjectCommand, results_of};
use crate::app::state::{Command, FrameCtx};
use crate::project::file::{Measured, Results};
use eframe::egui::{self, RichText};

fn measured(m: Option<Measured>) -> String {
    m.map_or("—".into(), |m| {
        format!(
            "{} ({} images)",
            format::percent(m.accuracy),
            format::thousands(m.images as u64)
        )
    })
}

fn rows(r: &Results) -> [String; 7] {
    [
        measured(r.float_accuracy),
        measured(r.plan_accuracy),
        measured(r.integer_accuracy),
        r.weight_bytes.map_or("—".into(), |b| format::thousands(b)),
        r.latency.as_ref().map_or("—".into(), |l| {
            format!("{:.1} µs (float {:.1} µs)", l.int_us, l.float_us)
        }),
        r.qat
            .and_then(|q| q.quantized_accuracy)
            .map_or("—".into(), format::percent),
        r.exports.last().map_or("—".into(), |e| {
            format!(
                "{} {} · {}",
                e.format.name(),
                bytes(e.bytes as usize),
                measured(e.accuracy)
            )
        }),
    ]
}

/// Draws the project box.
pub fn ui(ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
    let p = &cx.live.project;
    ui.heading("Project");
    ui.horizontal_wrapped(|ui| {
        match &p.path {
            Some(path) => {
                ui.label(RichText::new(p.name()).strong());
                ui.monospace(path.display().to_string());
            }
            None => {
                ui.label(RichText::new("untitled").italics());
                ui.weak("save the project to keep the plan, settings and figures");
            }
        }
        if cx.project_dirty {
            ui.label(RichText::new("• unsaved changes").color(ui.visuals().warn_fg_color));
        }
    });
    ui.horizontal(|ui| {
        let can = cx.project_save.clone();
        let r = ui.add_enabled(can.is_ok(), egui::Button::new("Save project"));
        if let Err(why) = &can {
            r.clone().on_disabled_hover_text(why.as_str());
        }
        if r.clicked() {
            cx.send(Command::Project(ProjectCommand::Save));
        }
        if ui.button("Open project…").clicked() {
            cx.send(Command::Project(ProjectCommand::PickOpen));
        }
        ui.weak("replay it headless: qatlas run <file>");
    });
    if let Some(why) = &p.model_changed {
        ui.label(RichText::new(why).color(ui.visuals().error_fg_color));
    }
    let Some(saved) = &p.saved_results else {
        return;
    };
    let now = results_of(cx.live, cx.ws);
    let (now, saved) = (rows(&now), rows(saved));
    let labels = [
        "Float accuracy",
        "Plan (simulated)",
        "Integer runtime",
        "Weight bytes",
        "Latency per image",
        "QAT result",
        "Latest export (read back)",
    ];
    egui::Grid::new("project_figures")
        .num_columns(3)
        .spacing([16.0, 3.0])
        .striped(true)
        .show(ui, |ui| {
            ui.label("");
            ui.strong("now");
            ui.strong("saved with the project");
            ui.end_row();
            for ((l, n), s) in labels.iter().zip(&now).zip(&saved) {
                ui.label(*l);
                ui.label(n);
                ui.label(s);
                ui.end_row();
            }
        });
}
