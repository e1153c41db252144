//! Small widgets and labels shared by the quantization panels: precision and observer choices
//! with their labels, a value that goes grey while it is being recomputed.

use crate::quant::plan::{Granularity, Precision};
use crate::quant::{Observer, RangeMethod};
use eframe::egui::{self, Color32, RichText};

/// Weight precisions a layer can take.
pub const WEIGHT_CHOICES: [Precision; 4] = [
    Precision::Fp32,
    Precision::Fp16,
    Precision::Int8,
    Precision::Int4,
];

/// Activation precisions of an integer layer.
pub const ACT_CHOICES: [Precision; 2] = [Precision::Int8, Precision::Int4];

/// The activation observers offered (the plan stores any other one, shown by its name).
pub fn observer_choices() -> [Observer; 5] {
    let bins = crate::quant::observer::DEFAULT_BINS;
    [
        Observer::Histogram {
            bins,
            method: RangeMethod::Mse,
        },
        Observer::Histogram {
            bins,
            method: RangeMethod::Entropy,
        },
        Observer::Histogram {
            bins,
            method: RangeMethod::Percentile(99.99),
        },
        Observer::MinMax,
        Observer::MovingAverage { momentum: 0.01 },
    ]
}

/// Short name of an observer ("MSE", "entropy", "p99.99", "min-max", "moving avg").
pub fn observer_label(o: &Observer) -> String {
    match o {
        Observer::MinMax => "min-max".into(),
        Observer::MovingAverage { .. } => "moving avg".into(),
        Observer::Histogram { method, .. } => match method {
            RangeMethod::Mse => "MSE".into(),
            RangeMethod::Entropy => "entropy".into(),
            RangeMethod::Percentile(p) => format!("p{p}"),
        },
    }
}

/// "per-ch" / "per-tensor".
pub fn granularity_label(g: Granularity) -> &'static str {
    match g {
        Granularity::PerChannel => "per-channel",
        Granularity::PerTensor => "per-tensor",
    }
}

/// A number that is current (normal colour) or stale (grey, being recomputed).
pub fn value(text: impl Into<String>, current: bool) -> RichText {
    let t = RichText::new(text.into());
    if current { t } else { t.color(Color32::GRAY) }
}

/// Why no model is on screen (the pretrained file is missing, opening failed) or a plain
/// "No model is open.".
pub fn no_model(ui: &mut egui::Ui, live: &crate::app::state::Live) {
    ui.label(
        live.no_model_reason
            .as_deref()
            .unwrap_or("No model is open."),
    );
}

/// Bytes in KiB / MiB.
pub fn bytes(n: usize) -> String {
    let n = n as f64;
    if n < 1024.0 {
        format!("{n:.0} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{:.2} MiB", n / (1024.0 * 1024.0))
    }
}

/// Microseconds, compactly.
pub fn micros(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// A combo box that sets `value` to one of `choices`, each shown by `label`. `name` is its
/// accessible name (what screen readers and the GUI tests find it by, e.g. "conv1 weights" for
/// a selector whose visible text is only "int8"); `width` 0 keeps egui's default. Returns
/// whether the value changed.
pub fn choice<T: PartialEq + Copy>(
    ui: &mut egui::Ui,
    id: impl egui::AsIdSalt,
    name: &str,
    width: f32,
    value: &mut T,
    choices: &[T],
    label: impl Fn(T) -> String,
) -> bool {
    let before = *value;
    let mut combo = egui::ComboBox::from_id_salt(id).selected_text(label(*value));
    if width > 0.0 {
        combo = combo.width(width);
    }
    let r = combo.show_ui(ui, |ui| {
        for &c in choices {
            ui.selectable_value(value, c, label(c));
        }
    });
    r.response
        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ComboBox, true, name));
    *value != before
}

/// A horizontal bar of `fraction` (0..=1) of `width`, with a hover text.
pub fn bar(ui: &mut egui::Ui, fraction: f32, width: f32, color: Color32) -> egui::Response {
    let h = ui.text_style_height(&egui::TextStyle::Body) * 0.7;
    let (rect, resp) = ui.allocate_exact_size(egui::vec2(width, h), egui::Sense::hover());
    let p = ui.painter();
    p.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    let mut fill = rect;
    fill.set_width(width * fraction.clamp(0.0, 1.0));
    p.rect_filled(fill, 2.0, color);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_units() {
        assert_eq!(observer_label(&observer_choices()[2]), "p99.99");
        assert_eq!(bytes(36_800), "35.9 KiB");
        assert_eq!(bytes(900), "900 B");
        assert_eq!(micros(1234.0), "1.23 ms");
        assert_eq!(micros(42.4), "42 µs");
    }
}
