//! The recipe part of the QAT form: which recipe the defaults chose for the precision and the
//! model (int8: PyTorch's; any 4-bit grid: LSQ with a smaller scale learning rate, MSE weight
//! ranges, first and last layer at W8A8, oscillation damping, BatchNorm freezing and
//! re-estimation), each setting editable, and "Recommended" to go back to the defaults. The
//! recipe is re-chosen when the precision or the epoch count changes. Draws only; the choice
//! itself is [`QatRequest::default_recipe`] (a scan of the model's nodes, no tensor work).

use crate::app::format;
use crate::app::qat_run::{QatPrecision, QatRequest};
use crate::graph::Graph;
use crate::quant::QuantPlan;
use eframe::egui;
use serde::{Deserialize, Serialize};

/// The recipe settings of the form beyond learning rate, LSQ and freezing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipeForm {
    pub quantizer_lr_factor: f32,
    pub damping: f32,
    pub bn_reestimate: bool,
    pub bn_reestimate_batches: usize,
    pub keep_ends_8bit: bool,
    pub mse_weights: bool,
    /// The name of the recipe the values came from ("custom" once edited).
    pub name: String,
    /// (precision, epochs) the recipe was chosen for; a change re-chooses it.
    #[serde(skip)]
    pub chosen_for: Option<(QatPrecision, usize)>,
}

impl Default for RecipeForm {
    fn default() -> Self {
        let r = QatRequest::default();
        RecipeForm {
            quantizer_lr_factor: r.quantizer_lr_factor,
            damping: r.damping,
            bn_reestimate: r.bn_reestimate_batches > 0,
            bn_reestimate_batches: r.bn_reestimate_batches.max(50),
            keep_ends_8bit: r.keep_ends_8bit,
            mse_weights: r.mse_weights,
            name: "int8".into(),
            chosen_for: None,
        }
    }
}

impl RecipeForm {
    /// Writes the form's settings into `r`.
    pub fn fill(&self, r: &mut QatRequest) {
        r.quantizer_lr_factor = self.quantizer_lr_factor;
        r.damping = self.damping;
        r.bn_reestimate_batches = if self.bn_reestimate {
            self.bn_reestimate_batches
        } else {
            0
        };
        r.keep_ends_8bit = self.keep_ends_8bit;
        r.mse_weights = self.mse_weights;
    }

    /// Takes the settings of a saved request.
    pub fn take(&mut self, r: &QatRequest) {
        self.quantizer_lr_factor = r.quantizer_lr_factor;
        self.damping = r.damping;
        self.bn_reestimate = r.bn_reestimate_batches > 0;
        if r.bn_reestimate_batches > 0 {
            self.bn_reestimate_batches = r.bn_reestimate_batches;
        }
        self.keep_ends_8bit = r.keep_ends_8bit;
        self.mse_weights = r.mse_weights;
        self.name = "saved".into();
        self.chosen_for = Some((r.precision, r.epochs));
    }
}

/// Whether the recipe must be chosen again for `req` (precision or epochs changed).
pub fn needs_choice(form: &RecipeForm, req: &QatRequest) -> bool {
    form.chosen_for != Some((req.precision, req.epochs))
}

/// The recommended request for `req`'s precision and epochs on `g` (`plan`: the studio's plan).
pub fn recommended(req: &QatRequest, g: &Graph, plan: Option<&QuantPlan>) -> (QatRequest, String) {
    let recipe = req.default_recipe(g, plan);
    let mut out = *req;
    out.set_recipe(&recipe);
    (out, recipe.name)
}

/// The recipe rows of the settings grid (the caller marks the recipe "custom" when the
/// request changed).
pub fn rows(ui: &mut egui::Ui, form: &mut RecipeForm, lsq: bool, four_bit: bool) {
    ui.label("Scale learning rate");
    ui.add_enabled_ui(lsq, |ui| {
        ui.add(
            egui::DragValue::new(&mut form.quantizer_lr_factor)
                .range(0.0..=10.0)
                .speed(0.01)
                .suffix(" × lr"),
        )
        .on_hover_text("LSQ scales and zero points train at this fraction of the weights' rate")
        .on_disabled_hover_text("Only learnable (LSQ) scales have a learning rate");
    });
    ui.end_row();
    ui.label("Oscillation damping");
    ui.add(
        egui::DragValue::new(&mut form.damping)
            .range(0.0..=1.0)
            .speed(1e-4)
            .custom_formatter(|v, _| format::small(v as f32)),
    )
    .on_hover_text(
        "Pulls each latent weight towards the centre of its quantization bin (Nagel et al. \
             2022), so that weights stop flipping between two grid points; 0 turns it off",
    );
    ui.end_row();
    ui.label("BatchNorm re-estimation");
    ui.horizontal(|ui| {
        ui.checkbox(&mut form.bn_reestimate, "on");
        ui.add_enabled(
            form.bn_reestimate,
            egui::DragValue::new(&mut form.bn_reestimate_batches).range(1..=10_000),
        );
        ui.label("batches after the last epoch");
    });
    ui.end_row();
    ui.label("4-bit plan");
    ui.horizontal(|ui| {
        ui.add_enabled_ui(four_bit, |ui| {
            ui.checkbox(&mut form.keep_ends_8bit, "first and last layer W8A8")
                .on_disabled_hover_text("Only generated 4-bit plans are shaped");
            ui.checkbox(&mut form.mse_weights, "MSE weight ranges")
                .on_hover_text("4-bit weight scales from an MSE search instead of min-max")
                .on_disabled_hover_text("Only generated 4-bit plans are shaped");
        });
    });
    ui.end_row();
}
