//! The evaluation transform of torchvision for image files: resize so that the shorter side has a
//! given length (bilinear with antialiasing, as PIL's `BILINEAR`; the longer side is
//! `floor(size * long / short)`), then a centre crop (offsets rounded half to even like Python's
//! `round`; a crop larger than the image pads with zeros, as `CenterCrop` does). Channel
//! handling: 8-bit gray stays one channel, anything with colour becomes RGB (alpha dropped).
//! Presets name the usual recipes (`imagenet`: resize 256, crop 224, ImageNet mean/std).
//! Depends only on `data::{error, dataset}`, `panics` and the `image` crate.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::DynamicImage;
use image::imageops::FilterType;

use super::dataset::Normalization;
use super::error::DataError;

/// Resize and crop applied to every image file as it is decoded.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ImageTransform {
    /// Length of the shorter side after resizing (aspect ratio kept); `None` keeps the size.
    #[serde(default)]
    pub resize: Option<u32>,
    /// Centre crop `(height, width)` after resizing; `None` keeps the whole image.
    #[serde(default)]
    pub crop: Option<(u32, u32)>,
}

/// Largest side a transform may ask for (a sanity limit on hand-written settings).
pub const MAX_SIDE: u32 = 4096;

impl ImageTransform {
    /// No resize and no crop: every image must already have the same size.
    pub fn none() -> Self {
        Self::default()
    }

    /// torchvision's ImageNet evaluation transform: `Resize(256)`, `CenterCrop(224)`.
    pub fn imagenet() -> Self {
        ImageTransform {
            resize: Some(256),
            crop: Some((224, 224)),
        }
    }

    /// True when images are used as they are.
    pub fn is_none(&self) -> bool {
        self.resize.is_none() && self.crop.is_none()
    }

    /// Checks the sizes: each positive and at most [`MAX_SIDE`].
    pub fn validate(&self) -> Result<(), DataError> {
        let sides = self
            .resize
            .into_iter()
            .chain(self.crop.into_iter().flat_map(|(h, w)| [h, w]));
        for side in sides {
            if side == 0 || side > MAX_SIDE {
                return Err(DataError::Transform {
                    problem: format!("a side of {side} pixels (allowed 1 to {MAX_SIDE})"),
                });
            }
        }
        Ok(())
    }

    /// The `(height, width)` an image of `(height, width)` has after this transform.
    pub fn output_size(&self, size: (u32, u32)) -> (u32, u32) {
        if let Some(c) = self.crop {
            return c;
        }
        self.resized(size)
    }

    /// The size after the resize step alone.
    fn resized(&self, (h, w): (u32, u32)) -> (u32, u32) {
        let Some(s) = self.resize else {
            return (h, w);
        };
        let long = |long: u32, short: u32| {
            (u64::from(s) * u64::from(long) / u64::from(short.max(1))) as u32
        };
        if h <= w {
            (s, long(w, h).max(1))
        } else {
            (long(h, w).max(1), s)
        }
    }

    /// Decodes `path` and applies the transform: planar `channels x H x W` bytes. `channels`
    /// 1 keeps luma (colour images are converted), 3 gives RGB (gray images are replicated).
    pub fn load(&self, path: &Path, channels: usize) -> Result<Vec<u8>, DataError> {
        let image = decode(path)?;
        Ok(self.apply(image, channels))
    }

    /// [`ImageTransform::load`] over an image file's contents already in memory (`path` names
    /// the file in errors).
    pub fn load_bytes(
        &self,
        bytes: &[u8],
        path: &Path,
        channels: usize,
    ) -> Result<Vec<u8>, DataError> {
        let image = decode_bytes(bytes, path)?;
        Ok(self.apply(image, channels))
    }

    /// Applies the transform to a decoded image (see [`ImageTransform::load`]).
    pub fn apply(&self, image: DynamicImage, channels: usize) -> Vec<u8> {
        let (h, w) = (image.height(), image.width());
        let (rh, rw) = self.resized((h, w));
        let image = if (rh, rw) == (h, w) {
            image
        } else if channels == 1 {
            DynamicImage::ImageLuma8(image::imageops::resize(
                &image.into_luma8(),
                rw,
                rh,
                FilterType::Triangle,
            ))
        } else {
            DynamicImage::ImageRgb8(image::imageops::resize(
                &image.into_rgb8(),
                rw,
                rh,
                FilterType::Triangle,
            ))
        };
        let (ch, cw) = self.crop.unwrap_or((rh, rw));
        let (top, left) = (crop_offset(rh, ch), crop_offset(rw, cw));
        let plane = ch as usize * cw as usize;
        let mut out = vec![0u8; channels * plane];
        let (bytes, step) = if channels == 1 {
            (image.into_luma8().into_raw(), 1)
        } else {
            (image.into_rgb8().into_raw(), 3)
        };
        let row = rw as usize * step;
        for y in 0..ch as i64 {
            let sy = y + top;
            if sy < 0 || sy >= i64::from(rh) {
                continue;
            }
            for x in 0..cw as i64 {
                let sx = x + left;
                if sx < 0 || sx >= i64::from(rw) {
                    continue;
                }
                let src = sy as usize * row + sx as usize * step;
                let dst = y as usize * cw as usize + x as usize;
                for c in 0..channels {
                    out[c * plane + dst] = bytes[src + c];
                }
            }
        }
        out
    }
}

/// Where a centre crop of `crop` starts in `size`: `round((size - crop) / 2)` with Python's
/// rounding (half to even); negative when the crop is larger (zero padding on both sides, the
/// extra pixel of an odd difference on the far side, as torchvision pads).
fn crop_offset(size: u32, crop: u32) -> i64 {
    let d = i64::from(size) - i64::from(crop);
    if d >= 0 {
        // round(d / 2): d odd means x.5, rounded to the even neighbour.
        let half = d / 2;
        if d % 2 == 1 && half % 2 == 1 {
            half + 1
        } else {
            half
        }
    } else {
        -((-d) / 2)
    }
}

/// Opens an image file with its format guessed from the content (the `image` crate's default
/// limits refuse headers that need more than 512 MiB; [`MAX_IMAGE_PIXELS`] caps the pixels).
fn reader(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>, DataError> {
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(e, path))?
        .with_guessed_format()
        .map_err(|e| DataError::io(e, path))
}

/// An image file's contents already in memory, format guessed from the content.
fn bytes_reader(bytes: &[u8]) -> image::ImageReader<Cursor<&[u8]>> {
    // Guessing reads from a slice, which cannot fail; without a guess decoding reports the
    // unknown format.
    let reader = image::ImageReader::new(Cursor::new(bytes));
    match reader.with_guessed_format() {
        Ok(r) => r,
        Err(_) => image::ImageReader::new(Cursor::new(bytes)),
    }
}

fn image_error(e: image::ImageError, path: &Path) -> DataError {
    DataError::Image {
        error: e.to_string(),
        path: path.to_path_buf(),
    }
}

/// Decodes one image file.
pub(crate) fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    decode_with(reader(path)?, path)
}

/// Decodes one image file's contents already in memory (PNG or JPEG, by content; `path` names
/// the file in errors).
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<DynamicImage, DataError> {
    decode_with(bytes_reader(bytes), path)
}

/// Decodes with the `image` crate. A decoder that panics on a malformed file (found by fuzzing:
/// zune-jpeg 0.5's AVX2 IDCT unwraps a short block on a crafted JPEG) is caught here and
/// reported as that file's error, so one bad file in a folder never takes the program down.
fn decode_with<R: BufRead + Seek>(
    reader: image::ImageReader<R>,
    path: &Path,
) -> Result<DynamicImage, DataError> {
    let decode = || {
        use image::ImageDecoder;
        let decoder = reader.into_decoder().map_err(|e| image_error(e, path))?;
        check_pixels(decoder.dimensions(), path)?;
        DynamicImage::from_decoder(decoder).map_err(|e| image_error(e, path))
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(decoded) => decoded,
        Err(panic) => Err(DataError::Image {
            error: format!(
                "the image decoder failed on this file ({})",
                crate::panics::panic_message(&*panic)
            ),
            path: path.to_path_buf(),
        }),
    }
}

/// Reads only the header of an image file: `(height, width, has_colour)`.
pub(crate) fn probe(path: &Path) -> Result<(u32, u32, bool), DataError> {
    probe_with(reader(path)?, path)
}

/// [`probe`] over an image file's contents already in memory: `(height, width, has_colour)`.
pub fn probe_bytes(bytes: &[u8], path: &Path) -> Result<(u32, u32, bool), DataError> {
    probe_with(bytes_reader(bytes), path)
}

fn probe_with<R: BufRead + Seek>(
    reader: image::ImageReader<R>,
    path: &Path,
) -> Result<(u32, u32, bool), DataError> {
    use image::ImageDecoder;
    let decoder = reader.into_decoder().map_err(|e| image_error(e, path))?;
    let (w, h) = decoder.dimensions();
    check_pixels((w, h), path)?;
    Ok((h, w, decoder.color_type().has_color()))
}

/// The most pixels an image file may declare (as Pillow's decompression-bomb limit, 2 x 89.5 M,
/// rounded down): a crafted header cannot make a worker decode for minutes; no photograph a
/// classifier is evaluated on comes close.
pub const MAX_IMAGE_PIXELS: u64 = 150_000_000;

fn check_pixels((w, h): (u32, u32), path: &Path) -> Result<(), DataError> {
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_IMAGE_PIXELS {
        return Err(DataError::Image {
            error: format!(
                "the header declares {w} x {h} = {pixels} pixels; qatlas decodes images of at \
                 most {MAX_IMAGE_PIXELS} pixels"
            ),
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// A named preprocessing recipe: transform plus normalisation.
#[derive(Clone, Debug, PartialEq)]
pub struct Preset {
    /// The name used on the command line and in the window.
    pub name: &'static str,
    /// Resize and crop.
    pub transform: ImageTransform,
    /// Mean and standard deviation.
    pub normalization: Normalization,
}

/// The presets qatlas knows.
pub fn presets() -> Vec<Preset> {
    vec![Preset {
        name: "imagenet",
        transform: ImageTransform::imagenet(),
        normalization: Normalization::imagenet(),
    }]
}

/// The preset called `name`, or an error listing the known ones.
pub fn preset(name: &str) -> Result<Preset, DataError> {
    let all = presets();
    let known: Vec<&str> = all.iter().map(|p| p.name).collect();
    all.iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .cloned()
        .ok_or_else(|| DataError::Transform {
            problem: format!("unknown preset {name:?} (known: {})", known.join(", ")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_torchvision() {
        let t = ImageTransform {
            resize: Some(256),
            crop: None,
        };
        // torchvision: Resize(256) of a 375 x 500 (h x w) image gives 256 x 341.
        assert_eq!(t.output_size((375, 500)), (256, 341));
        assert_eq!(t.output_size((500, 375)), (341, 256));
        assert_eq!(t.output_size((300, 300)), (256, 256));
        assert_eq!(
            ImageTransform::imagenet().output_size((375, 500)),
            (224, 224)
        );
        assert_eq!(ImageTransform::none().output_size((7, 9)), (7, 9));
    }

    #[test]
    fn crop_offsets_round_half_to_even() {
        // Python: round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(58.5) = 58.
        assert_eq!(crop_offset(11, 10), 0);
        assert_eq!(crop_offset(13, 10), 2);
        assert_eq!(crop_offset(15, 10), 2);
        assert_eq!(crop_offset(341, 224), 58);
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(8, 11), -1);
    }

    #[test]
    fn crop_takes_the_centre_and_pads_with_zeros() {
        let img = image::GrayImage::from_fn(5, 4, |x, y| image::Luma([(10 * y + x) as u8]));
        let t = ImageTransform {
            resize: None,
            crop: Some((2, 3)),
        };
        let out = t.apply(DynamicImage::ImageLuma8(img.clone()), 1);
        assert_eq!(out, vec![11, 12, 13, 21, 22, 23]);
        let pad = ImageTransform {
            resize: None,
            crop: Some((6, 5)),
        };
        let out = pad.apply(DynamicImage::ImageLuma8(img), 1);
        assert_eq!(&out[..5], &[0; 5]);
        assert_eq!(&out[5..10], &[0, 1, 2, 3, 4]);
        // RGB output is planar.
        let rgb = image::RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8, 10 + x as u8, 20]));
        let out = ImageTransform::none().apply(DynamicImage::ImageRgb8(rgb), 3);
        assert_eq!(out, vec![0, 1, 10, 11, 20, 20]);
    }

    #[test]
    fn resize_keeps_a_constant_image_constant() {
        let img = image::RgbImage::from_pixel(50, 40, image::Rgb([200, 100, 7]));
        let t = ImageTransform {
            resize: Some(16),
            crop: Some((16, 16)),
        };
        let out = t.apply(DynamicImage::ImageRgb8(img), 3);
        assert_eq!(out.len(), 3 * 256);
        assert!(out[..256].iter().all(|&v| v == 200));
        assert!(out[512..].iter().all(|&v| v == 7));
    }

    #[test]
    fn bad_settings_are_refused() {
        let zero = ImageTransform {
            resize: Some(0),
            crop: None,
        };
        assert!(zero.validate().is_err());
        let huge = ImageTransform {
            resize: None,
            crop: Some((10, MAX_SIDE + 1)),
        };
        assert!(huge.validate().is_err());
        assert!(ImageTransform::imagenet().validate().is_ok());
        assert!(preset("ImageNet").is_ok());
        let e = preset("cifar").unwrap_err().to_string();
        assert!(e.contains("imagenet"), "{e}");
    }
}
