//! Pieces shared by subcommands: data arguments (directory, split, limit, normalisation), the
//! built-in asset locations, JSON output and progress bars.

use crate::data::transform::{self, ImageTransform, Preset};
use crate::data::{Dataset, Normalization, Split, load_split_with};
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

/// The folder of built-in assets: `./assets` if present, else the one in the source tree.
pub fn assets_dir() -> PathBuf {
    let local = PathBuf::from("assets");
    if local.join("mnist").is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// The built-in dataset (MNIST).
pub fn default_data_dir() -> PathBuf {
    assets_dir().join("mnist")
}

/// The built-in pretrained model.
pub fn default_model() -> PathBuf {
    assets_dir().join("seed_cnn_mnist.safetensors")
}

/// Dataset split on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum SplitArg {
    Train,
    Test,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        }
    }
}

/// Where data comes from and how it is normalised.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset directory (MNIST-style IDX files, .npz/.npy, or train/ and test/ image folders).
    /// Default: the built-in MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Per-channel mean subtracted after scaling u8 pixels to [0,1] (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Image folders: a preprocessing recipe (`imagenet`: resize 256, centre crop 224,
    /// ImageNet mean/std). --resize, --crop, --mean and --std override its parts.
    #[arg(long)]
    pub preset: Option<String>,
    /// Image folders: resize so the shorter side has this many pixels (bilinear, antialiased).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Image folders: centre crop after resizing, `N` or `HxW`.
    #[arg(long, value_parser = parse_crop)]
    pub crop: Option<(u32, u32)>,
}

/// `224` or `224x192` (height x width).
fn parse_crop(s: &str) -> Result<(u32, u32), String> {
    let side = |t: &str| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not N or HxW (e.g. 224 or 224x192)"))
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((side(h)?, side(w)?)),
        None => side(s).map(|n| (n, n)),
    }
}

impl DataArgs {
    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(default_data_dir)
    }

    fn preset(&self) -> anyhow::Result<Option<Preset>> {
        Ok(match &self.preset {
            Some(name) => Some(transform::preset(name)?),
            None => None,
        })
    }

    /// The resize and crop for image folders: the flags over the preset's.
    pub fn transform(&self) -> anyhow::Result<ImageTransform> {
        let base = self.preset()?.map(|p| p.transform).unwrap_or_default();
        let t = ImageTransform {
            resize: self.resize.or(base.resize),
            crop: self.crop.or(base.crop),
        };
        t.validate()?;
        Ok(t)
    }

    /// Loads a split, keeping the first `limit` samples.
    pub fn load(&self, split: Split, limit: Option<usize>) -> anyhow::Result<Dataset> {
        let dir = self.dir();
        let ds = load_split_with(&dir, split, &self.transform()?)
            .with_context(|| format!("loading {:?} split", split))?;
        Ok(match limit {
            Some(n) => ds.limit(n),
            None => ds,
        })
    }

    /// The normalisation: flags if given, else the preset's, else `fallback` (the model's own,
    /// or MNIST's).
    pub fn normalization(&self, fallback: &Normalization) -> anyhow::Result<Normalization> {
        match (&self.mean, &self.std) {
            (None, None) => Ok(self
                .preset()?
                .map_or_else(|| fallback.clone(), |p| p.normalization)),
            (Some(m), Some(s)) => Ok(Normalization {
                mean: m.clone(),
                std: s.clone(),
            }),
            _ => anyhow::bail!("--mean and --std go together"),
        }
    }
}

/// The batch size: `arg` if given, else up to 250 images and about 4M input values (a
/// 224x224 RGB batch holds 27 images), so activation memory stays bounded at any image size.
pub fn batch_for(arg: Option<usize>, ds: &Dataset) -> usize {
    arg.unwrap_or_else(|| {
        let chw = ds.image_shape().iter().product::<usize>().max(1);
        ((4 << 20) / chw).clamp(1, 250)
    })
}

/// Prints one JSON object on stdout.
pub fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    let style =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(what.to_string());
    pb
}

/// Arguments of the studio window.
#[derive(Args, Debug, Clone, Default)]
pub struct GuiArgs {
    /// Model to open (default: the built-in pretrained seed-cnn).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Dataset directory (default: the built-in MNIST).
    #[arg(long)]
    pub data: Option<PathBuf>,
}
