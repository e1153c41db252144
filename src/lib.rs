//! qatlas: a quantization studio for neural networks.
//!
//! The library holds everything; `main.rs` only parses arguments and starts the studio window
//! (feature `gui`) or a headless subcommand. Layers, from the bottom up (arrows point down only):
//! `app`/`cli` -> `project` -> `jobs` -> `train`/`io` -> `graph` -> `ops` -> `kernels`, with `data` beside
//! `kernels` at the bottom. Nothing below `app` knows egui. See `ARCHITECTURE.md`.
//! `unsafe` is denied everywhere but in `kernels` (SIMD intrinsics and the GEMM writes).

#![deny(unsafe_code)]

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod data;
pub mod graph;
pub mod io;
pub mod jobs;
#[allow(unsafe_code)]
pub mod kernels;
pub mod ops;
pub mod panics;
pub mod project;
pub mod quant;
pub mod runtime;
pub mod tensor;
pub mod train;
pub mod zoo;

#[cfg(feature = "gui")]
pub mod app;
