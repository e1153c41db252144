//! Windows over the studio: the question before unsaved work is lost (a modal), the keyboard
//! shortcut list (F1), the whole text of the status line's message, and the hint while files
//! are dragged over the window. Each sends [`Command`]s; none changes state itself.

use crate::app::input::SHORTCUTS;
use crate::app::state::{Command, ConfirmAnswer, FrameCtx, Level, Pending};
use eframe::egui;

/// Draws whichever of the windows is open.
pub fn ui(ctx: &egui::Context, cx: &mut FrameCtx<'_>) {
    confirm(ctx, cx);
    shortcuts(ctx, cx);
    notice_details(ctx, cx);
    drop_hint(ctx);
}

fn confirm(ctx: &egui::Context, cx: &mut FrameCtx<'_>) {
    let Some(c) = &cx.live.confirm else { return };
    let closing = c.pending == Pending::Close;
    let lost = c.lost.clone();
    let can_save = cx.project_save.clone();
    let r = egui::Modal::new(egui::Id::unique("confirm_unsaved")).show(ctx, |ui| {
        ui.set_max_width(460.0);
        ui.heading(if closing {
            "Close the studio?"
        } else {
            "Unsaved work would be replaced"
        });
        ui.add_space(4.0);
        ui.label("Not saved:");
        for l in &lost {
            ui.label(format!("• {l}"));
        }
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if closing {
                let r = ui.add_enabled(
                    can_save.is_ok(),
                    egui::Button::new("Save project and close"),
                );
                if let Err(why) = &can_save {
                    r.clone().on_disabled_hover_text(why.as_str());
                }
                if r.clicked() {
                    cx.send(Command::Confirm(ConfirmAnswer::SaveFirst));
                }
            }
            let go = if closing {
                "Close without saving"
            } else {
                "Go on without saving"
            };
            if ui.button(go).clicked() {
                cx.send(Command::Confirm(ConfirmAnswer::Proceed));
            }
            if ui.button("Cancel").clicked() {
                cx.send(Command::Confirm(ConfirmAnswer::Cancel));
            }
        });
    });
    if r.should_close() {
        cx.send(Command::Confirm(ConfirmAnswer::Cancel));
    }
}

fn shortcuts(ctx: &egui::Context, cx: &mut FrameCtx<'_>) {
    if !cx.live.show_shortcuts {
        return;
    }
    let mut open = true;
    egui::Window::new("Keyboard shortcuts")
        .open(&mut open)
        .default_pos([360.0, 160.0])
        .collapsible(false)
        .resizable(false)
        .show(ctx, |ui| {
            egui::Grid::new("shortcut_list")
                .num_columns(2)
                .spacing([16.0, 4.0])
                .show(ui, |ui| {
                    for (keys, what) in SHORTCUTS {
                        ui.monospace(keys);
                        ui.label(what);
                        ui.end_row();
                    }
                });
        });
    if !open {
        cx.send(Command::ShowShortcuts(false));
    }
}

fn notice_details(ctx: &egui::Context, cx: &mut FrameCtx<'_>) {
    let Some(n) = cx
        .live
        .notice
        .as_ref()
        .filter(|_| cx.live.show_notice_details)
    else {
        return;
    };
    let mut open = true;
    let title = match n.level {
        Level::Error => "Error",
        Level::Info => "Message",
    };
    let text = n.text.clone();
    egui::Window::new(title)
        .open(&mut open)
        .default_pos([360.0, 120.0])
        .collapsible(false)
        .default_width(520.0)
        .show(ctx, |ui| {
            ui.add(egui::Label::new(text.as_str()).wrap().selectable(true));
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                if ui.button("Copy").clicked() {
                    ui.ctx().copy_text(text.clone());
                }
                if ui.button("Dismiss").clicked() {
                    cx.send(Command::DismissNotice);
                    cx.send(Command::ShowNoticeDetails(false));
                }
            });
        });
    if !open {
        cx.send(Command::ShowNoticeDetails(false));
    }
}

/// While files are dragged over the window, says what dropping them does.
fn drop_hint(ctx: &egui::Context) {
    let hovered = ctx.input(|i| i.raw.hovered_files.len());
    if hovered == 0 {
        return;
    }
    egui::Area::new(egui::Id::unique("drop_hint"))
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .order(egui::Order::Foreground)
        .show(ctx, |ui| {
            egui::Frame::popup(ui.style()).show(ui, |ui| {
                ui.heading("Drop to open");
                ui.label("a model file, a project (.ron) or a dataset folder");
            });
        });
}
