//! Integer GEMM: `C[M,N] = A[M,K](u8) · B[K,N](s8)` accumulated in s32, with the u8/s8 zero-point
//! compensation and a fused requantization epilogue (bias, fixed-point multiplier, ReLU/ReLU6
//! clamps) down to u8/s8.
//!
//! B holds weights: it is packed once ([`PackedB`], from s8, or from int4 packed two per byte)
//! for one micro-kernel; A (activations) is packed per call, block by block, inside the driver.
//! Micro-kernels form a small family named `{isa}_mmm_{types}_{mr}x{nr}` (see [`MmmKernel`]); one
//! is chosen once per process at run time ([`selected_kernel`]), and `QATLAS_KERNEL=portable|
//! avx2|avxvnni|avx512vnni|amx` forces a path (an error names what is missing when the CPU cannot
//! run it). Every fast kernel has a portable reference over the same packed layout and is tested
//! bit-exact against it. The design note `X86_64_INT8_GEMM.md` beside this file explains the
//! tile shapes, packing layouts, saturation handling and which paths were verified on hardware.
//!
//! Depends on nothing else in the crate but `kernels::round` (rayon for threads only).
//!
//! ```
//! use qatlas::kernels::int8::{BLayout, PackedB, Parallelism, gemm_u8s8_i32};
//! // A: 2x3 u8, B: 3x2 s8 (row-major K x N).
//! let a = [1u8, 2, 3, 4, 5, 6];
//! let b = [1i8, -1, 2, -2, 3, -3];
//! let packed = PackedB::new(&b, 3, 2, BLayout::KxN).unwrap();
//! let mut c = [0i32; 4];
//! gemm_u8s8_i32(&a, 2, &packed, &mut c, Parallelism::Sequential).unwrap();
//! assert_eq!(c, [14, -14, 32, -32]);
//! ```

pub mod amx;
mod avx2;
mod dispatch;
mod error;
mod float_requant;
mod gemm;
pub mod int4;
mod pack;
pub mod path_peak;
pub mod peak;
pub mod portable;
mod requant;
mod vnni;

pub use dispatch::{
    KERNEL_ENV, KernelPath, MmmKernel, PackFormat, best_available_kernel, select_kernel,
    selected_kernel,
};
pub use error::Int8Error;
pub(crate) use float_requant::float_requant_row_portable;
pub use gemm::{
    FloatRequant, Parallelism, gemm_u8s8_i32, gemm_u8s8_i32_zp, gemm_u8s8_requant,
    gemm_u8s8_requant_f32,
};
pub use int4::Int4Kind;
pub use pack::{BLayout, PackedB, Weights};
pub use requant::{
    Activation, FixedMultiplier, QuantOutput, Requant, requant_row, requant_row_reference,
};
