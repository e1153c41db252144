//! Training throughput of seed-cnn (batch 64) on real MNIST: the engine's float GEMM versus the
//! `matrixmultiply` baseline, measured in the same run. `cargo bench --bench train_throughput`.
//! (The same measurement with more options: `qatlas bench train`.)

use qatlas::data::{Normalization, Split, load_split};
use qatlas::kernels::{FloatBackend, set_float_backend};
use qatlas::train::throughput::train_images_per_s;
use qatlas::zoo::Arch;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    qatlas::kernels::alloc::retain_freed_memory();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/mnist");
    let ds = match load_split(&dir, Split::Train) {
        Ok(d) => d.limit(64 * 64),
        Err(e) => {
            eprintln!("train_throughput: cannot load MNIST ({e}); skipping");
            return;
        }
    };
    let norm = Normalization::mnist();
    let mut results = Vec::new();
    for backend in [FloatBackend::Gemm, FloatBackend::MatrixMultiply] {
        set_float_backend(backend);
        let mut best = 0.0f64;
        for r in 0..3 {
            let mut g = Arch::SeedCnn
                .build([1, 28, 28], 10, r)
                .expect("seed-cnn builds");
            best = best
                .max(train_images_per_s(&mut g, &ds, &norm, 64, 10, 100).expect("training step"));
        }
        println!(
            "seed-cnn train, batch 64, {} threads, {backend:?}: {best:.0} img/s",
            rayon::current_num_threads()
        );
        results.push(best);
    }
    println!(
        "ratio gemm / matrixmultiply: {:.2}x",
        results[0] / results[1]
    );
}
