//! The table from ONNX op types to import functions (tract's `register_all_ops` pattern): each
//! op family in `ops/` registers its op types, and the importer looks nodes up here. An op type
//! missing from the table imports as an `Unsupported` node.

use super::OnnxError;
use super::ctx::{NodeCtx, Out};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Maps one ONNX node to qatlas nodes. `Ok(None)` means "this variant of the op is not
/// expressible in qatlas": the importer then keeps the node as `Unsupported` (an import function
/// must decide that before it emits anything; what it did emit is rolled back).
pub(crate) type ImportFn = fn(&mut NodeCtx<'_, '_>) -> Result<Option<Out>, OnnxError>;

/// Import functions by ONNX op type (default domain).
pub(crate) struct Registry {
    ops: HashMap<&'static str, ImportFn>,
}

impl Registry {
    /// Registers `f` for `op_type`.
    pub(crate) fn insert(&mut self, op_type: &'static str, f: ImportFn) {
        self.ops.insert(op_type, f);
    }

    /// The import function of an op type.
    pub(crate) fn get(&self, op_type: &str) -> Option<ImportFn> {
        self.ops.get(op_type).copied()
    }

    /// The table with every op family registered (built once).
    pub(crate) fn global() -> &'static Registry {
        static REG: OnceLock<Registry> = OnceLock::new();
        REG.get_or_init(|| {
            let mut r = Registry {
                ops: HashMap::new(),
            };
            super::ops::register_all_ops(&mut r);
            r
        })
    }
}

/// The ONNX op types the importer maps to qatlas ops, sorted.
pub fn supported_op_types() -> Vec<&'static str> {
    let mut v: Vec<_> = Registry::global().ops.keys().copied().collect();
    v.sort_unstable();
    v
}
