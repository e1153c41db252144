//! [`ModelSpec::shapes`]: the validation of a (possibly hostile) description, every slot's
//! per-image shape re-derived from the input shape with checked arithmetic and a size cap.
//! Part of [`super`] (`spec/mod.rs`), split out to keep files small.

use super::*;

impl ModelSpec {
    /// Validates the description and returns every slot's per-image shape. Every step must read
    /// slots already written (slot 0 is the input) and write a slot of the right kind exactly
    /// once; grids, layer geometry and sizes must be consistent and bounded.
    pub fn shapes(&self) -> Result<Vec<Dims>, RuntimeError> {
        let [c, h, w] = self.input_shape;
        let n = self.slots.len();
        if n == 0 || self.slots[0] != SlotKind::F32 {
            return Err(invalid("slot 0 must be the f32 input"));
        }
        let mut dims: Vec<Option<Dims>> = vec![None; n];
        let input = Dims { h, w, c };
        check_size(&input, "input")?;
        dims[0] = Some(input);
        let mut total = input.elems();
        for (si, step) in self.steps.iter().enumerate() {
            let ctx = |m: String| invalid(format!("step {si}: {m}"));
            let mut src_dims = Vec::new();
            for s in step.sources() {
                let d =
                    dims.get(s).copied().flatten().ok_or_else(|| {
                        ctx(format!("reads slot {s}, which is not written before"))
                    })?;
                src_dims.push((s, d));
            }
            let dst = step.dst();
            if dst >= n || dims[dst].is_some() {
                return Err(ctx(format!(
                    "writes slot {dst}, which is missing or already written"
                )));
            }
            let kind = |s: usize| self.slots[s];
            let want = |s: usize, k: SlotKind| {
                if kind(s) == k {
                    Ok(())
                } else {
                    Err(ctx(format!("slot {s} must be {k:?}")))
                }
            };
            let (s0, d0) = src_dims[0];
            let grid = |g: &Option<QGrid>, s: usize| match g {
                Some(g) => {
                    g.validate(&format!("step {si}"))?;
                    want(s, SlotKind::U8)
                }
                None => want(s, SlotKind::F32),
            };
            let out = match step {
                Step::ToHwc { .. } => {
                    want(s0, SlotKind::F32)?;
                    want(dst, SlotKind::F32)?;
                    d0
                }
                Step::ToChw { .. } => {
                    want(s0, SlotKind::F32)?;
                    want(dst, SlotKind::F32)?;
                    Dims::flat(d0.elems())
                }
                Step::Quantize { grid: g, .. } => {
                    g.validate(&format!("step {si}"))?;
                    want(s0, SlotKind::F32)?;
                    want(dst, SlotKind::U8)?;
                    d0
                }
                Step::Dequantize { grid: g, .. } => {
                    g.validate(&format!("step {si}"))?;
                    want(s0, SlotKind::U8)?;
                    want(dst, SlotKind::F32)?;
                    d0
                }
                Step::Requantize { from, to, .. } => {
                    from.validate(&format!("step {si}"))?;
                    to.validate(&format!("step {si}"))?;
                    want(s0, SlotKind::U8)?;
                    want(dst, SlotKind::U8)?;
                    d0
                }
                Step::Fp16 { .. } | Step::Activation { .. } => {
                    want(s0, SlotKind::F32)?;
                    want(dst, SlotKind::F32)?;
                    d0
                }
                Step::BatchNorm {
                    mean,
                    inv_std,
                    gamma,
                    beta,
                    ..
                } => {
                    want(s0, SlotKind::F32)?;
                    want(dst, SlotKind::F32)?;
                    if [mean, inv_std, gamma, beta].iter().any(|v| v.len() != d0.c) {
                        return Err(ctx(format!(
                            "BatchNorm parameters do not have {} channels",
                            d0.c
                        )));
                    }
                    d0
                }
                Step::GatherChannels { channels, .. } => {
                    want(dst, kind(s0))?;
                    if channels.is_empty() || channels.iter().any(|&c| c >= d0.c) {
                        return Err(ctx(format!("picks {channels:?} of {} channels", d0.c)));
                    }
                    Dims {
                        c: channels.len(),
                        ..d0
                    }
                }
                Step::ClampU8 { .. } => {
                    want(s0, SlotKind::U8)?;
                    want(dst, SlotKind::U8)?;
                    d0
                }
                Step::Layer { layer, .. } => {
                    let l = self
                        .layers
                        .get(*layer)
                        .ok_or_else(|| ctx(format!("layer {layer} does not exist")))?;
                    self.layer_out(l, s0, d0, dst)
                        .map_err(|e| ctx(format!("layer '{}': {e}", l.name)))?
                }
                Step::MaxPool { pool, .. } => {
                    if kind(s0) != kind(dst) {
                        return Err(ctx("max pool keeps the slot kind".into()));
                    }
                    pool_out(pool, d0).ok_or_else(|| ctx("pool window does not fit".into()))?
                }
                Step::AvgPool { pool, input, .. } => {
                    grid(input, s0)?;
                    want(dst, SlotKind::F32)?;
                    pool_out(pool, d0).ok_or_else(|| ctx("pool window does not fit".into()))?
                }
                Step::GlobalAvgPool { input, .. } => {
                    grid(input, s0)?;
                    want(dst, SlotKind::F32)?;
                    Dims::flat(d0.c)
                }
                Step::Add {
                    a_grid,
                    b_grid,
                    output,
                    ..
                } => {
                    let (s1, d1) = src_dims[1];
                    grid(a_grid, s0)?;
                    grid(b_grid, s1)?;
                    grid(output, dst)?;
                    if d0 != d1 {
                        return Err(ctx(format!("adds shapes {d0:?} and {d1:?}")));
                    }
                    d0
                }
                Step::Mul { .. } => {
                    let (s1, d1) = src_dims[1];
                    for s in [s0, s1, dst] {
                        want(s, SlotKind::F32)?;
                    }
                    if d1 != d0 && d1 != Dims::flat(d0.c) {
                        return Err(ctx(format!("multiplies shapes {d0:?} and {d1:?}")));
                    }
                    d0
                }
                Step::Concat { .. } => {
                    let mut c = 0;
                    for &(s, d) in &src_dims {
                        want(s, SlotKind::F32)?;
                        if (d.h, d.w) != (d0.h, d0.w) {
                            return Err(ctx(format!("concatenates shapes {d0:?} and {d:?}")));
                        }
                        c += d.c;
                    }
                    want(dst, SlotKind::F32)?;
                    Dims { c, ..d0 }
                }
            };
            check_size(&out, &format!("step {si} output"))?;
            total = total
                .checked_add(out.elems())
                .filter(|&t| t <= MAX_SLOT_ELEMS)
                .ok_or_else(|| ctx("activations too large".into()))?;
            dims[dst] = Some(out);
        }
        let out = self
            .output
            .checked_sub(0)
            .and_then(|o| dims.get(o).copied().flatten())
            .ok_or_else(|| invalid("the output slot is never written"))?;
        if self.slots[self.output] != SlotKind::F32 {
            return Err(invalid("the output slot must be f32"));
        }
        let want_out: Option<usize> = self
            .output_shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        if want_out != Some(out.elems()) {
            return Err(invalid(format!(
                "output shape {:?} does not match the output slot ({} values)",
                self.output_shape,
                out.elems()
            )));
        }
        Ok(dims
            .into_iter()
            .map(|d| d.unwrap_or(Dims::flat(0)))
            .collect())
    }

    fn layer_out(&self, l: &LayerSpec, src: usize, d: Dims, dst: usize) -> Result<Dims, String> {
        let int_weights = matches!(l.storage, WeightStorage::S8 | WeightStorage::Int4 { .. });
        if let Some(g) = &l.input {
            g.validate("input").map_err(|e| e.to_string())?;
            if !int_weights {
                return Err("integer compute needs integer weights".into());
            }
        }
        if let Some(g) = &l.output {
            g.validate("output").map_err(|e| e.to_string())?;
        }
        let want_src = if l.input.is_some() {
            SlotKind::U8
        } else {
            SlotKind::F32
        };
        let want_dst = if l.output.is_some() {
            SlotKind::U8
        } else {
            SlotKind::F32
        };
        if self.slots[src] != want_src || self.slots[dst] != want_dst {
            return Err(format!(
                "reads {:?} / writes {:?}, expected {want_src:?} / {want_dst:?}",
                self.slots[src], self.slots[dst]
            ));
        }
        if int_weights {
            let ok = |len: usize| len == 1 || len == l.cout;
            if !ok(l.weight_scale.len()) || !ok(l.weight_zero_point.len()) {
                return Err(format!(
                    "needs 1 or {} weight scales and zero points, found {} and {}",
                    l.cout,
                    l.weight_scale.len(),
                    l.weight_zero_point.len()
                ));
            }
            if l.weight_scale.iter().any(|s| !s.is_finite() || *s <= 0.0)
                || l.weight_zero_point
                    .iter()
                    .any(|z| !(-128..=127).contains(z))
            {
                return Err("weight scales must be finite and positive, zero points s8".into());
            }
        }
        if let Act::Clip { min, max } = l.act
            && !(min <= max)
        {
            return Err(format!("clip range {min}..{max} is empty"));
        }
        if !matches!(l.act, Act::None | Act::Relu | Act::Clip { .. }) {
            return Err(format!(
                "a layer fuses only ReLU or Clip, not {:?} (a separate step)",
                l.act
            ));
        }
        if l.cout == 0 || l.weight_len().is_none_or(|n| n == 0 || n > MAX_SLOT_ELEMS) {
            return Err("weight matrix is empty or too large".into());
        }
        match &l.kind {
            LayerKind::Linear { inputs } => {
                if *inputs != d.elems() {
                    return Err(format!("expects {inputs} inputs, found {}", d.elems()));
                }
                Ok(Dims::flat(l.cout))
            }
            LayerKind::Conv(g) => {
                if g.groups == 0
                    || g.cin != d.c
                    || g.cin % g.groups != 0
                    || l.cout % g.groups != 0
                    || g.dilation.contains(&0)
                {
                    return Err(format!(
                        "geometry {g:?} with {} outputs does not fit input {d:?}",
                        l.cout
                    ));
                }
                let span = |k: usize, dil: usize| dil.checked_mul(k.max(1) - 1).map(|s| s + 1);
                let oh = span(g.kh, g.dilation[0])
                    .and_then(|s| sweep(d.h, g.pads[0], g.pads[2], s, g.stride[0]));
                let ow = span(g.kw, g.dilation[1])
                    .and_then(|s| sweep(d.w, g.pads[1], g.pads[3], s, g.stride[1]));
                match (oh, ow, g.kh, g.kw) {
                    (Some(oh), Some(ow), 1.., 1..) => Ok(Dims {
                        h: oh,
                        w: ow,
                        c: l.cout,
                    }),
                    _ => Err(format!("kernel {}x{} does not fit input {d:?}", g.kh, g.kw)),
                }
            }
        }
    }
}

fn pool_out(p: &PoolSpec, d: Dims) -> Option<Dims> {
    let s = crate::ops::pool::output_shape(&p.attrs(), &[1, d.c, d.h, d.w]).ok()?;
    (s[2] > 0 && s[3] > 0 && p.kernel[0] > 0 && p.kernel[1] > 0).then_some(Dims {
        h: s[2],
        w: s[3],
        c: d.c,
    })
}

fn check_size(d: &Dims, what: &str) -> Result<(), RuntimeError> {
    let n = d.h.checked_mul(d.w).and_then(|x| x.checked_mul(d.c));
    match n {
        Some(n) if n > 0 && n <= MAX_SLOT_ELEMS => Ok(()),
        _ => Err(invalid(format!(
            "{what}: shape {d:?} is empty or too large"
        ))),
    }
}
