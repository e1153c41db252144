//! Atomic file output: write to a temporary file beside the target, flush, rename, then sync the
//! folder, so that a failure never leaves a half-written file under the target's name (the
//! previous file stays as it was) and a finished write survives a crash. Every write has its own
//! temporary name (process id and a per-process counter, created exclusively), so two writers of
//! one path, threads or processes, never share a temporary file: the last rename wins whole.
//! Temporaries that a killed writer left behind (its process is gone) are removed by the next
//! successful write of the same path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counter making temporary names unique within the process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let (tmp, mut f) = create_temp(dir, &name)?;
    let res = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    match res {
        Ok(()) => remove_stale(dir, &name),
        Err(_) => {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    res
}

/// Temporary files of `name` are `{prefix}{pid}-{n}`.
fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp")
}

/// Removes the temporary files of `name` whose writer process no longer exists. Only where a
/// process can be looked up (`/proc`); a live or unknown writer's file is never touched.
fn remove_stale(dir: &Path, name: &str) {
    let procs = Path::new("/proc");
    if !procs.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = temp_prefix(name);
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else {
            continue;
        };
        if pid != std::process::id() && !procs.join(pid.to_string()).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A new temporary file beside the target, created exclusively.
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{}{}-{n}", temp_prefix(name), std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            // A stale file of an earlier process with a recycled id: take the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Makes the rename durable (Unix: fsync the folder; elsewhere the rename is all there is).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writers_of_one_path_leave_one_whole_file_and_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, b"previous").unwrap();
        let payloads: Vec<Vec<u8>> = (0..4u8).map(|k| vec![k; 64 * 1024]).collect();
        std::thread::scope(|s| {
            for p in &payloads {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(path, p).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert!(
            payloads.contains(&got),
            "a mixed or partial file: {} bytes",
            got.len()
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("model.bin")],
            "{left:?}"
        );
    }

    #[test]
    fn a_write_removes_temporaries_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.ron");
        // A pid above the kernel's limit (2^22) names no process; our own pid is alive.
        let dead = dir.path().join(".plan.ron.tmp4194999-3");
        let alive = dir
            .path()
            .join(format!(".plan.ron.tmp{}-999999", std::process::id()));
        let other = dir.path().join(".other.ron.tmp4194999-3");
        for f in [&dead, &alive, &other] {
            std::fs::write(f, b"partial").unwrap();
        }
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists(), "a dead writer's temporary stayed");
        }
        assert!(alive.exists(), "a live writer's temporary was removed");
        assert!(other.exists(), "another file's temporary was removed");
    }

    #[test]
    fn a_failed_write_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails; nothing of the attempt remains.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"kept").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"kept");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file was removed");
        // A folder that does not exist: an error, no file.
        let missing = dir.path().join("no/such/dir/out.bin");
        assert!(write_atomic(&missing, b"x").is_err());
    }
}
