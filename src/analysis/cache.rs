//! Keys and an in-memory cache for analysis results, so that repeating a sensitivity sweep on
//! the same (model, plan, data, settings) is instant.
//!
//! Keys are 64-bit hashes of the model (graph structure and every parameter bit), the plan (its
//! RON text), the data actually used (pixels and labels) and the settings. The hasher is std's
//! SipHash with fixed keys: stable within a build, which is all an in-memory cache needs.
//! Depends on `graph`, `data`, `quant::plan`.

use crate::data::{Dataset, Normalization, Pixels};
use crate::graph::Graph;
use crate::quant::QuantPlan;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

/// Hash of a model: its nodes, values and every parameter's name, shape and bits.
pub fn model_key(g: &Graph) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{:?}{:?}{:?}{:?}", g.nodes, g.values, g.inputs, g.outputs).hash(&mut h);
    g.input_shape.hash(&mut h);
    for p in &g.params {
        p.name.hash(&mut h);
        p.tensor.shape().hash(&mut h);
        for v in p.tensor.iter() {
            v.to_bits().hash(&mut h);
        }
    }
    h.finish()
}

/// Hash of a plan (its serialized form).
pub fn plan_key(plan: &QuantPlan) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{plan:?}").hash(&mut h);
    h.finish()
}

/// Hash of the first `n` samples of a dataset and its normalization.
pub fn data_key(ds: &Dataset, n: usize, norm: &Normalization) -> u64 {
    let mut h = DefaultHasher::new();
    let n = n.min(ds.len());
    let chw = ds.c * ds.h * ds.w;
    (n, ds.c, ds.h, ds.w).hash(&mut h);
    match &ds.pixels {
        Pixels::U8(p) => p[..n * chw].hash(&mut h),
        Pixels::F32(p) => p[..n * chw].iter().for_each(|v| v.to_bits().hash(&mut h)),
        // Streamed images: the files (with their sizes and modification times) and transform.
        Pixels::Files(f) => {
            for path in &f.paths()[..n] {
                path.hash(&mut h);
                if let Ok(m) = std::fs::metadata(path) {
                    m.len().hash(&mut h);
                    m.modified().ok().hash(&mut h);
                }
            }
            f.transform().hash(&mut h);
        }
    }
    ds.labels[..n].hash(&mut h);
    for v in norm.mean.iter().chain(&norm.std) {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}

/// Combines key parts.
pub fn combine(parts: &[u64]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A thread-safe map from keys to shared results.
#[derive(Debug)]
pub struct ResultCache<T> {
    map: Mutex<HashMap<u64, Arc<T>>>,
}

impl<T> Default for ResultCache<T> {
    fn default() -> Self {
        ResultCache {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> ResultCache<T> {
    /// The cached result for `key`, if any.
    pub fn get(&self, key: u64) -> Option<Arc<T>> {
        self.map.lock().ok()?.get(&key).cloned()
    }

    /// Stores a result.
    pub fn insert(&self, key: u64, v: Arc<T>) {
        if let Ok(mut m) = self.map.lock() {
            m.insert(key, v);
        }
    }

    /// Number of cached results.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything.
    pub fn clear(&self) {
        if let Ok(mut m) = self.map.lock() {
            m.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Precision;
    use crate::zoo::Arch;

    #[test]
    fn keys_change_with_any_weight_bit_and_plan_setting() {
        let mut g = Arch::SeedCnn.build([1, 8, 8], 3, 0).unwrap();
        let k0 = model_key(&g);
        assert_eq!(k0, model_key(&g.clone()));
        let v = g.params[0].tensor.first_mut().unwrap();
        *v = f32::from_bits(v.to_bits() ^ 1);
        assert_ne!(k0, model_key(&g));
        let p = QuantPlan::default_for(&g, Precision::Int8);
        let mut q = p.clone();
        q.layers[1].excluded = true;
        assert_ne!(plan_key(&p), plan_key(&q));
    }
}
