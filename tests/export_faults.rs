//! Writing files when things go wrong: a full disk and a read-only destination (small tmpfs
//! mounts, where the test may mount: as root) fail with a message naming the path and leave the
//! previous file whole with no temporary beside it; a `qatlas train` killed at random moments
//! never leaves a partial model under the target's name.

use qatlas::io::{load_model, save_model};
use std::path::{Path, PathBuf};
use std::process::Command;

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// A tmpfs of `size` mounted on a new temporary folder, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (with the reason printed) where this process may not mount.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: no mount command: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "remounting read-only");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Saves seed-cnn (~270 KB) over a small previous file on `disk` (made read-only first when
/// asked): the error names the file and says `why`; the previous file and nothing else remains.
fn save_is_refused(disk: &SmallDisk, read_only: bool, why: &str) {
    let target = disk.path().join("model.safetensors");
    std::fs::write(&target, b"the previous file").unwrap();
    if read_only {
        disk.read_only();
    }
    let m = load_model(&assets().join("seed_cnn_mnist.safetensors")).unwrap();
    let e = save_model(&m, &target).unwrap_err().to_string();
    assert!(e.contains(&target.display().to_string()), "{e}");
    assert!(e.contains(why), "{e}");
    assert_eq!(std::fs::read(&target).unwrap(), b"the previous file");
    assert_eq!(
        names(disk.path()),
        vec!["model.safetensors"],
        "no temporary left"
    );
}

#[test]
fn a_full_disk_fails_naming_the_file_and_keeps_the_previous_one() {
    // 96 KB: the model cannot fit.
    if let Some(disk) = SmallDisk::mount("96k") {
        save_is_refused(&disk, false, "No space left");
    }
}

#[test]
fn a_read_only_destination_fails_naming_the_file_and_keeps_the_previous_one() {
    if let Some(disk) = SmallDisk::mount("1m") {
        save_is_refused(&disk, true, "Read-only");
    }
}

#[test]
fn a_killed_writer_never_leaves_a_partial_model() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.safetensors");
    let previous = assets().join("seed_cnn_mnist.safetensors");
    std::fs::copy(&previous, &target).unwrap();
    let before = std::fs::read(&target).unwrap();
    let train = |seed: u64| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qatlas"));
        cmd.args([
            "train",
            "--epochs",
            "1",
            "--limit",
            "64",
            "--eval-limit",
            "0",
        ])
        .args(["--seed", &seed.to_string()])
        .arg("--out")
        .arg(&target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        cmd
    };
    // Kill `qatlas train` after 0..~1.2 s: while it loads, trains, writes or renames.
    for k in 0..12u64 {
        let mut child = train(k).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(k * 100));
        let _ = child.kill();
        let _ = child.wait();
        let m = load_model(&target).unwrap_or_else(|e| panic!("after a kill at {k}00 ms: {e}"));
        assert!(!m.graph.params.is_empty());
    }
    // A run left to finish replaces the file whole and clears what killed writers left behind.
    let status = train(99).status().unwrap();
    assert!(status.success(), "an uninterrupted run failed: {status}");
    assert_ne!(
        std::fs::read(&target).unwrap(),
        before,
        "the file was not replaced"
    );
    load_model(&target).unwrap();
    assert_eq!(names(dir.path()), vec!["m.safetensors".to_string()]);
}
