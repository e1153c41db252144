//! Datasets for training and evaluation: loading the train or test split of a directory in one
//! of three layouts (MNIST-style IDX files, NumPy `.npy`/`.npz`, or a torchvision ImageFolder),
//! holding it in memory as raw u8 or f32 pixels, and serving normalized, optionally shuffled
//! batches. Files are untrusted: every size a header declares is checked against the file before
//! anything is allocated, and every problem is a [`DataError`] naming the file.
//!
//! This module sits at the bottom of the crate beside `kernels`: it depends only on
//! `crate::tensor`, never on graphs, training, quantization or the GUI.
//!
//! ```no_run
//! use qatlas::data::{load_split, Loader, Normalization, Split};
//! let train = load_split(std::path::Path::new("data/mnist"), Split::Train)?;
//! let norm = Normalization::mnist();
//! for (images, labels) in Loader::new(&train, &norm, 64, Some(0), true) {
//!     assert_eq!(images.shape()[0], labels.len());
//! }
//! # Ok::<(), qatlas::data::DataError>(())
//! ```

mod dataset;
mod error;
pub mod idx;
mod image_files;
pub mod image_folder;
mod loader;
pub mod npy;
mod npy_header;
mod stream;
pub mod transform;

use std::fmt;
use std::path::{Path, PathBuf};

pub use dataset::{Dataset, MAX_LABEL, Normalization, Pixels};
pub use error::DataError;
pub use image_files::ImageFiles;
pub use loader::Loader;
pub use transform::{ImageTransform, Preset};

/// Which half of a dataset to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training split.
    Train,
    /// The test (or validation) split.
    Test,
}

impl Split {
    /// "train" or "test", as used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Loads `split` from `dir`, detecting the layout. Tried in order:
/// 1. IDX: `train-images-idx3-ubyte` + `train-labels-idx1-ubyte` (test: prefix `t10k` or
///    `test`), each raw or gzipped (with or without a `.gz` name; gzip is detected by content);
/// 2. `train.npz` with arrays `images`/`x` and `labels`/`y`;
/// 3. `train_images.npy` + `train_labels.npy`;
/// 4. ImageFolder: `train/<class>/*.png|jpg|jpeg` (test: `test/` or `val/`).
///
/// If none is present the error lists what was looked for.
pub fn load_split(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    load_split_with(dir, split, &ImageTransform::none())
}

/// [`load_split`] with a resize and crop for image folders (`transform` does not apply to the
/// array layouts, whose images already share a size).
pub fn load_split_with(
    dir: &Path,
    split: Split,
    transform: &ImageTransform,
) -> Result<Dataset, DataError> {
    let meta = std::fs::metadata(dir).map_err(|e| DataError::io(e, dir))?;
    if !meta.is_dir() {
        return Err(DataError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let s = split.name();
    let prefixes: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["t10k", "test"],
    };
    for prefix in prefixes {
        let images = [
            format!("{prefix}-images-idx3-ubyte"),
            format!("{prefix}-images-idx4-ubyte"),
        ];
        let labels = [format!("{prefix}-labels-idx1-ubyte")];
        if let Some((i, l)) = find_pair(dir, &images, &labels, true)? {
            return idx::load_idx_pair(&i, &l);
        }
    }
    let npz = dir.join(format!("{s}.npz"));
    if npz.is_file() {
        return npy::load_npz(&npz);
    }
    let images = [format!("{s}_images.npy")];
    let labels = [format!("{s}_labels.npy")];
    if let Some((i, l)) = find_pair(dir, &images, &labels, false)? {
        return npy::load_npy_pair(&i, &l);
    }
    if image_folder::split_dir(dir, split).is_some() {
        let options = image_folder::FolderOptions {
            transform: *transform,
            ..Default::default()
        };
        return image_folder::load_image_folder_with(dir, split, &options);
    }
    let folders = match split {
        Split::Train => "train/<class>/*.png|jpg|jpeg",
        Split::Test => "test/<class>/*.png|jpg|jpeg (or val/...)",
    };
    let idx_prefix = prefixes[0];
    Err(DataError::NotFound {
        split: s,
        looked_for: format!(
            "{idx_prefix}-images-idx3-ubyte[.gz] + {idx_prefix}-labels-idx1-ubyte[.gz], {s}.npz, \
             {s}_images.npy + {s}_labels.npy, {folders}"
        ),
        path: dir.to_path_buf(),
    })
}

/// Finds an images file and a labels file among candidate names (each optionally with `.gz`).
/// One without the other is an error naming both.
fn find_pair(
    dir: &Path,
    images: &[String],
    labels: &[String],
    gz: bool,
) -> Result<Option<(PathBuf, PathBuf)>, DataError> {
    let find = |names: &[String]| {
        names
            .iter()
            .flat_map(|n| {
                let plain = dir.join(n);
                let zipped = gz.then(|| dir.join(format!("{n}.gz")));
                std::iter::once(plain).chain(zipped)
            })
            .find(|p| p.is_file())
    };
    match (find(images), find(labels)) {
        (Some(i), Some(l)) => Ok(Some((i, l))),
        (Some(found), None) => Err(DataError::MissingCompanion {
            found,
            missing: dir.join(&labels[0]),
        }),
        (None, Some(found)) => Err(DataError::MissingCompanion {
            found,
            missing: dir.join(&images[0]),
        }),
        (None, None) => Ok(None),
    }
}
