"""Accuracy of an ONNX model on the MNIST test split under ONNX Runtime, for comparison with
`qatlas eval --model MODEL --mean M --std S` (same IDX files, same normalisation: pixels / 255,
then (x - mean) / std).

    python tools/ort_mnist_eval.py MODEL.onnx [--data assets/mnist] [--mean 0.1307] [--std 0.3081]
        [--reference]

--reference disables ONNX Runtime's graph optimizations, so a QDQ (quantized) model runs as
written (the ONNX reference semantics) instead of on ORT's fused integer kernels.
"""

import argparse
import gzip
import os

import numpy as np
import onnxruntime as ort


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{stem}(.gz) in {data_dir}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", default="assets/mnist")
    ap.add_argument("--mean", type=float, default=0.1307)
    ap.add_argument("--std", type=float, default=0.3081)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reference", action="store_true")
    a = ap.parse_args()
    images = read_idx(find(a.data, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(a.data, "t10k-labels-idx1-ubyte"))
    x = ((images.astype(np.float32) / 255.0 - a.mean) / a.std)[:, None, :, :].astype(np.float32)
    opts = ort.SessionOptions()
    if a.reference:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), a.batch):
        logits = sess.run(None, {name: x[i : i + a.batch]})[0]
        correct += int((logits.argmax(axis=1) == labels[i : i + a.batch]).sum())
    mode = " (reference, no graph optimizations)" if a.reference else ""
    print(f"{a.model}: ONNX Runtime{mode} accuracy {100.0 * correct / len(x):.2f}% ({correct}/{len(x)})")


if __name__ == "__main__":
    main()
