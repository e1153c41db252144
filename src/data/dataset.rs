//! The in-memory dataset: raw pixels (u8 or f32, N x C x H x W row-major), one label per image,
//! and the per-channel normalization that turns a selection of samples into a float batch.
//! `Dataset::batch` runs every training step, so it converts with a precomputed per-channel
//! scale and offset (one multiply-add per pixel, no division). Depends only on `crate::tensor`
//! and `data::error`.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::DataError;
use super::image_files::ImageFiles;
use crate::tensor::{self, Tensor};

/// Largest label accepted: a sanity limit that catches garbage label files early.
pub const MAX_LABEL: u32 = u16::MAX as u32;

/// Raw pixel storage, N x C x H x W row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// Bytes in 0..=255 (scaled by 1/255 before normalization).
    U8(Vec<u8>),
    /// Floats, used as they are before normalization.
    F32(Vec<f32>),
    /// Image files decoded to bytes when a batch needs them (scaled like `U8`).
    Files(Arc<ImageFiles>),
}

impl Pixels {
    /// Number of values (N * C * H * W; for files, the values they decode to).
    pub fn len(&self) -> usize {
        match self {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
            Pixels::Files(f) => f.len() * f.image_len(),
        }
    }

    /// True when no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Pixels::U8(v) => v.truncate(len),
            Pixels::F32(v) => v.truncate(len),
            Pixels::Files(f) => *f = Arc::new(f.first(len / f.image_len().max(1))),
        }
    }

    /// The first `len` values (`len` a whole number of images), copying only those.
    fn head(&self, len: usize) -> Pixels {
        match self {
            Pixels::U8(v) => Pixels::U8(v[..len].to_vec()),
            Pixels::F32(v) => Pixels::F32(v[..len].to_vec()),
            Pixels::Files(f) => Pixels::Files(Arc::new(f.first(len / f.image_len().max(1)))),
        }
    }
}

/// A labelled image dataset held in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Where the data came from, as shown to users (a file or directory path).
    pub source: String,
    /// The images, N x C x H x W row-major.
    pub pixels: Pixels,
    /// One label per image, each `< num_classes`.
    pub labels: Vec<u32>,
    /// Number of images.
    pub n: usize,
    /// Channels per image (1 for grayscale, 3 for RGB).
    pub c: usize,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Number of classes a model must output.
    pub num_classes: usize,
    /// One name per class (the folder names for an ImageFolder, "0", "1", ... otherwise).
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Builds a dataset from parts and checks that they agree: at least one sample, pixel count
    /// equal to `labels.len() * c * h * w`, every label below the class count. With empty
    /// `class_names`, the class count is `max label + 1` and the classes are named by number.
    ///
    /// ```
    /// use qatlas::data::{Dataset, Pixels};
    /// let pixels = Pixels::U8(vec![0, 255, 10, 20]);
    /// let ds = Dataset::new("demo", pixels, vec![1, 0], [1, 1, 2], vec![])?;
    /// assert_eq!((ds.len(), ds.num_classes, ds.image_shape()), (2, 2, [1, 1, 2]));
    /// # Ok::<(), qatlas::data::DataError>(())
    /// ```
    pub fn new(
        source: impl Into<String>,
        pixels: Pixels,
        labels: Vec<u32>,
        image_shape: [usize; 3],
        class_names: Vec<String>,
    ) -> Result<Dataset, DataError> {
        let source = source.into();
        let path = PathBuf::from(&source);
        let n = labels.len();
        if n == 0 {
            return Err(DataError::Empty { path });
        }
        let [c, h, w] = image_shape;
        let expected = [n, c, h, w]
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(pixels.len()) || pixels.is_empty() {
            return Err(DataError::Inconsistent {
                what: "pixel count (labels x channels x height x width)",
                expected: expected.map_or(u64::MAX, |e| e as u64),
                found: pixels.len() as u64,
                path,
            });
        }
        let max_label = labels.iter().copied().max().unwrap_or(0);
        if max_label > MAX_LABEL {
            return Err(DataError::Inconsistent {
                what: "largest label (sanity limit)",
                expected: u64::from(MAX_LABEL),
                found: u64::from(max_label),
                path,
            });
        }
        let class_names = if class_names.is_empty() {
            (0..=max_label).map(|k| k.to_string()).collect()
        } else if (max_label as usize) < class_names.len() {
            class_names
        } else {
            return Err(DataError::Inconsistent {
                what: "class count (largest label + 1)",
                expected: class_names.len() as u64,
                found: u64::from(max_label) + 1,
                path,
            });
        };
        Ok(Dataset {
            source,
            pixels,
            labels,
            n,
            c,
            h,
            w,
            num_classes: class_names.len(),
            class_names,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the dataset has no samples (never the case for a loaded dataset).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Shape of one image: `[c, h, w]`.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.c, self.h, self.w]
    }

    /// Keeps the first `n` samples (all of them if there are fewer). The class count and names
    /// are kept, since a model's output size must not depend on how much data is used.
    pub fn limit(mut self, n: usize) -> Dataset {
        if n < self.n {
            self.n = n;
            self.labels.truncate(n);
            self.pixels.truncate(n * self.c * self.h * self.w);
        }
        self
    }

    /// A copy of the first `n` samples (all of them if there are fewer), like
    /// `self.clone().limit(n)` without copying the rest first.
    pub fn first(&self, n: usize) -> Dataset {
        let n = n.min(self.n);
        let len = n * self.c * self.h * self.w;
        Dataset {
            source: self.source.clone(),
            pixels: self.pixels.head(len),
            labels: self.labels[..n].to_vec(),
            n,
            c: self.c,
            h: self.h,
            w: self.w,
            num_classes: self.num_classes,
            class_names: self.class_names.clone(),
        }
    }

    /// The samples at `indices` as a normalized f32 tensor of shape `[indices.len(), c, h, w]`:
    /// `(p - mean[ch]) / std[ch]`, where u8 pixels `p` are first scaled by 1/255.
    ///
    /// `norm` should have passed [`Normalization::validate`] for this dataset's channel count;
    /// if it has not, channel `ch` uses entry `ch % len` of each list and an empty list means
    /// mean 0 / std 1, so a bad project file cannot crash a training step.
    ///
    /// # Panics
    /// If an index is `>= self.len()` (a programming error, like slice indexing).
    pub fn batch(&self, indices: &[usize], norm: &Normalization) -> Tensor {
        let chw = self.c * self.h * self.w;
        let hw = self.h * self.w;
        let pre = match self.pixels {
            Pixels::U8(_) | Pixels::Files(_) => 1.0 / 255.0,
            Pixels::F32(_) => 1.0,
        };
        let (scale, offset) = norm.affine(self.c, pre);
        let mut out = vec![0f32; indices.len() * chw];
        if let Some(&i) = indices.iter().find(|&&i| i >= self.n) {
            panic!("sample index {i} out of range for {} samples", self.n);
        }
        // One image's planes, `x · scale[ch] + offset[ch]`, from u8 or f32 values.
        fn fill<T: Copy>(dst: &mut [f32], src: &[T], hw: usize, sc: &[f32], of: &[f32])
        where
            f32: From<T>,
        {
            for (ch, (d, s)) in dst
                .chunks_mut(hw.max(1))
                .zip(src.chunks(hw.max(1)))
                .enumerate()
            {
                let (k, b) = (sc[ch], of[ch]);
                for (y, &x) in d.iter_mut().zip(s) {
                    *y = f32::from(x) * k + b;
                }
            }
        }
        match &self.pixels {
            Pixels::Files(files) => files.decode_into(indices, &mut out, |dst, bytes| {
                fill(dst, bytes, hw, &scale, &offset)
            }),
            Pixels::U8(p) => {
                for (dst, &i) in out.chunks_exact_mut(chw.max(1)).zip(indices) {
                    fill(dst, &p[i * chw..(i + 1) * chw], hw, &scale, &offset);
                }
            }
            Pixels::F32(p) => {
                for (dst, &i) in out.chunks_exact_mut(chw.max(1)).zip(indices) {
                    fill(dst, &p[i * chw..(i + 1) * chw], hw, &scale, &offset);
                }
            }
        }
        tensor::from_vec(&[indices.len(), self.c, self.h, self.w], out)
    }

    /// True when the images are decoded from files per batch rather than held in memory.
    pub fn is_streamed(&self) -> bool {
        matches!(self.pixels, Pixels::Files(_))
    }

    /// The first image file that failed to decode since the last call (streamed datasets):
    /// call after a pass over the data; a failure ends a [`crate::data::Loader`] early.
    pub fn check(&self) -> Result<(), DataError> {
        match &self.pixels {
            Pixels::Files(f) => f.take_fault().map_or(Ok(()), Err),
            _ => Ok(()),
        }
    }

    /// True when a decode failed and [`Dataset::check`] has not reported it yet.
    pub(crate) fn has_fault(&self) -> bool {
        matches!(&self.pixels, Pixels::Files(f) if f.has_fault())
    }

    /// The labels at `indices`.
    ///
    /// # Panics
    /// If an index is `>= self.len()`.
    pub fn labels_of(&self, indices: &[usize]) -> Vec<u32> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }
}

/// Per-channel normalization: `(x - mean) / std`. A list of length 1 applies to every channel.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Per-channel mean, in the 0..1 scale for u8 data.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation, in the 0..1 scale for u8 data; must be > 0.
    pub std: Vec<f32>,
}

impl Normalization {
    /// The usual MNIST statistics: mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Normalization {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// torchvision's ImageNet statistics (RGB).
    pub fn imagenet() -> Self {
        Normalization {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// No shift and no scaling (u8 data still maps to 0..1).
    pub fn identity() -> Self {
        Normalization {
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    /// Checks that both lists have length 1 or `channels`, that means are finite and that
    /// standard deviations are finite and positive.
    pub fn validate(&self, channels: usize) -> Result<(), DataError> {
        for (field, values) in [("mean", &self.mean), ("std", &self.std)] {
            if values.len() != 1 && values.len() != channels {
                return Err(DataError::Normalization {
                    field,
                    expected: if channels == 1 {
                        "1 value".to_string()
                    } else {
                        format!("1 or {channels} values (one per channel)")
                    },
                    found: format!("{} values", values.len()),
                });
            }
            let bad = values
                .iter()
                .find(|v| !v.is_finite() || (field == "std" && **v <= 0.0));
            if let Some(v) = bad {
                return Err(DataError::Normalization {
                    field,
                    expected: if field == "std" {
                        "finite and > 0".into()
                    } else {
                        "finite".into()
                    },
                    found: v.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Per-channel `(scale, offset)` with `y = x * scale + offset` equal to
    /// `(x * pre - mean) / std`.
    fn affine(&self, channels: usize, pre: f32) -> (Vec<f32>, Vec<f32>) {
        let pick = |v: &[f32], ch: usize, default: f32| {
            if v.is_empty() {
                default
            } else {
                v[ch % v.len()]
            }
        };
        (0..channels)
            .map(|ch| {
                let mean = pick(&self.mean, ch, 0.0);
                let std = pick(&self.std, ch, 1.0);
                (pre / std, -mean / std)
            })
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_equals_clone_then_limit() {
        let pixels = Pixels::U8((0..24).collect());
        let ds = Dataset::new("t", pixels, vec![0, 1, 2, 1, 0, 2], [1, 2, 2], vec![]).unwrap();
        assert_eq!(ds.first(4), ds.clone().limit(4));
        assert_eq!(ds.first(4).labels, vec![0, 1, 2, 1]);
        assert_eq!(ds.first(4).num_classes, 3);
        assert_eq!(ds.first(99), ds);
    }
}
