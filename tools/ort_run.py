"""ONNX Runtime and onnx.checker for qatlas's parity tests (tests/onnx_parity.rs).

    python tools/ort_run.py run MODEL.onnx INPUT.npy OUTPUT.npy
        Runs MODEL on CPU with INPUT (float32) as its only input and writes its first output.
        A model whose batch axis is fixed at 1 (the ONNX Model Zoo's older files) runs one
        sample at a time and the outputs are stacked.
    python tools/ort_run.py run-reference MODEL.onnx INPUT.npy OUTPUT.npy
        The same with graph optimizations disabled: QDQ pairs run as written (the ONNX
        reference semantics) instead of being fused into ORT's integer kernels.
    python tools/ort_run.py check MODEL.onnx
        onnx.checker.check_model(full_check=True); exit status 1 with the reason on failure.

Needs numpy, onnx and onnxruntime (`.ci/run` installs them into .venv).
"""

import sys

import numpy as np


def run(model, inp, out, reference=False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if reference:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = np.load(inp).astype(np.float32)
    first = sess.get_inputs()[0]
    if first.shape and first.shape[0] == 1 and x.shape[0] != 1:
        y = np.concatenate([sess.run(None, {first.name: x[i:i + 1]})[0] for i in range(x.shape[0])])
    else:
        y = sess.run(None, {first.name: x})[0]
    np.save(out, np.ascontiguousarray(y, dtype=np.float32))


def check(model):
    import onnx

    onnx.checker.check_model(onnx.load(model), full_check=True)


def main(argv):
    if len(argv) == 5 and argv[1] in ("run", "run-reference"):
        run(argv[2], argv[3], argv[4], reference=argv[1] == "run-reference")
    elif len(argv) == 3 and argv[1] == "check":
        try:
            check(argv[2])
        except Exception as e:  # noqa: BLE001 - report any checker failure to the caller
            print(f"onnx.checker rejected {argv[2]}: {e}", file=sys.stderr)
            return 1
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
