//! Constant folding at import: the integer shape arithmetic exporters emit (`Shape`, `Gather`,
//! `Unsqueeze`, `Squeeze`, `Concat`, `Slice`, `Add`/`Sub`/`Mul`/`Div` of constants) is computed
//! once for the input shape, so a `Reshape` whose target came from `x.size(0)` and friends gets a
//! constant target instead of a runtime integer tensor.
//!
//! The batch size is not known at import when the input's batch axis is dynamic: `Shape` then
//! writes [`BATCH`] for it. Gather, Unsqueeze, Squeeze, Concat and Slice carry it through;
//! arithmetic on it is not folded (the node stays as it is); a `Reshape` reads it at position 0
//! as "copy the batch axis".

use super::OnnxError;
use super::ctx::NodeCtx;
use super::tensor::{Const, ConstData};
use std::rc::Rc;

/// The dynamic batch size in folded shapes.
pub(crate) const BATCH: i64 = -(1 << 40);

/// Folded shape tensors stay small; a constant above this many elements is not folded.
const MAX_FOLD: usize = 1 << 16;

/// The node's output as a constant, or `None` when it is not foldable (then the op registry
/// imports it).
pub(crate) fn fold(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Rc<Const>>, OnnxError> {
    let op = ctx.node.op_type.as_str();
    if op == "Shape" {
        return shape(ctx);
    }
    if !matches!(
        op,
        "Gather" | "Unsqueeze" | "Squeeze" | "Concat" | "Slice" | "Add" | "Sub" | "Mul" | "Div"
    ) {
        return Ok(None);
    }
    let mut ins = Vec::with_capacity(ctx.num_inputs());
    for i in 0..ctx.num_inputs() {
        if !ctx.has_input(i) {
            ins.push(None);
            continue;
        }
        match ctx.input_const(i)? {
            Some(c) if c.len() <= MAX_FOLD => ins.push(Some(c)),
            _ => return Ok(None),
        }
    }
    let Some(Some(x)) = ins.first().cloned() else {
        return Ok(None);
    };
    let out = match op {
        "Gather" => gather(ctx, &x, ins.get(1).cloned().flatten())?,
        "Unsqueeze" | "Squeeze" => {
            squeeze(ctx, &x, ins.get(1).cloned().flatten(), op == "Unsqueeze")?
        }
        "Concat" => concat(&ins),
        "Slice" => slice(&x, &ins),
        _ => arith(op, &x, ins.get(1).cloned().flatten()),
    };
    Ok(out.map(Rc::new))
}

fn ints(dims: Vec<usize>, v: Vec<i64>) -> Const {
    Const {
        dims,
        data: ConstData::I64(v),
    }
}

fn shape(ctx: &mut NodeCtx<'_, '_>) -> Result<Option<Rc<Const>>, OnnxError> {
    let Some(dims) = ctx.input_shape(0)? else {
        return Ok(None);
    };
    let is_value = ctx.input_const(0)?.is_none();
    let mut v: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    if is_value && ctx.imp.static_batch.is_none() && !v.is_empty() {
        v[0] = BATCH;
    }
    let r = v.len() as i64;
    let fix = |i: i64| (if i < 0 { i + r } else { i }).clamp(0, r) as usize;
    let (s, e) = (fix(ctx.int("start", 0)?), fix(ctx.int("end", r)?));
    let v = v[s..e.max(s)].to_vec();
    Ok(Some(Rc::new(ints(vec![v.len()], v))))
}

/// Gather along axis 0 of a rank-0/1 constant.
fn gather(
    ctx: &NodeCtx<'_, '_>,
    x: &Const,
    idx: Option<Rc<Const>>,
) -> Result<Option<Const>, OnnxError> {
    let Some(idx) = idx else { return Ok(None) };
    let (Some(ix), true) = (idx.i64s(), x.dims.len() == 1 && ctx.int("axis", 0)? == 0) else {
        return Ok(None);
    };
    let n = x.dims[0] as i64;
    let mut pick = Vec::with_capacity(ix.len());
    for &i in &ix {
        let j = if i < 0 { i + n } else { i };
        if !(0..n).contains(&j) {
            return Err(ctx.err(format!("index {i} is out of range for {n} elements")));
        }
        pick.push(j as usize);
    }
    let data = match &x.data {
        ConstData::I64(v) => ConstData::I64(pick.iter().map(|&j| v[j]).collect()),
        ConstData::F32(v) => ConstData::F32(pick.iter().map(|&j| v[j]).collect()),
    };
    Ok(Some(Const {
        dims: idx.dims.clone(),
        data,
    }))
}

fn squeeze(
    ctx: &NodeCtx<'_, '_>,
    x: &Const,
    axes_in: Option<Rc<Const>>,
    unsqueeze: bool,
) -> Result<Option<Const>, OnnxError> {
    let axes: Option<Vec<i64>> = if ctx.opset() >= 13 {
        axes_in.and_then(|c| c.i64s())
    } else {
        ctx.ints("axes")?.map(<[i64]>::to_vec)
    };
    let mut dims = x.dims.clone();
    if unsqueeze {
        let Some(axes) = axes else { return Ok(None) };
        let r = (dims.len() + axes.len()) as i64;
        let mut ax: Vec<usize> = axes
            .iter()
            .map(|&a| (if a < 0 { a + r } else { a }) as usize)
            .collect();
        ax.sort_unstable();
        for a in ax {
            if a > dims.len() {
                return Ok(None);
            }
            dims.insert(a, 1);
        }
    } else {
        let r = dims.len() as i64;
        match axes {
            Some(axes) => {
                let mut ax: Vec<usize> = axes
                    .iter()
                    .map(|&a| (if a < 0 { a + r } else { a }) as usize)
                    .collect();
                ax.sort_unstable();
                for a in ax.into_iter().rev() {
                    if dims.get(a) != Some(&1) {
                        return Ok(None);
                    }
                    dims.remove(a);
                }
            }
            None => dims.retain(|&d| d != 1),
        }
    }
    Ok(Some(Const {
        dims,
        data: x.data.clone(),
    }))
}

/// Concat of rank-1 constants of one type.
fn concat(ins: &[Option<Rc<Const>>]) -> Option<Const> {
    let cs: Vec<&Const> = ins.iter().map(|c| c.as_deref()).collect::<Option<_>>()?;
    if cs.iter().any(|c| c.dims.len() != 1) {
        return None;
    }
    let data = if cs.iter().all(|c| matches!(c.data, ConstData::I64(_))) {
        ConstData::I64(
            cs.iter()
                .flat_map(|c| c.i64s().unwrap_or_default())
                .collect(),
        )
    } else if cs.iter().all(|c| c.f32s().is_some()) {
        ConstData::F32(
            cs.iter()
                .flat_map(|c| c.f32s().unwrap_or_default().to_vec())
                .collect(),
        )
    } else {
        return None;
    };
    let n = match &data {
        ConstData::I64(v) => v.len(),
        ConstData::F32(v) => v.len(),
    };
    Some(Const {
        dims: vec![n],
        data,
    })
}

/// Slice of a rank-1 constant along axis 0 with a positive step.
fn slice(x: &Const, ins: &[Option<Rc<Const>>]) -> Option<Const> {
    let get = |i: usize| ins.get(i).cloned().flatten().and_then(|c| c.i64s());
    let (starts, ends) = (get(1)?, get(2)?);
    let axes = get(3).unwrap_or(vec![0]);
    let steps = get(4).unwrap_or(vec![1]);
    if x.dims.len() != 1 || starts.len() != 1 || ends.len() != 1 || axes != [0] && axes != [-1] {
        return None;
    }
    let step = *steps.first()?;
    if step <= 0 {
        return None;
    }
    let n = x.dims[0] as i64;
    let fix = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
    let (s, e) = (fix(starts[0]), fix(ends[0]));
    let pick: Vec<usize> = (s..e.max(s)).step_by(step as usize).collect();
    let data = match &x.data {
        ConstData::I64(v) => ConstData::I64(pick.iter().map(|&j| v[j]).collect()),
        ConstData::F32(v) => ConstData::F32(pick.iter().map(|&j| v[j]).collect()),
    };
    Some(Const {
        dims: vec![pick.len()],
        data,
    })
}

/// Integer arithmetic of two constants (same shape, or one of a single element); not folded
/// when it touches the unknown batch size or divides by zero. Float constants are left to the
/// op registry (they are parameters).
fn arith(op: &str, a: &Const, b: Option<Rc<Const>>) -> Option<Const> {
    let b = b?;
    let (ConstData::I64(x), ConstData::I64(y)) = (&a.data, &b.data) else {
        return None;
    };
    if x.contains(&BATCH) || y.contains(&BATCH) {
        return None;
    }
    let (n, dims) = if x.len() >= y.len() {
        (x.len(), a.dims.clone())
    } else {
        (y.len(), b.dims.clone())
    };
    if (x.len() != n && x.len() != 1) || (y.len() != n && y.len() != 1) {
        return None;
    }
    let at = |v: &Vec<i64>, i: usize| if v.len() == 1 { v[0] } else { v[i] };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (p, q) = (at(x, i), at(y, i));
        out.push(match op {
            "Add" => p.checked_add(q)?,
            "Sub" => p.checked_sub(q)?,
            "Mul" => p.checked_mul(q)?,
            _ => p.checked_div(q)?,
        });
    }
    Some(ints(dims, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_arithmetic_folds_and_the_batch_size_stays_symbolic() {
        let a = ints(vec![1], vec![116]);
        let two = ints(vec![], vec![2]);
        assert_eq!(
            arith("Div", &a, Some(Rc::new(two.clone()))).unwrap().i64s(),
            Some(vec![58])
        );
        assert!(arith("Div", &a, Some(Rc::new(ints(vec![], vec![0])))).is_none());
        let b = ints(vec![1], vec![BATCH]);
        assert!(arith("Mul", &b, Some(Rc::new(two))).is_none());
        let parts = [Some(Rc::new(b)), Some(Rc::new(ints(vec![2], vec![2, 58])))];
        let c = concat(&parts).unwrap();
        assert_eq!(c.i64s(), Some(vec![BATCH, 2, 58]));
        let s = slice(
            &c,
            &[
                None,
                Some(Rc::new(ints(vec![1], vec![1]))),
                Some(Rc::new(ints(vec![1], vec![i64::MAX]))),
            ],
        )
        .unwrap();
        assert_eq!(s.i64s(), Some(vec![2, 58]));
    }
}
