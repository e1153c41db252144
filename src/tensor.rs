//! The dense tensor type used by the engine: an `ndarray` `ArrayD<f32>` in standard (row-major,
//! NCHW for images) layout. Helpers here keep slices contiguous for the kernels.
//! Depends on nothing else in the crate.

use ndarray::{ArrayD, IxDyn};

/// A dense f32 tensor, row-major. Images are N x C x H x W.
pub type Tensor = ArrayD<f32>;

/// A tensor of zeros with the given shape.
pub fn zeros(shape: &[usize]) -> Tensor {
    ArrayD::zeros(IxDyn(shape))
}

/// Builds a tensor from a shape and row-major data. Panics only on a programming error (the
/// caller computed the data length itself); never call it with untrusted lengths.
pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Tensor {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("tensor data length matches its shape")
}

/// Returns the tensor in standard layout (a cheap move when it already is).
pub fn standard(t: Tensor) -> Tensor {
    if t.is_standard_layout() {
        t
    } else {
        t.as_standard_layout().into_owned()
    }
}

/// Contiguous view of a standard-layout tensor.
pub fn slice(t: &Tensor) -> &[f32] {
    t.as_slice()
        .expect("engine tensors are kept in standard layout")
}

/// Mutable contiguous view of a standard-layout tensor.
pub fn slice_mut(t: &mut Tensor) -> &mut [f32] {
    t.as_slice_mut()
        .expect("engine tensors are kept in standard layout")
}
