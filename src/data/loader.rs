//! One epoch of mini-batches over a dataset: an iterator of `(images, labels)` where images is a
//! normalized `[b, c, h, w]` tensor. With a seed, the sample order is a Fisher-Yates shuffle
//! driven by `ChaCha8Rng`, so the same seed gives the same order on every machine; use a new
//! loader (e.g. seed + epoch) for each epoch. For a streamed dataset each batch decodes its
//! image files; a file that fails ends the epoch early and [`Dataset::check`] names it. Depends only on `data::dataset` and `crate::tensor`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dataset::{Dataset, Normalization};
use crate::tensor::Tensor;

/// Iterates one epoch of `(images, labels)` batches.
///
/// ```
/// use qatlas::data::{Dataset, Loader, Normalization, Pixels};
/// let labels = vec![0, 1, 0, 1, 1];
/// let ds = Dataset::new("demo", Pixels::U8(vec![0; 5 * 4]), labels, [1, 2, 2], vec![])?;
/// let norm = Normalization::identity();
/// let loader = Loader::new(&ds, &norm, 2, Some(7), false);
/// assert_eq!(loader.num_batches(), 3);
/// let shapes: Vec<Vec<usize>> = loader.map(|(x, _)| x.shape().to_vec()).collect();
/// assert_eq!(shapes, vec![vec![2, 1, 2, 2], vec![2, 1, 2, 2], vec![1, 1, 2, 2]]);
/// # Ok::<(), qatlas::data::DataError>(())
/// ```
pub struct Loader<'a> {
    ds: &'a Dataset,
    norm: &'a Normalization,
    batch_size: usize,
    drop_last: bool,
    order: Vec<usize>,
    pos: usize,
}

impl<'a> Loader<'a> {
    /// A loader over `ds` in order (`shuffle_seed` `None`) or shuffled by the seed.
    /// A `batch_size` of 0 is treated as 1. With `drop_last`, a final partial batch is skipped.
    pub fn new(
        ds: &'a Dataset,
        norm: &'a Normalization,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        drop_last: bool,
    ) -> Self {
        let mut order: Vec<usize> = (0..ds.len()).collect();
        if let Some(seed) = shuffle_seed {
            shuffle(&mut order, seed);
        }
        Loader {
            ds,
            norm,
            batch_size: batch_size.max(1),
            drop_last,
            order,
            pos: 0,
        }
    }

    /// Number of batches in the epoch (counting those already yielded).
    pub fn num_batches(&self) -> usize {
        let n = self.order.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The sample order of this epoch.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    fn remaining_batches(&self) -> usize {
        let left = self.order.len() - self.pos;
        if self.drop_last {
            left / self.batch_size
        } else {
            left.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for Loader<'_> {
    type Item = (Tensor, Vec<u32>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining_batches() == 0 {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let indices = &self.order[self.pos..end];
        self.pos = end;
        let x = self.ds.batch(indices, self.norm);
        if self.ds.has_fault() {
            // An image file failed to decode: stop here; `Dataset::check` reports it.
            self.pos = self.order.len();
            return None;
        }
        Some((x, self.ds.labels_of(indices)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining_batches();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Loader<'_> {}

/// Fisher-Yates shuffle. Draws `u64`s so the order does not depend on the platform's usize.
fn shuffle(order: &mut [usize], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..order.len()).rev() {
        let j = rng.random_range(0..=i as u64) as usize;
        order.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_and_reproducible() {
        let mut a: Vec<usize> = (0..100).collect();
        let mut b = a.clone();
        shuffle(&mut a, 42);
        shuffle(&mut b, 42);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}
