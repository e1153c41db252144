//! NumPy datasets: a pair of `.npy` files (`{split}_images.npy` + `{split}_labels.npy`) or one
//! `.npz` archive (`{split}.npz`) holding arrays named `images`/`x` and `labels`/`y`. Images are
//! u8, f32 or f64 (converted to f32; every value must be finite), shaped N x H x W or
//! N x C x H x W; labels are any integer type, non-negative. The `npyz` crate opens the zip
//! container; headers are parsed by `npy_header` with checked arithmetic, and the declared size
//! is checked against the file (or zip entry) before the data is read.
//! Depends only on `data::{error, stream, npy_header, dataset}`.

use std::fs::File;
use std::io::{BufReader, Cursor, ErrorKind, Read, Seek};
use std::path::Path;

use super::dataset::{Dataset, MAX_LABEL, Pixels};
use super::error::DataError;
use super::npy_header::{Dtype, Header, Kind, read_header};
use super::stream::{MAX_DEFLATE_RATIO, Stream, checked_len};

/// Array names accepted for images in an `.npz` archive, in order of preference.
const IMAGE_NAMES: [&str; 2] = ["images", "x"];
/// Array names accepted for labels in an `.npz` archive, in order of preference.
const LABEL_NAMES: [&str; 2] = ["labels", "y"];

/// A decoded `.npy` array: header plus raw little/big-endian bytes.
struct Array {
    header: Header,
    /// Number of elements (product of the shape).
    len: usize,
    data: Vec<u8>,
}

/// Loads `images.npy` + `labels.npy` as one dataset.
pub fn load_npy_pair(images: &Path, labels: &Path) -> Result<Dataset, DataError> {
    let image_array = read_npy_file(images)?;
    let (pixels, shape) = to_pixels(image_array, images)?;
    let label_values = to_labels(read_npy_file(labels)?, labels)?;
    finish(images, labels, pixels, shape, label_values)
}

/// [`load_npy_pair`] over the contents of the two `.npy` files, already in memory;
/// `images_path` and `labels_path` name them in errors.
pub fn load_npy_pair_bytes(
    images: &[u8],
    labels: &[u8],
    images_path: &Path,
    labels_path: &Path,
) -> Result<Dataset, DataError> {
    let image_array = read_npy_bytes(images, images_path)?;
    let (pixels, shape) = to_pixels(image_array, images_path)?;
    let label_values = to_labels(read_npy_bytes(labels, labels_path)?, labels_path)?;
    finish(images_path, labels_path, pixels, shape, label_values)
}

/// Loads an `.npz` archive holding an images array (`images` or `x`) and a labels array
/// (`labels` or `y`).
pub fn load_npz(path: &Path) -> Result<Dataset, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(e, path))?;
    let archive_len = file.metadata().map_err(|e| DataError::io(e, path))?.len();
    read_npz(BufReader::with_capacity(1 << 16, file), archive_len, path)
}

/// [`load_npz`] over an archive's contents already in memory (`path` names it in errors).
pub fn load_npz_bytes(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    read_npz(Cursor::new(bytes), bytes.len() as u64, path)
}

/// Reads the dataset arrays of an `.npz` archive of `archive_len` bytes.
fn read_npz<R: Read + Seek>(
    reader: R,
    archive_len: u64,
    path: &Path,
) -> Result<Dataset, DataError> {
    let mut archive = npyz::npz::NpzArchive::new(reader).map_err(|e| {
        if e.kind() == ErrorKind::InvalidData {
            DataError::BadHeader {
                format: "NPZ (zip)",
                problem: e.to_string(),
                path: path.to_path_buf(),
            }
        } else {
            DataError::io(e, path)
        }
    })?;
    let names: Vec<String> = archive.array_names().map(str::to_string).collect();
    let pick = |wanted: &[&str], expected: &'static str| {
        wanted
            .iter()
            .find(|w| names.iter().any(|n| n == *w))
            .map(|w| w.to_string())
            .ok_or_else(|| DataError::MissingArray {
                expected,
                found: names.clone(),
                path: path.to_path_buf(),
            })
    };
    let image_name = pick(&IMAGE_NAMES, "'images' or 'x'")?;
    let label_name = pick(&LABEL_NAMES, "'labels' or 'y'")?;

    let images_path = path.join(format!("{image_name}.npy"));
    let labels_path = path.join(format!("{label_name}.npy"));
    let image_array = read_npz_entry(&mut archive, &image_name, archive_len, &images_path)?;
    let (pixels, shape) = to_pixels(image_array, &images_path)?;
    let label_array = read_npz_entry(&mut archive, &label_name, archive_len, &labels_path)?;
    let label_values = to_labels(label_array, &labels_path)?;
    let mut ds = finish(&images_path, &labels_path, pixels, shape, label_values)?;
    ds.source = path.display().to_string();
    Ok(ds)
}

fn finish(
    images: &Path,
    labels: &Path,
    pixels: Pixels,
    [n, c, h, w]: [usize; 4],
    label_values: Vec<u32>,
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
        pixels,
        label_values,
        [c, h, w],
        Vec::new(),
    )
}

fn read_npy_file(path: &Path) -> Result<Array, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(e, path))?;
    let len = file.metadata().map_err(|e| DataError::io(e, path))?.len();
    let reader = BufReader::with_capacity(1 << 16, file);
    read_array(Stream::new(Box::new(reader), Some(len), len, len, path))
}

fn read_npy_bytes(bytes: &[u8], path: &Path) -> Result<Array, DataError> {
    let len = bytes.len() as u64;
    read_array(Stream::new(Box::new(bytes), Some(len), len, len, path))
}

fn read_npz_entry<R: Read + Seek>(
    archive: &mut npyz::npz::NpzArchive<R>,
    name: &str,
    archive_len: u64,
    shown_path: &Path,
) -> Result<Array, DataError> {
    let entry = archive
        .zip_archive()
        .by_name(&npyz::npz::file_name_from_array_name(name))
        .map_err(|e| DataError::BadHeader {
            format: "NPZ (zip)",
            problem: e.to_string(),
            path: shown_path.to_path_buf(),
        })?;
    // The sizes come from the zip directory and may lie: bound them by the archive's real size.
    let packed = entry.compressed_size().min(archive_len);
    let size = entry.size();
    let cap = size.min(packed.saturating_mul(MAX_DEFLATE_RATIO));
    read_array(Stream::new(
        Box::new(entry),
        Some(size),
        cap,
        packed,
        shown_path,
    ))
}

fn read_array(mut stream: Stream<'_>) -> Result<Array, DataError> {
    let header = read_header(&mut stream)?;
    let path = stream.path().to_path_buf();
    let Some((len, bytes)) = checked_len(&header.shape, header.dtype.size as u64) else {
        return Err(DataError::ShapeOverflow {
            dims: header.shape,
            path,
        });
    };
    if header.fortran_order && header.shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(DataError::BadHeader {
            format: "NPY",
            problem: "Fortran-order arrays are not supported (save with np.ascontiguousarray)"
                .into(),
            path,
        });
    }
    let data = stream.read_payload(bytes)?;
    Ok(Array { header, len, data })
}

/// Converts an images array to pixels and `[n, c, h, w]`.
fn to_pixels(array: Array, path: &Path) -> Result<(Pixels, [usize; 4]), DataError> {
    let shape = &array.header.shape;
    let dims = match shape[..] {
        [n, h, w] => [n, 1, h, w],
        [n, c, h, w] => [n, c, h, w],
        _ => [0; 4],
    };
    if dims[1..].contains(&0) {
        return Err(DataError::BadShape {
            expected: "N x H x W or N x C x H x W with non-zero image dimensions",
            found: shape.clone(),
            path: path.to_path_buf(),
        });
    }
    if dims[0] == 0 {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    // Every dim divides the element count, which fits in usize.
    let dims = dims.map(|d| d as usize);
    let Dtype {
        kind,
        size,
        big_endian,
        ..
    } = array.header.dtype;
    let pixels = match (kind, size) {
        (Kind::Uint, 1) => Pixels::U8(array.data),
        (Kind::Float, 4) => Pixels::F32(floats(&array.data, array.len, path, |b| {
            let b = [b[0], b[1], b[2], b[3]];
            f64::from(if big_endian {
                f32::from_be_bytes(b)
            } else {
                f32::from_le_bytes(b)
            })
        })?),
        (Kind::Float, 8) => Pixels::F32(floats(&array.data, array.len, path, |b| {
            let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            if big_endian {
                f64::from_be_bytes(b)
            } else {
                f64::from_le_bytes(b)
            }
        })?),
        _ => {
            return Err(DataError::UnsupportedDtype {
                format: "NPY images",
                found: array.header.dtype.descr,
                supported: "u1, f4, f8",
                path: path.to_path_buf(),
            });
        }
    };
    Ok((pixels, dims))
}

/// Decodes `len` floats of `data.len() / len` bytes each, rejecting the first value that is
/// not finite as f32 (an f64 beyond the f32 range included).
fn floats(
    data: &[u8],
    len: usize,
    path: &Path,
    decode: impl Fn(&[u8]) -> f64,
) -> Result<Vec<f32>, DataError> {
    let size = data.len() / len.max(1);
    let mut out = Vec::with_capacity(len);
    for (index, chunk) in data.chunks_exact(size.max(1)).enumerate() {
        let value = decode(chunk);
        let narrowed = value as f32;
        if !narrowed.is_finite() {
            return Err(DataError::NonFinite {
                index,
                value,
                path: path.to_path_buf(),
            });
        }
        out.push(narrowed);
    }
    Ok(out)
}

/// Converts a labels array (any integer type, shape (N,) or (N, 1)) to u32 labels.
fn to_labels(array: Array, path: &Path) -> Result<Vec<u32>, DataError> {
    let shape = &array.header.shape;
    if !matches!(shape[..], [_] | [_, 1]) {
        return Err(DataError::BadShape {
            expected: "N or N x 1",
            found: shape.clone(),
            path: path.to_path_buf(),
        });
    }
    let Dtype {
        kind,
        size,
        big_endian,
        ..
    } = array.header.dtype;
    if kind == Kind::Float {
        return Err(DataError::UnsupportedDtype {
            format: "NPY labels",
            found: array.header.dtype.descr,
            supported: "integer types (i1, i2, i4, i8, u1, u2, u4, u8)",
            path: path.to_path_buf(),
        });
    }
    let mut labels = Vec::with_capacity(array.len);
    for (index, chunk) in array.data.chunks_exact(size).enumerate() {
        let mut raw = 0u64;
        let mut push = |b: &u8| raw = (raw << 8) | u64::from(*b);
        if big_endian {
            chunk.iter().for_each(&mut push);
        } else {
            chunk.iter().rev().for_each(&mut push);
        }
        let shift = 64 - 8 * size as u32;
        let signed = ((raw << shift) as i64) >> shift;
        if kind == Kind::Int && signed < 0 {
            return Err(DataError::NegativeLabel {
                index,
                value: signed,
                path: path.to_path_buf(),
            });
        }
        match u32::try_from(raw) {
            Ok(v) if v <= MAX_LABEL => labels.push(v),
            _ => {
                return Err(DataError::LabelTooLarge {
                    index,
                    value: raw,
                    max: MAX_LABEL,
                    path: path.to_path_buf(),
                });
            }
        }
    }
    Ok(labels)
}
