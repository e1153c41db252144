//! Hostile headers must be rejected before anything large is allocated. This test binary counts
//! the largest single allocation through a global allocator, which is why it is a file of its
//! own with a single test (nothing else runs concurrently in the process while it measures).
//!
//! The `unsafe` below is test scaffolding only: a `GlobalAlloc` cannot be written without it, and
//! it merely forwards to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;
use qatlas::data::{DataError, Split, load_split};

/// Largest single allocation (or reallocation target) since the last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the only addition is an atomic counter update.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged, see the impl comment.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged, see the impl comment.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged, see the impl comment.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded unchanged, see the impl comment.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// No single allocation while rejecting a bad file may exceed this.
const BUDGET: usize = 1 << 20;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn npy_bytes(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// A PNG whose header declares `w` x `h` 8-bit gray pixels and which holds no image data.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut crc = flate2::Crc::new();
    crc.update(&ihdr);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// [`png_header_only`] followed by an empty IDAT chunk and IEND: the header reads (the decoder
/// stops at the first IDAT), the pixels are missing.
fn png_without_pixels(w: u32, h: u32) -> Vec<u8> {
    let mut out = png_header_only(w, h);
    for name in [b"IDAT", b"IEND"] {
        let mut crc = flate2::Crc::new();
        crc.update(name);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    out
}

/// Loads the train split of `dir`, returning the error, and checks time and allocation.
fn reject(dir: &Path, case: &str) -> DataError {
    LARGEST.store(0, Ordering::Relaxed);
    let result = load_split(dir, Split::Train);
    let largest = LARGEST.load(Ordering::Relaxed);
    let e = match result {
        Ok(ds) => panic!("{case}: loaded {} samples from a malformed file", ds.len()),
        Err(e) => e,
    };
    assert!(
        largest <= BUDGET,
        "{case}: allocated {largest} bytes at once ({e})"
    );
    e
}

#[test]
fn hostile_headers_are_rejected_without_large_allocations() {
    let labels = idx_bytes(&[1], &[0]);

    // IDX declaring 10^12 bytes in a 100-byte file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx_bytes(&[1_000_000, 1000, 1000], &[0; 84]),
    )
    .unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
    let e = reject(dir.path(), "raw IDX, 10^12 bytes declared");
    assert!(matches!(e, DataError::Truncated { .. }), "{e}");

    // Gzipped IDX declaring 4 GiB - 1 from a tiny stream: beyond the deflate ratio.
    let dir = tempfile::tempdir().unwrap();
    let body = gz(&idx_bytes(&[65535, 65535, 1], &[0; 100]));
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), &body).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
    let e = reject(dir.path(), "gzipped IDX, 4 GiB declared");
    assert!(matches!(e, DataError::TooLarge { .. }), "{e}");

    // Gzipped IDX whose declared size is plausible for its compressed size (incompressible
    // bytes, 64 KiB on disk, ~60 MB allowed) but whose stream ends after 64 KiB: the buffer
    // grows only with the bytes that really arrive.
    let dir = tempfile::tempdir().unwrap();
    let mut state = 12345u32;
    let noise: Vec<u8> = (0..65536)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let body = gz(&idx_bytes(&[50, 1000, 1000], &noise));
    std::fs::write(dir.path().join("train-images-idx3-ubyte.gz"), &body).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte"), &labels).unwrap();
    let e = reject(dir.path(), "gzipped IDX, plausible size, short stream");
    assert!(
        matches!(
            e,
            DataError::Truncated {
                expected: 50_000_000,
                found: 65536,
                ..
            }
        ),
        "{e}"
    );

    // .npy declaring 4e12 bytes; then a version-2 header declaring a 4 GiB header.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train_images.npy"),
        npy_bytes("<f4", "(1000000, 1000, 1000)", &[0; 16]),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("train_labels.npy"),
        npy_bytes("|u1", "(1,)", &[0]),
    )
    .unwrap();
    let e = reject(dir.path(), ".npy, 4e12 bytes declared");
    assert!(matches!(e, DataError::Truncated { .. }), "{e}");
    let mut v2 = b"\x93NUMPY\x02\x00\xff\xff\xff\xff{".to_vec();
    v2.extend_from_slice(&[b' '; 20]);
    std::fs::write(dir.path().join("train_images.npy"), &v2).unwrap();
    let e = reject(dir.path(), ".npy, 4 GiB header declared");
    assert!(matches!(e, DataError::BadHeader { .. }), "{e}");

    // .npz whose entries declare 4e12 bytes.
    let dir = tempfile::tempdir().unwrap();
    {
        let file = std::fs::File::create(dir.path().join("train.npz")).unwrap();
        let mut zip = npyz::zip::ZipWriter::new(file);
        let options = npyz::zip::write::FileOptions::default();
        zip.start_file("images.npy", options).unwrap();
        zip.write_all(&npy_bytes("<f4", "(1000000, 1000, 1000)", &[0; 16]))
            .unwrap();
        zip.start_file("labels.npy", options).unwrap();
        zip.write_all(&npy_bytes("<i8", "(1000000000000,)", &[0; 16]))
            .unwrap();
        zip.finish().unwrap();
    }
    let e = reject(dir.path(), ".npz, 4e12 bytes declared");
    assert!(matches!(e, DataError::Truncated { .. }), "{e}");

    // A PNG declaring 100000 x 100000 pixels (10 GB): refused by the decoder's limits.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("train/a")).unwrap();
    std::fs::write(
        dir.path().join("train/a/huge.png"),
        png_header_only(100_000, 100_000),
    )
    .unwrap();
    let e = reject(dir.path(), "PNG, 10^10 pixels declared");
    assert!(matches!(e, DataError::Image { .. }), "{e}");

    // 160 M gray pixels fit the decoder's 512 MiB allocation limit but not qatlas's pixel cap:
    // refused while the folder is listed, with the size in the message.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("train/a")).unwrap();
    std::fs::write(
        dir.path().join("train/a/bomb.png"),
        png_without_pixels(16_000, 10_000),
    )
    .unwrap();
    let e = reject(dir.path(), "PNG, 1.6e8 pixels declared");
    let message = e.to_string();
    assert!(
        message.contains("bomb.png") && message.contains("160000000 pixels"),
        "{message}"
    );
}
