//! The QAT tab's quantizer table: every integer quantizer's current scale (min / mean / max
//! over its channels), zero points and the change of the mean scale since the first report.
//! Draws only; the rows come folded in [`QatRun::scales`].

use crate::app::format;
use crate::app::qat_run::{QatRun, ScaleRow};
use eframe::egui;

/// `0.0234117` -> `"0.02341"`: four significant digits, scientific outside 1e-3..1e3.
pub fn scale_text(x: f32) -> String {
    if !x.is_finite() {
        return "–".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let a = x.abs();
    if !(1e-3..1e3).contains(&a) {
        return format!("{x:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 8) as usize;
    format!("{x:.decimals$}")
}

pub fn scale_table(ui: &mut egui::Ui, run: &QatRun) {
    if run.scales.is_empty() {
        ui.strong("Quantizers");
        ui.weak("Scales are reported every 50 steps and at the end of the run.");
        return;
    }
    ui.strong(format!(
        "Quantizers: scales at step {}",
        format::thousands(run.scales_step as u64)
    ));
    egui::Grid::new("qat_scales")
        .num_columns(5)
        .striped(true)
        .spacing([8.0, 2.0])
        .show(ui, |ui| {
            for h in ["Quantizer", "Per", "Scale", "Zero pt.", "Δ mean"] {
                ui.strong(h);
            }
            ui.end_row();
            for r in &run.scales {
                scale_row(ui, r);
            }
        });
    ui.weak(
        "Per-channel scales: min / mean / max over the channels. Δ mean: change of the mean \
         scale since the first report.",
    );
}

fn scale_row(ui: &mut egui::Ui, r: &ScaleRow) {
    ui.monospace(&r.point);
    if r.channels == 1 {
        ui.label("tensor");
        ui.monospace(scale_text(r.mean));
    } else {
        ui.label(format!("{} ch.", r.channels));
        ui.monospace(format!(
            "{} / {} / {}",
            scale_text(r.min),
            scale_text(r.mean),
            scale_text(r.max)
        ));
    }
    let (z0, z1) = r.zero_point;
    if z0 == z1 {
        ui.monospace(format!("{z0:.0}"));
    } else {
        ui.monospace(format!("{z0:.0} … {z1:.0}"));
    }
    match r.change {
        Some(c) => ui.monospace(format!("{:+.2} %", c * 100.0)),
        None => ui.weak("–"),
    };
    ui.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_keep_four_significant_digits() {
        assert_eq!(scale_text(0.023_411_7), "0.02341");
        assert_eq!(scale_text(1.5), "1.500");
        assert_eq!(scale_text(0.000_123_4), "1.234e-4");
        assert_eq!(scale_text(0.0), "0");
        assert_eq!(scale_text(f32::NAN), "–");
    }
}
