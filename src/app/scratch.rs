//! The studio's scratch folder: QAT checkpoints and other files that only matter while the
//! window runs live in `<cache>/qatlas/runs/<pid>` (`$XDG_CACHE_HOME` or `~/.cache`, else the
//! temporary folder). The folder is removed when the studio closes, and folders left by studios
//! that crashed (their process is gone) are removed when the next one starts.

use std::path::{Path, PathBuf};

/// `<cache>/qatlas/runs`.
pub fn root() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("qatlas").join("runs")
}

/// This process's scratch folder (not created here).
pub fn own_dir() -> PathBuf {
    root().join(std::process::id().to_string())
}

/// Whether process `pid` still runs (Linux: `/proc/<pid>`; elsewhere assumed alive).
fn alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes the folders under `root` that belong to processes that are gone (never this one's);
/// returns how many were removed.
pub fn clean_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| pid != std::process::id() && !alive(pid))
        })
        .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
        .count()
}

/// Removes this process's scratch folder (at exit).
pub fn remove_own() {
    let _ = std::fs::remove_dir_all(own_dir());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_gone_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid_max on Linux is at most 2^22: this pid cannot run.
        let gone = dir.path().join("4999999");
        let mine = dir.path().join(std::process::id().to_string());
        let other = dir.path().join("notes");
        for d in [&gone, &mine, &other] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("x.best.safetensors"), b"x").unwrap();
        }
        assert_eq!(clean_stale(dir.path()), 1);
        assert!(!gone.exists() && mine.exists() && other.exists());
    }
}
