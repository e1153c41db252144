//! Build script: generates the ONNX protobuf message types (`ModelProto`, `GraphProto`, ...) from
//! the vendored `proto/onnx.proto3` with pure-Rust tools: `protox` parses the schema into a
//! descriptor set and `prost-build` turns it into Rust structs in `$OUT_DIR/onnx.rs`, included by
//! `src/io/onnx/proto.rs`. No system `protoc` is needed. Runs only when the schema changes
//! (a few hundred milliseconds).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto3");
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile(["onnx.proto3"], ["proto"])?;
    // The schema's comments are prose with indented diagrams that rustdoc would run as doctests;
    // proto/onnx.proto3 itself is the documentation.
    prost_build::Config::new()
        .disable_comments(["."])
        .compile_fds(fds)?;
    Ok(())
}
