//! Orders ONNX nodes so that every node follows the producers of its inputs (Kahn's algorithm,
//! keeping the file's order where it is already valid), and reports undefined inputs, values
//! defined twice and cycles, each naming the node.

use super::OnnxError;
use super::proto::GraphProto;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Node indices in a topological order. `defined` holds the names of initializers and graph
/// inputs; `names[i]` is node i's display name.
pub(super) fn sort(
    g: &GraphProto,
    defined: &HashSet<&str>,
    names: &[String],
) -> Result<Vec<usize>, OnnxError> {
    let n = g.node.len();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in g.node.iter().enumerate() {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            let first = if defined.contains(o.as_str()) {
                Some("an initializer or graph input".to_string())
            } else {
                producer
                    .get(o.as_str())
                    .map(|&p| format!("node '{}'", names[p]))
            };
            if let Some(first) = first {
                return Err(OnnxError::Duplicate {
                    value: o.clone(),
                    first,
                    second: format!("node '{}'", names[i]),
                });
            }
            producer.insert(o, i);
        }
    }
    // deps[i]: producers of node i's inputs (with repetition); users[p]: nodes reading p.
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in g.node.iter().enumerate() {
        for inp in node.input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(inp.as_str()) {
                indegree[i] += 1;
                users[p].push(i);
                deps[i].push(p);
            } else if !defined.contains(inp.as_str()) {
                return Err(OnnxError::Undefined {
                    node: names[i].clone(),
                    op_type: node.op_type.clone(),
                    value: inp.clone(),
                });
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk backwards through unfinished producers until a node repeats: that node is on a cycle.
    let start = (0..n)
        .find(|&i| indegree[i] > 0)
        .expect("some node is left");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut cur = start;
    loop {
        if let Some(&step) = seen.get(&cur) {
            let len = seen.len() - step;
            return Err(OnnxError::Cycle {
                node: names[cur].clone(),
                op_type: g.node[cur].op_type.clone(),
                others: len - 1,
            });
        }
        seen.insert(cur, seen.len());
        cur = *deps[cur]
            .iter()
            .find(|&&p| indegree[p] > 0)
            .expect("an unfinished node has an unfinished producer");
    }
}
