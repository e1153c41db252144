//! Compute kernels: the only module allowed `unsafe`.
//!
//! Today it holds the float GEMM used by every float op (a safe, bounds-checked wrapper over the
//! `gemm` crate's runtime-dispatched AVX2/AVX-512 kernels, with `matrixmultiply` — ndarray's own
//! GEMM — selectable as the baseline for benchmarks). Depends on nothing else in the crate.
//!
//! `int8` is the integer GEMM family (u8 x s8 -> s32, portable / AVX2 / VNNI micro-kernels chosen
//! once at run time, zero-point compensation, requantization, int4 weights); `f16` converts fp16
//! weights to f32 with F16C; `depthwise` is the direct NHWC depthwise convolution (u8 and f32).

pub mod alloc;
pub mod depthwise;
pub mod f16;
pub mod int8;
pub mod round;
pub mod sgemm;

pub use sgemm::{FloatBackend, MatMut, MatRef, float_backend, set_float_backend, sgemm};
