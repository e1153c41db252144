//! The one error type of the `data` module. Every variant that comes from a file names that file
//! last in its message (so a long path does not hide the problem) and carries what was expected
//! and what was found as fields, so callers and tests can match on numbers instead of text.
//! Depends on nothing else in the crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or validating a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read (missing file, permissions, corrupt gzip stream...).
    #[error("cannot read file ({error}): {path}")]
    Io {
        /// The underlying error.
        error: std::io::Error,
        /// The file or directory being read.
        path: PathBuf,
    },

    /// The file does not start with the magic bytes of the expected format.
    #[error("not a {format} file: expected magic {expected}, found {found}: {path}")]
    BadMagic {
        /// Name of the format that was expected ("IDX images", "NPY", ...).
        format: &'static str,
        /// The magic that would have been accepted, in hex.
        expected: String,
        /// The bytes that were found, in hex.
        found: String,
        /// The offending file.
        path: PathBuf,
    },

    /// The header could be read but does not make sense.
    #[error("malformed {format} header ({problem}): {path}")]
    BadHeader {
        /// Name of the format.
        format: &'static str,
        /// What is wrong, for a person.
        problem: String,
        /// The offending file.
        path: PathBuf,
    },

    /// The element type is valid for the format but not supported here.
    #[error("unsupported element type {found} in {format} file (supported: {supported}): {path}")]
    UnsupportedDtype {
        /// Name of the format.
        format: &'static str,
        /// The type found in the header.
        found: String,
        /// The types that are accepted.
        supported: &'static str,
        /// The offending file.
        path: PathBuf,
    },

    /// The array has the wrong number of dimensions, or a zero-sized image dimension.
    #[error("unexpected array shape {found:?} (expected {expected}): {path}")]
    BadShape {
        /// The accepted shapes, for a person ("N x H x W or N x C x H x W").
        expected: &'static str,
        /// The shape declared by the file.
        found: Vec<u64>,
        /// The offending file.
        path: PathBuf,
    },

    /// The product of the declared dimensions (times the element size) does not fit in 64 bits.
    #[error("dimensions {dims:?} overflow the element count: {path}")]
    ShapeOverflow {
        /// The declared dimensions.
        dims: Vec<u64>,
        /// The offending file.
        path: PathBuf,
    },

    /// A header declares more data than the file could plausibly hold (a compressed stream
    /// expands at most ~1032x; no payload may exceed 4 GiB).
    #[error(
        "header declares {declared} bytes of data, more than the {limit} bytes this file could \
         plausibly hold (given its compressed size and the 4 GiB cap): {path}"
    )]
    TooLarge {
        /// Bytes of data declared by the header.
        declared: u64,
        /// The largest size accepted for this file.
        limit: u64,
        /// The offending file.
        path: PathBuf,
    },

    /// The file ends before all the data its header declares.
    #[error("file is truncated: header declares {expected} bytes of data, found {found}: {path}")]
    Truncated {
        /// Bytes of data declared by the header.
        expected: u64,
        /// Bytes of data actually present.
        found: u64,
        /// The offending file.
        path: PathBuf,
    },

    /// The file holds more data than its header declares.
    #[error("file holds more than the {expected} bytes of data its header declares: {path}")]
    TrailingData {
        /// Bytes of data declared by the header.
        expected: u64,
        /// The offending file.
        path: PathBuf,
    },

    /// A float pixel is NaN or infinite (also after conversion from f64 to f32).
    #[error("non-finite pixel value {value} at flat index {index}: {path}")]
    NonFinite {
        /// Row-major index of the first bad element.
        index: usize,
        /// The value as read from the file.
        value: f64,
        /// The offending file.
        path: PathBuf,
    },

    /// A label is negative.
    #[error("negative label {value} at index {index}: {path}")]
    NegativeLabel {
        /// Index of the first bad label.
        index: usize,
        /// The label as read from the file.
        value: i64,
        /// The offending file.
        path: PathBuf,
    },

    /// A label is implausibly large (this is a sanity limit, not a format limit).
    #[error("label {value} at index {index} is larger than the maximum {max}: {path}")]
    LabelTooLarge {
        /// Index of the first bad label.
        index: usize,
        /// The label as read from the file.
        value: u64,
        /// The largest accepted label.
        max: u32,
        /// The offending file.
        path: PathBuf,
    },

    /// The images file and the labels file disagree on the number of samples.
    #[error("{images} images but {labels} labels: images {images_path}, labels {labels_path}")]
    CountMismatch {
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
        /// Where the images came from.
        images_path: PathBuf,
        /// Where the labels came from.
        labels_path: PathBuf,
    },

    /// The dataset has no samples.
    #[error("dataset has no samples: {path}")]
    Empty {
        /// The file or directory that was loaded.
        path: PathBuf,
    },

    /// An `.npz` archive lacks a required array.
    #[error("archive has no array named {expected} (it holds {found:?}): {path}")]
    MissingArray {
        /// The accepted names.
        expected: &'static str,
        /// The arrays that are present.
        found: Vec<String>,
        /// The archive.
        path: PathBuf,
    },

    /// An image could not be decoded.
    #[error("cannot decode image ({error}): {path}")]
    Image {
        /// The decoder's message.
        error: String,
        /// The image file.
        path: PathBuf,
    },

    /// An image's size differs from the first image of the dataset.
    #[error(
        "image is {found:?} (width x height) but the dataset's first image is {expected:?} \
         (give a resize and crop, e.g. the imagenet preset, for images of mixed sizes): {path}"
    )]
    ImageSize {
        /// Width and height of the first image.
        expected: (u32, u32),
        /// Width and height of this image.
        found: (u32, u32),
        /// The odd image.
        path: PathBuf,
    },

    /// A class folder holds no image.
    #[error("class folder has no .png/.jpg/.jpeg image: {path}")]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },

    /// One file of an images/labels pair exists but its companion does not.
    #[error("found {found} but not its companion file: {missing}")]
    MissingCompanion {
        /// The file that exists.
        found: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// The dataset path exists but is not a directory.
    #[error("dataset path is not a directory: {path}")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },

    /// No known dataset layout was found in a directory.
    #[error("no {split} dataset found; looked for {looked_for}: {path}")]
    NotFound {
        /// "train" or "test".
        split: &'static str,
        /// The file names and folders that were tried, for a person.
        looked_for: String,
        /// The directory searched.
        path: PathBuf,
    },

    /// In-memory parts of a dataset do not agree (no file involved).
    #[error("inconsistent dataset {what}: expected {expected}, found {found}: {path}")]
    Inconsistent {
        /// Which quantity disagrees ("pixel count", "label", ...).
        what: &'static str,
        /// The value implied by the other parts.
        expected: u64,
        /// The value given.
        found: u64,
        /// The dataset's source.
        path: PathBuf,
    },

    /// An image transform (resize, crop, preset) is not usable (no file involved).
    #[error("invalid image transform: {problem}")]
    Transform {
        /// What is wrong, for a person.
        problem: String,
    },

    /// A normalization does not fit the data (no file involved).
    #[error("invalid normalization: {field} should be {expected}, found {found}")]
    Normalization {
        /// "mean" or "std".
        field: &'static str,
        /// What was expected, for a person.
        expected: String,
        /// What was found.
        found: String,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub(crate) fn io(error: std::io::Error, path: impl Into<PathBuf>) -> Self {
        DataError::Io {
            error,
            path: path.into(),
        }
    }
}
