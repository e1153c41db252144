//! ImageFolder datasets (the torchvision convention): `root/train/<class>/*.png|jpg|jpeg` and
//! `root/test/<class>/...` (or `root/val/...`). Classes are the sorted union of the class folder
//! names of all splits present, so a label means the same class in every split. Images are
//! decoded in parallel; all must share one size. Grayscale images give one channel; if any image
//! has color, every image is converted to RGB (alpha is dropped). Hidden files and folders
//! (names starting with '.') and files with other extensions are ignored.
//! Depends only on `data::{error, dataset}` and the `image` crate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Split;
use super::dataset::{Dataset, Pixels};
use super::error::DataError;

/// Extensions (lowercase) of the files treated as images.
const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Folder names tried for each split, in order.
fn split_names(split: Split) -> &'static [&'static str] {
    match split {
        Split::Train => &["train"],
        Split::Test => &["test", "val"],
    }
}

/// The folder holding `split` under `root`, if there is one.
pub(crate) fn split_dir(root: &Path, split: Split) -> Option<PathBuf> {
    split_names(split)
        .iter()
        .map(|name| root.join(name))
        .find(|p| p.is_dir())
}

/// Loads `split` of the ImageFolder dataset at `root`.
pub fn load_image_folder(root: &Path, split: Split) -> Result<Dataset, DataError> {
    let Some(dir) = split_dir(root, split) else {
        return Err(DataError::NotFound {
            split: split.name(),
            looked_for: format!("a folder named {}", split_names(split).join(" or ")),
            path: root.to_path_buf(),
        });
    };
    let mut classes = BTreeSet::new();
    for name in ["train", "test", "val"] {
        let d = root.join(name);
        if d.is_dir() {
            classes.extend(visible_entries(&d, true)?);
        }
    }
    let class_names: Vec<String> = classes.into_iter().collect();

    let mut files = Vec::new();
    for (label, class) in class_names.iter().enumerate() {
        let class_dir = dir.join(class);
        if !class_dir.is_dir() {
            continue;
        }
        let images: Vec<String> = visible_entries(&class_dir, false)?
            .into_iter()
            .filter(|name| has_image_extension(name))
            .collect();
        if images.is_empty() {
            return Err(DataError::EmptyClass { path: class_dir });
        }
        files.extend(
            images
                .into_iter()
                .map(|f| (class_dir.join(f), label as u32)),
        );
    }
    if files.is_empty() {
        return Err(DataError::Empty { path: dir });
    }

    let decoded: Vec<Result<Decoded, DataError>> =
        files.par_iter().map(|(path, _)| decode(path)).collect();
    let decoded = decoded.into_iter().collect::<Result<Vec<_>, _>>()?;

    let (w, h) = (decoded[0].width, decoded[0].height);
    if let Some((i, odd)) = decoded
        .iter()
        .enumerate()
        .find(|(_, d)| (d.width, d.height) != (w, h))
    {
        return Err(DataError::ImageSize {
            expected: (w, h),
            found: (odd.width, odd.height),
            path: files[i].0.clone(),
        });
    }
    let c = if decoded.iter().any(|d| d.channels == 3) {
        3
    } else {
        1
    };
    let hw = h as usize * w as usize;
    let mut pixels = Vec::with_capacity(decoded.len() * c * hw);
    for d in &decoded {
        match (c, d.channels) {
            (1, _) => pixels.extend_from_slice(&d.bytes),
            // Interleaved RGB (H x W x 3) to planar (3 x H x W).
            (_, 3) => {
                for ch in 0..3 {
                    pixels.extend(d.bytes.iter().skip(ch).step_by(3));
                }
            }
            // Grayscale in a color dataset: the same plane three times.
            _ => {
                for _ in 0..3 {
                    pixels.extend_from_slice(&d.bytes);
                }
            }
        }
    }
    let labels = files.iter().map(|(_, label)| *label).collect();
    Dataset::new(
        dir.display().to_string(),
        Pixels::U8(pixels),
        labels,
        [c, h as usize, w as usize],
        class_names,
    )
}

/// One decoded image: 8-bit gray (`channels` 1) or interleaved RGB (`channels` 3).
struct Decoded {
    width: u32,
    height: u32,
    channels: usize,
    bytes: Vec<u8>,
}

fn decode(path: &Path) -> Result<Decoded, DataError> {
    let image = image::ImageReader::open(path)
        .map_err(|e| DataError::io(e, path))?
        .with_guessed_format()
        .map_err(|e| DataError::io(e, path))?
        .decode()
        .map_err(|e| DataError::Image {
            error: e.to_string(),
            path: path.to_path_buf(),
        })?;
    let (width, height) = (image.width(), image.height());
    Ok(if image.color().has_color() {
        Decoded {
            width,
            height,
            channels: 3,
            bytes: image.into_rgb8().into_raw(),
        }
    } else {
        Decoded {
            width,
            height,
            channels: 1,
            bytes: image.into_luma8().into_raw(),
        }
    })
}

fn has_image_extension(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Sorted names of the visible folders (`dirs`) or files (`!dirs`) in `dir`.
fn visible_entries(dir: &Path, dirs: bool) -> Result<Vec<String>, DataError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(e, dir))? {
        let entry = entry.map_err(|e| DataError::io(e, dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `metadata` follows symlinks, so linked class folders and images count.
        let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
        if !name.starts_with('.') && is_dir == dirs {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
