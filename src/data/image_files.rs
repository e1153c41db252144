//! Images kept on disk and decoded when a batch asks for them (the streamed form of an
//! ImageFolder): the file list, the transform that gives every image the same
//! `channels x height x width`, and a fault slot. A batch decodes its images in parallel on
//! rayon's workers; memory holds one batch, whatever the number of images. A file that fails to
//! decode mid-run (it was checked when the folder was opened, so it changed or is corrupt past
//! its header) leaves zeros in its slot and records the error: the loader then stops, and the
//! job that read the data reports it through [`crate::data::Dataset::check`].
//! Depends only on `data::{error, transform}`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::error::DataError;
use super::transform::ImageTransform;

/// Image files of one split, decoded on demand.
#[derive(Debug)]
pub struct ImageFiles {
    paths: Vec<PathBuf>,
    transform: ImageTransform,
    shape: [usize; 3],
    fault: Arc<Mutex<Option<DataError>>>,
}

impl PartialEq for ImageFiles {
    fn eq(&self, other: &Self) -> bool {
        self.paths == other.paths && self.transform == other.transform && self.shape == other.shape
    }
}

impl ImageFiles {
    /// Files that each give a `shape` (`[c, h, w]`) image under `transform`.
    pub(crate) fn new(paths: Vec<PathBuf>, transform: ImageTransform, shape: [usize; 3]) -> Self {
        ImageFiles {
            paths,
            transform,
            shape,
            fault: Arc::default(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Values per decoded image (`c * h * w`).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The image files, in sample order.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The transform applied as each image is decoded.
    pub fn transform(&self) -> ImageTransform {
        self.transform
    }

    /// The first `n` files (sharing the fault slot, so a failure in the copy is seen by both).
    pub(crate) fn first(&self, n: usize) -> ImageFiles {
        ImageFiles {
            paths: self.paths[..n.min(self.paths.len())].to_vec(),
            transform: self.transform,
            shape: self.shape,
            fault: Arc::clone(&self.fault),
        }
    }

    /// Decodes the images at `indices` into `out` (`indices.len()` planar u8 images) and hands
    /// each to `fill(dst, bytes)`. Runs in parallel; a failure records the fault and leaves the
    /// slot untouched.
    pub(crate) fn decode_into<F>(&self, indices: &[usize], out: &mut [f32], fill: F)
    where
        F: Fn(&mut [f32], &[u8]) + Sync,
    {
        let chw = self.image_len().max(1);
        out.par_chunks_mut(chw)
            .zip(indices.par_iter())
            .for_each(|(dst, &i)| match self.decode(i) {
                Ok(bytes) => fill(dst, &bytes),
                Err(e) => self.record(e),
            });
    }

    /// Decodes image `i`: planar `c x h x w` bytes, checked against the expected shape.
    pub(crate) fn decode(&self, i: usize) -> Result<Vec<u8>, DataError> {
        let path = &self.paths[i];
        let bytes = self.transform.load(path, self.shape[0])?;
        if bytes.len() != self.image_len() {
            return Err(DataError::Image {
                error: format!(
                    "its size changed since the folder was opened (expected {}x{} after the \
                     transform)",
                    self.shape[2], self.shape[1]
                ),
                path: path.clone(),
            });
        }
        Ok(bytes)
    }

    fn record(&self, e: DataError) {
        let mut slot = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(e);
    }

    /// True when a decode failed since the last [`ImageFiles::take_fault`].
    pub(crate) fn has_fault(&self) -> bool {
        self.fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The first decode failure since the last call, if any.
    pub(crate) fn take_fault(&self) -> Option<DataError> {
        self.fault.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
