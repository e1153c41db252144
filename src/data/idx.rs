//! Reader for the IDX format of MNIST-style datasets (`train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, raw or gzipped): a big-endian header `00 00 <type> <ndims>`, one u32
//! per dimension, then the data. Only unsigned bytes (type 0x08) are supported: 3-dim (N, H, W) or
//! 4-dim (N, C, H, W) images and 1-dim labels. The declared size is checked against the file
//! before anything is allocated. Depends only on `data::{error, stream, dataset}`.

use std::path::Path;

use super::dataset::{Dataset, Pixels};
use super::error::DataError;
use super::stream::{Stream, checked_len, maybe_gz_bytes, open_maybe_gz};

/// The only IDX element type supported: unsigned byte.
const TYPE_U8: u8 = 0x08;

/// Loads an images file and a labels file (each raw or gzipped) as one dataset.
pub fn load_idx_pair(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let image_data = read_idx_images(images)?;
    let label_values = read_idx_labels(labels)?;
    pair(image_data, label_values, images, labels)
}

/// [`load_idx_pair`] over the contents of the two files, already in memory (each raw or
/// gzipped); `images_path` and `labels_path` name them in errors.
pub fn load_idx_pair_bytes(
    images: &[u8],
    labels: &[u8],
    images_path: &Path,
    labels_path: &Path,
) -> Result<Dataset, DataError> {
    let image_data = read_idx_images_bytes(images, images_path)?;
    let label_values = read_idx_labels_bytes(labels, labels_path)?;
    pair(image_data, label_values, images_path, labels_path)
}

fn pair(
    (pixels, [n, c, h, w]): (Vec<u8>, [usize; 4]),
    label_values: Vec<u32>,
    images: &Path,
    labels: &Path,
) -> Result<Dataset, DataError> {
    if label_values.len() != n {
        return Err(DataError::CountMismatch {
            images: n,
            labels: label_values.len(),
            images_path: images.to_path_buf(),
            labels_path: labels.to_path_buf(),
        });
    }
    Dataset::new(
        images.display().to_string(),
        Pixels::U8(pixels),
        label_values,
        [c, h, w],
        Vec::new(),
    )
}

/// Reads an IDX images file: returns the bytes and `[n, c, h, w]` (c = 1 for a 3-dim file).
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, [usize; 4]), DataError> {
    images(open_maybe_gz(path)?)
}

/// [`read_idx_images`] over a file's contents already in memory (raw or gzipped); `path` names
/// them in errors.
pub fn read_idx_images_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(Vec<u8>, [usize; 4]), DataError> {
    images(maybe_gz_bytes(bytes, path))
}

fn images(stream: Stream<'_>) -> Result<(Vec<u8>, [usize; 4]), DataError> {
    let path = &stream.path().to_path_buf();
    let (dims, data) = read_idx(stream, "IDX images", &[3, 4], "0x00000803 or 0x00000804")?;
    let shape = match dims[..] {
        [n, h, w] => [n, 1, h, w],
        [n, c, h, w] => [n, c, h, w],
        _ => [0; 4], // not produced by `read_idx`; rejected just below
    };
    if shape[1..].contains(&0) {
        return Err(DataError::BadShape {
            expected: "N x H x W or N x C x H x W with non-zero image dimensions",
            found: dims,
            path: path.to_path_buf(),
        });
    }
    if shape[0] == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    // The payload length (the product of all dims) fits in usize, so each dim does too.
    Ok((data, shape.map(|d| d as usize)))
}

/// Reads an IDX labels file (1-dim, u8).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u32>, DataError> {
    labels(open_maybe_gz(path)?)
}

/// [`read_idx_labels`] over a file's contents already in memory (raw or gzipped); `path` names
/// them in errors.
pub fn read_idx_labels_bytes(bytes: &[u8], path: &Path) -> Result<Vec<u32>, DataError> {
    labels(maybe_gz_bytes(bytes, path))
}

fn labels(stream: Stream<'_>) -> Result<Vec<u32>, DataError> {
    let (_, data) = read_idx(stream, "IDX labels", &[1], "0x00000801")?;
    Ok(data.into_iter().map(u32::from).collect())
}

/// Reads the header and the u8 payload of an IDX file with one of `ndims` dimension counts.
fn read_idx(
    mut stream: Stream<'_>,
    format: &'static str,
    ndims: &[u8],
    expected_magic: &'static str,
) -> Result<(Vec<u64>, Vec<u8>), DataError> {
    let path = &stream.path().to_path_buf();
    let magic = stream.read_array::<4>(format)?;
    let bad_magic = || DataError::BadMagic {
        format,
        expected: expected_magic.to_string(),
        found: format!("0x{:08x}", u32::from_be_bytes(magic)),
        path: path.to_path_buf(),
    };
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad_magic());
    }
    let type_name = match magic[2] {
        TYPE_U8 => None,
        0x09 => Some("i8 (0x09)"),
        0x0B => Some("i16 (0x0B)"),
        0x0C => Some("i32 (0x0C)"),
        0x0D => Some("f32 (0x0D)"),
        0x0E => Some("f64 (0x0E)"),
        _ => return Err(bad_magic()),
    };
    if let Some(found) = type_name {
        return Err(DataError::UnsupportedDtype {
            format,
            found: found.to_string(),
            supported: "u8 (0x08)",
            path: path.to_path_buf(),
        });
    }
    if !ndims.contains(&magic[3]) {
        return Err(bad_magic());
    }
    let mut dims = Vec::with_capacity(usize::from(magic[3]));
    for _ in 0..magic[3] {
        dims.push(u64::from(u32::from_be_bytes(
            stream.read_array::<4>(format)?,
        )));
    }
    let Some((_, bytes)) = checked_len(&dims, 1) else {
        return Err(DataError::ShapeOverflow {
            dims,
            path: path.to_path_buf(),
        });
    };
    let data = stream.read_payload(bytes)?;
    Ok((dims, data))
}
