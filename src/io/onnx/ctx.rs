//! What an op's import function sees of the model: the ONNX node (attributes, inputs as graph
//! values or decoded constants, with their shapes) and a way to add parameters and qatlas nodes
//! to the graph under construction.

use super::OnnxError;
use super::import::{Importer, Val};
use super::proto::{AttributeProto, NodeProto, attribute_proto::AttributeType};
use super::tensor::{Const, decode};
use crate::graph::ValueId;
use crate::ops::OpKind;
use crate::tensor::Tensor;
use std::rc::Rc;

/// Largest stride, padding or dilation accepted from a file (keeps shape arithmetic far from
/// overflow on hostile input).
pub(crate) const MAX_ATTR: i64 = 1 << 20;

/// What an ONNX node's first output becomes.
pub(crate) enum Out {
    /// A graph value (a node the import function emitted, or an existing value for aliases such
    /// as Identity).
    Value(ValueId),
    /// A constant (Constant, Cast or Identity of a constant); becomes a parameter where used.
    Const(Rc<Const>),
}

/// One node being imported.
pub(crate) struct NodeCtx<'a, 'm> {
    pub(crate) imp: &'a mut Importer<'m>,
    pub(crate) node: &'m NodeProto,
    /// The qatlas name of the node (unique).
    pub(crate) name: &'a str,
    /// Nodes emitted so far (their indices in the graph).
    pub(crate) emitted: Vec<usize>,
}

impl<'a, 'm> NodeCtx<'a, 'm> {
    /// The model's default-domain opset.
    pub fn opset(&self) -> i64 {
        self.imp.opset
    }

    /// An error about this node.
    pub fn err(&self, problem: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.name.to_string(),
            op_type: self.node.op_type.clone(),
            problem: problem.into(),
        }
    }

    /// An error about one of this node's attributes.
    pub fn attr_err(&self, attr: &str, problem: impl Into<String>) -> OnnxError {
        OnnxError::Attribute {
            node: self.name.to_string(),
            op_type: self.node.op_type.clone(),
            attr: attr.to_string(),
            problem: problem.into(),
        }
    }

    fn attr(
        &self,
        name: &str,
        want: AttributeType,
    ) -> Result<Option<&'m AttributeProto>, OnnxError> {
        let Some(a) = self.node.attribute.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        // Producers before IR version 2 may leave `type` unset; trust the field then.
        if a.r#type != want as i32 && a.r#type != AttributeType::Undefined as i32 {
            let found = AttributeType::try_from(a.r#type)
                .map(|t| t.as_str_name().to_string())
                .unwrap_or_else(|_| format!("#{}", a.r#type));
            return Err(self.attr_err(
                name,
                format!("has type {found}, expected {}", want.as_str_name()),
            ));
        }
        Ok(Some(a))
    }

    /// An integer attribute.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self
            .attr(name, AttributeType::Int)?
            .map_or(default, |a| a.i))
    }

    /// A float attribute.
    pub fn float(&self, name: &str, default: f32) -> Result<f32, OnnxError> {
        Ok(self
            .attr(name, AttributeType::Float)?
            .map_or(default, |a| a.f))
    }

    /// An integer-list attribute.
    pub fn ints(&self, name: &str) -> Result<Option<&'m [i64]>, OnnxError> {
        Ok(self
            .attr(name, AttributeType::Ints)?
            .map(|a| a.ints.as_slice()))
    }

    /// A float-list attribute.
    pub fn floats(&self, name: &str) -> Result<Option<&'m [f32]>, OnnxError> {
        Ok(self
            .attr(name, AttributeType::Floats)?
            .map(|a| a.floats.as_slice()))
    }

    /// A string attribute (lossy UTF-8).
    pub fn string(&self, name: &str, default: &str) -> Result<String, OnnxError> {
        Ok(self
            .attr(name, AttributeType::String)?
            .map_or(default.to_string(), |a| {
                String::from_utf8_lossy(&a.s).into_owned()
            }))
    }

    /// A tensor attribute, decoded.
    pub fn tensor_attr(&self, name: &str) -> Result<Option<Const>, OnnxError> {
        match self.attr(name, AttributeType::Tensor)? {
            Some(a) => match &a.t {
                Some(t) => decode(t, self.name).map(Some),
                None => Err(self.attr_err(name, "holds no tensor")),
            },
            None => Ok(None),
        }
    }

    /// Whether any of `names` is present as an attribute.
    pub fn has_attr(&self, names: &[&str]) -> bool {
        self.node
            .attribute
            .iter()
            .any(|a| names.contains(&a.name.as_str()))
    }

    /// Converts an attribute value to a count in `min..=max`.
    pub fn bounded(&self, attr: &str, v: i64, min: i64, max: i64) -> Result<usize, OnnxError> {
        if v < min || v > max {
            return Err(self.attr_err(attr, format!("value {v} is outside {min}..={max}")));
        }
        Ok(v as usize)
    }

    /// Whether input `i` is present (ONNX marks an omitted optional input with an empty name).
    pub fn has_input(&self, i: usize) -> bool {
        self.node.input.get(i).is_some_and(|s| !s.is_empty())
    }

    /// Number of input slots, omitted optional ones included.
    pub fn num_inputs(&self) -> usize {
        self.node.input.len()
    }

    fn input_name(&self, i: usize) -> Result<&'m str, OnnxError> {
        match self.node.input.get(i) {
            Some(s) if !s.is_empty() => Ok(s.as_str()),
            _ => Err(self.err(format!("input {i} is missing"))),
        }
    }

    fn lookup(&self, name: &'m str) -> Result<Val<'m>, OnnxError> {
        self.imp
            .names
            .get(name)
            .cloned()
            .ok_or_else(|| OnnxError::Undefined {
                node: self.name.to_string(),
                op_type: self.node.op_type.clone(),
                value: name.to_string(),
            })
    }

    /// Input `i` decoded if it is a constant (initializer, Constant output), `None` if it is an
    /// activation.
    pub fn input_const(&mut self, i: usize) -> Result<Option<Rc<Const>>, OnnxError> {
        let name = self.input_name(i)?;
        match self.lookup(name)? {
            Val::Value(_) => Ok(None),
            Val::Const(c) => Ok(Some(c)),
            Val::Init(t) => {
                let c = Rc::new(decode(t, self.name)?);
                self.imp.elem_types.insert(name, t.data_type);
                self.imp.names.insert(name, Val::Const(c.clone()));
                Ok(Some(c))
            }
        }
    }

    /// The ONNX element type of input `i` when it is an initializer (`None` for activations
    /// and Constant outputs).
    pub fn input_elem_type(&self, i: usize) -> Result<Option<i32>, OnnxError> {
        let name = self.input_name(i)?;
        Ok(match self.lookup(name)? {
            Val::Init(t) => Some(t.data_type),
            _ => self.imp.elem_types.get(name).copied(),
        })
    }

    /// Input `i` as a graph value; a constant becomes a parameter named after it (once, shared
    /// by every node that reads it), `trainable` or a buffer.
    pub fn input_value(&mut self, i: usize, trainable: bool) -> Result<ValueId, OnnxError> {
        let name = self.input_name(i)?;
        if let Val::Value(v) = self.lookup(name)? {
            return Ok(v);
        }
        if let Some(&v) = self.imp.params.get(name) {
            return Ok(v);
        }
        let c = self
            .input_const(i)?
            .expect("a non-value input is a constant");
        let t = c.to_tensor().ok_or_else(|| {
            self.err(format!(
                "input '{name}' is an integer tensor where qatlas expects floats"
            ))
        })?;
        check_finite(self.name, name, &t)?;
        let v = self.imp.add_named_param(name, t, trainable);
        self.imp.params.insert(name.to_string(), v);
        Ok(v)
    }

    /// The shape of input `i`: a constant's dimensions, or the activation's shape at the import
    /// batch size (`None` when unknown, downstream of an unsupported node).
    pub fn input_shape(&mut self, i: usize) -> Result<Option<Vec<usize>>, OnnxError> {
        let name = self.input_name(i)?;
        match self.lookup(name)? {
            Val::Value(v) => Ok(self.imp.shapes[v].clone()),
            _ => Ok(self.input_const(i)?.map(|c| c.dims.clone())),
        }
    }

    /// Adds a parameter (a transformed constant) named after `hint` (made unique).
    pub fn add_param(
        &mut self,
        hint: &str,
        t: Tensor,
        trainable: bool,
    ) -> Result<ValueId, OnnxError> {
        check_finite(self.name, hint, &t)?;
        Ok(self.imp.add_param(hint, t, trainable))
    }

    /// Adds a qatlas node reading `inputs`; checks its shapes when they are known.
    pub fn emit(&mut self, op: OpKind, inputs: &[ValueId]) -> Result<ValueId, OnnxError> {
        let k = self.emitted.len();
        let out = self.node.output.first().map_or("", String::as_str);
        let (v, node) = self
            .imp
            .add_node(
                &format!("{}#{k}", self.name),
                op,
                inputs,
                &format!("{out}#{k}"),
            )
            .map_err(|source| OnnxError::Op {
                node: self.name.to_string(),
                op_type: self.node.op_type.clone(),
                source: Box::new(source),
            })?;
        self.emitted.push(node);
        Ok(v)
    }
}

/// Parameters must be finite (the native model file refuses anything else).
fn check_finite(node: &str, tensor: &str, t: &Tensor) -> Result<(), OnnxError> {
    match t.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(OnnxError::Tensor {
            node: node.to_string(),
            tensor: tensor.to_string(),
            problem: format!("holds a non-finite value at index {i}"),
        }),
        None => Ok(()),
    }
}
