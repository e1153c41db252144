"""Writes ONNX's own backend conformance cases for `tests/onnx_conformance.rs`: the node cases
that `onnx.backend.test.case.node` generates (model.onnx + test_data_set_*/input_*.pb and
output_*.pb, as ONNX's `backend-test-tools generate-data` writes the model cases) and copies of the
`pytorch-converted` and `pytorch-operator` data shipped in the `onnx` package. Runs with the `.venv`
that `.ci/run` makes:

    .venv/bin/python tools/onnx_backend_cases.py OUT_DIR
"""

import os
import shutil
import sys

import onnx
from onnx import numpy_helper
import onnx.backend.test.case.node as node_cases


def write_case(case, out):
    d = os.path.join(out, "node", case.name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(case.model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets):
        ds = os.path.join(d, f"test_data_set_{i}")
        os.makedirs(ds, exist_ok=True)
        for kind, values, infos in (("input", inputs, case.model.graph.input),
                                    ("output", outputs, case.model.graph.output)):
            for j, v in enumerate(values):
                if not infos[j].type.HasField("tensor_type"):
                    return False
                t = v if isinstance(v, onnx.TensorProto) else numpy_helper.from_array(v, infos[j].name)
                with open(os.path.join(ds, f"{kind}_{j}.pb"), "wb") as f:
                    f.write(t.SerializeToString())
    return True


def main(out):
    if os.path.exists(out):
        shutil.rmtree(out)
    written = skipped = 0
    for case in node_cases.collect_testcases(None):
        try:
            ok = write_case(case, out)
        except Exception:  # non-tensor values (sequences, maps, optionals): not qatlas's business
            ok = False
        if ok:
            written += 1
        else:
            shutil.rmtree(os.path.join(out, "node", case.name), ignore_errors=True)
            skipped += 1
    data = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
    for kind in ("pytorch-converted", "pytorch-operator"):
        shutil.copytree(os.path.join(data, kind), os.path.join(out, kind))
    print(f"onnx {onnx.__version__}: {written} node cases written, {skipped} with non-tensor values left out")


if __name__ == "__main__":
    main(sys.argv[1])
