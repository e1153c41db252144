//! The menu bar: File (projects, models, data, recent files, export, quit), View (theme) and
//! Help (keyboard shortcuts). Every entry sends a [`Command`]; an entry that cannot act now is
//! disabled and says why on hover.

use crate::app::prefs::Theme;
use crate::app::project_control::ProjectCommand;
use crate::app::state::{Command, FrameCtx};
use eframe::egui;
use std::path::PathBuf;

/// An entry with its shortcut shown on the right.
fn item(ui: &mut egui::Ui, text: &str, shortcut: &str) -> egui::Response {
    ui.add(egui::Button::new(text).shortcut_text(shortcut))
}

/// A "Recent …" submenu; `open` turns a path into its command.
fn recent(
    ui: &mut egui::Ui,
    cx: &mut FrameCtx<'_>,
    title: &str,
    list: &[PathBuf],
    open: fn(PathBuf) -> Command,
) {
    ui.menu_button(title, |ui| {
        if list.is_empty() {
            ui.weak("none yet");
        }
        for p in list {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string());
            if ui
                .button(name)
                .on_hover_text(p.display().to_string())
                .clicked()
            {
                cx.send(open(p.clone()));
                ui.close();
            }
        }
    });
}

/// Draws the menu bar.
pub fn ui(ui: &mut egui::Ui, cx: &mut FrameCtx<'_>) {
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            if item(ui, "Open project…", "Ctrl+O").clicked() {
                cx.send(Command::Project(ProjectCommand::PickOpen));
                ui.close();
            }
            if item(ui, "Open model…", "Ctrl+Shift+O").clicked() {
                cx.send(Command::PickModel);
                ui.close();
            }
            if ui.button("Open data folder…").clicked() {
                cx.send(Command::PickDataDir);
                ui.close();
            }
            if let Some(prefs) = cx.prefs {
                let (projects, models, data) = (
                    prefs.recent_projects.clone(),
                    prefs.recent_models.clone(),
                    prefs.recent_data.clone(),
                );
                recent(ui, cx, "Recent projects", &projects, |p| {
                    Command::Project(ProjectCommand::Open(p))
                });
                recent(ui, cx, "Recent models", &models, Command::OpenModel);
                recent(ui, cx, "Recent data folders", &data, Command::OpenData);
            }
            ui.separator();
            let can = cx.project_save.clone();
            let r = ui.add_enabled(
                can.is_ok(),
                egui::Button::new("Save project").shortcut_text("Ctrl+S"),
            );
            let r2 = ui.add_enabled(
                can.is_ok(),
                egui::Button::new("Save project as…").shortcut_text("Ctrl+Shift+S"),
            );
            if let Err(why) = &can {
                r.clone().on_disabled_hover_text(why.as_str());
                r2.clone().on_disabled_hover_text(why.as_str());
            }
            if r.clicked() {
                cx.send(Command::Project(ProjectCommand::Save));
                ui.close();
            }
            if r2.clicked() {
                cx.send(Command::Project(ProjectCommand::PickSaveAs));
                ui.close();
            }
            ui.separator();
            if item(ui, "Export…", "Ctrl+E").clicked() {
                cx.send(Command::ExportShortcut);
                ui.close();
            }
            ui.separator();
            if item(ui, "Quit", "Ctrl+Q").clicked() {
                cx.send(Command::Quit);
                ui.close();
            }
        });
        ui.menu_button("View", |ui| {
            let current = cx.prefs.map(|p| p.theme).unwrap_or_default();
            for (t, name) in Theme::ALL {
                if ui.radio(current == t, name).clicked() {
                    cx.send(Command::SetTheme(t));
                    ui.close();
                }
            }
        });
        ui.menu_button("Help", |ui| {
            if item(ui, "Keyboard shortcuts", "F1").clicked() {
                cx.send(Command::ShowShortcuts(true));
                ui.close();
            }
        });
        if cx.project_dirty {
            ui.weak("• unsaved changes").on_hover_text(
                "The project's plan or settings changed since it was saved (Ctrl+S)",
            );
        }
    });
}
