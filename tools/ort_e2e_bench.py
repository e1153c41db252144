"""End-to-end ONNX Runtime timing of an exported model, for comparison with `qatlas bench e2e`
in the same sitting: images/s at a batch size and single-image latency (medians of repeats).

    python tools/ort_e2e_bench.py MODEL.onnx [--threads 2] [--batch 64] [--repeats 5] [--secs 0.4]

Export the models first: `qatlas export --model assets/seed_cnn_mnist.safetensors --out f.onnx`
(float) and `qatlas ptq --out q.safetensors && qatlas export --model q.safetensors --out q.onnx`
(QDQ int8, which ORT fuses into its integer kernels). Prints one JSON line.
"""

import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def mean_time(fn, secs):
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    n = max(3, int(secs / once))
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--secs", type=float, default=0.4)
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape][1:]
    rng = np.random.default_rng(0)
    xb = rng.standard_normal([a.batch] + shape).astype(np.float32)
    x1 = xb[:1].copy()
    ips, lat = [], []
    for _ in range(a.repeats):
        ips.append(a.batch / mean_time(lambda: s.run(None, {inp.name: xb}), a.secs))
        lat.append(mean_time(lambda: s.run(None, {inp.name: x1}), a.secs) * 1e6)
    print(json.dumps({
        "model": a.model, "threads": a.threads, "batch": a.batch,
        "images_per_s": statistics.median(ips), "latency_us": statistics.median(lat),
        "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
