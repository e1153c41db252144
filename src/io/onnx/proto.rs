//! The ONNX protobuf messages (`ModelProto`, `GraphProto`, `NodeProto`, `TensorProto`, ...),
//! generated at build time by `build.rs` (protox + prost-build) from the vendored
//! `proto/onnx.proto3`. Nothing but generated code lives here.

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
