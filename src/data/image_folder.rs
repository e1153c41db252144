//! ImageFolder datasets (the torchvision convention): `root/train/<class>/*.png|jpg|jpeg` and
//! `root/test/<class>/...` (or `root/val/...`). Classes are the sorted union of the class folder
//! names of all splits present, so a label means the same class in every split. An
//! [`ImageTransform`] (torchvision's resize-shorter-side and centre crop) gives images of
//! mixed sizes one size; without one, all must share a size. Images are decoded in parallel,
//! once when the split is small, per batch when it is large (streamed). Grayscale images give
//! one channel; if any image has color, every image is converted to RGB (alpha is dropped).
//! Hidden files and folders (names starting with '.') and files with other extensions are
//! ignored. Depends only on `data::{error, dataset, image_files, transform}`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::Split;
use super::dataset::{Dataset, Pixels};
use super::error::DataError;
use super::image_files::ImageFiles;
use super::transform::{ImageTransform, probe};

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

/// Decoded images up to this many bytes are held in memory (decoded once); a larger split is
/// streamed: its files are decoded per batch, so memory does not grow with the image count.
pub const IN_MEMORY_BYTES: u64 = 64 << 20;

/// How an image folder is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderOptions {
    /// Resize and crop applied to each image.
    pub transform: ImageTransform,
    /// A split whose decoded images take at most this many bytes is decoded at once and held
    /// in memory; a larger one is streamed (decoded per batch).
    pub in_memory_bytes: u64,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            transform: ImageTransform::none(),
            in_memory_bytes: IN_MEMORY_BYTES,
        }
    }
}

/// Loads `split` of the ImageFolder dataset at `root`, images used at their size (all must
/// agree).
pub fn load_image_folder(root: &Path, split: Split) -> Result<Dataset, DataError> {
    load_image_folder_with(root, split, &FolderOptions::default())
}

/// Loads `split` of the ImageFolder dataset at `root`, each image resized and cropped by the
/// options' transform. Every file's header is read first (in parallel): an unreadable file, or
/// sizes that the transform does not make equal, is an error naming the file before any work
/// starts. Small splits are decoded now; larger ones are streamed (see [`FolderOptions`]).
pub fn load_image_folder_with(
    root: &Path,
    split: Split,
    options: &FolderOptions,
) -> Result<Dataset, DataError> {
    let transform = &options.transform;
    transform.validate()?;
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
    let mut labels = Vec::new();
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
        for f in images {
            files.push(class_dir.join(f));
            labels.push(label as u32);
        }
    }
    if files.is_empty() {
        return Err(DataError::Empty { path: dir });
    }

    let headers: Vec<Result<(u32, u32, bool), DataError>> =
        files.par_iter().map(|path| probe(path)).collect();
    let headers = headers.into_iter().collect::<Result<Vec<_>, _>>()?;
    let (h, w) = transform.output_size((headers[0].0, headers[0].1));
    if let Some(i) = headers
        .iter()
        .position(|&(hh, ww, _)| transform.output_size((hh, ww)) != (h, w))
    {
        let (found_h, found_w) = (headers[i].0, headers[i].1);
        if transform.is_none() {
            return Err(DataError::ImageSize {
                expected: (w, h),
                found: (found_w, found_h),
                path: files[i].clone(),
            });
        }
        let (oh, ow) = transform.output_size((found_h, found_w));
        return Err(DataError::Transform {
            problem: format!(
                "{} becomes {ow}x{oh} but the first image becomes {w}x{h}: a resize without a \
                 crop keeps aspect ratios, add a crop",
                files[i].display()
            ),
        });
    }
    let c = if headers.iter().any(|&(_, _, colour)| colour) {
        3
    } else {
        1
    };
    let shape = [c, h as usize, w as usize];
    let image_files = ImageFiles::new(files, *transform, shape);
    let chw = image_files.image_len();
    let decoded_bytes = (chw as u64).saturating_mul(image_files.len() as u64);
    let pixels = if decoded_bytes <= options.in_memory_bytes {
        let mut pixels = vec![0u8; image_files.len() * chw];
        let results: Vec<Result<(), DataError>> = pixels
            .par_chunks_mut(chw.max(1))
            .enumerate()
            .map(|(i, dst)| {
                dst.copy_from_slice(&image_files.decode(i)?);
                Ok(())
            })
            .collect();
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Pixels::U8(pixels)
    } else {
        Pixels::Files(Arc::new(image_files))
    };
    Dataset::new(
        dir.display().to_string(),
        pixels,
        labels,
        shape,
        class_names,
    )
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
