//! What the studio keeps between sessions through eframe's storage, apart from any project:
//! recent projects, models and data folders (also the folders dialogs start in) and the theme.
//! egui keeps panel sizes in its own persisted memory.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Key of [`UiPrefs`] in eframe's storage.
pub const KEY: &str = "qatlas.ui";

/// Entries each recent list keeps.
pub const RECENT: usize = 8;

/// Light, dark, or as the system says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

impl Theme {
    pub const ALL: [(Theme, &'static str); 3] = [
        (Theme::System, "As the system"),
        (Theme::Light, "Light"),
        (Theme::Dark, "Dark"),
    ];

    /// egui's name for the choice.
    pub fn preference(self) -> eframe::egui::ThemePreference {
        match self {
            Theme::System => eframe::egui::ThemePreference::System,
            Theme::Light => eframe::egui::ThemePreference::Light,
            Theme::Dark => eframe::egui::ThemePreference::Dark,
        }
    }
}

/// The studio's preferences (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UiPrefs {
    pub recent_projects: Vec<PathBuf>,
    pub recent_models: Vec<PathBuf>,
    pub recent_data: Vec<PathBuf>,
    pub theme: Theme,
}

/// Puts `p` first in `list` (once), keeping at most [`RECENT`].
fn push(list: &mut Vec<PathBuf>, p: &Path) {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    list.retain(|q| *q != p);
    list.insert(0, p);
    list.truncate(RECENT);
}

impl UiPrefs {
    pub fn remember_project(&mut self, p: &Path) {
        push(&mut self.recent_projects, p);
    }

    pub fn remember_model(&mut self, p: &Path) {
        push(&mut self.recent_models, p);
    }

    pub fn remember_data(&mut self, p: &Path) {
        push(&mut self.recent_data, p);
    }

    /// The folder a dialog for this kind of file starts in: the latest one's.
    pub fn last_folder(list: &[PathBuf]) -> Option<PathBuf> {
        list.iter()
            .filter_map(|p| p.parent())
            .find(|d| d.is_dir())
            .map(Path::to_path_buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_lists_put_the_latest_first_once_and_keep_eight() {
        let mut u = UiPrefs::default();
        for i in 0..10 {
            u.remember_model(Path::new(&format!("/m/{i}.safetensors")));
        }
        u.remember_model(Path::new("/m/3.safetensors"));
        assert_eq!(u.recent_models.len(), RECENT);
        assert_eq!(u.recent_models[0], PathBuf::from("/m/3.safetensors"));
        assert_eq!(
            u.recent_models
                .iter()
                .filter(|p| p.ends_with("3.safetensors"))
                .count(),
            1
        );
        assert_eq!(u.recent_models[1], PathBuf::from("/m/9.safetensors"));
        let text = ron::to_string(&u).unwrap();
        let back: UiPrefs = ron::from_str(&text).unwrap();
        assert_eq!(back, u);
        // Older storage without some fields still reads.
        let old: UiPrefs = ron::from_str("(theme: Dark)").unwrap();
        assert_eq!(old.theme, Theme::Dark);
        assert!(old.recent_projects.is_empty());
    }
}
