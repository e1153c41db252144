"""The real-model table of the real-models issue, measured with the qatlas CLI on this machine:
for every NAME.onnx in ZOO_DIR (made by `tools/fixtures/export_torchvision_zoo.py`), PTQ int8
per-channel calibrated on 1,000 images of IMAGES (an ImageFolder of JPEGs of any size, read
with `--preset imagenet`) under `/usr/bin/time -v` (peak RSS), the simulated output SQNR,
`convert` to an integer bundle with integer-vs-simulation argmax agreement, and one QAT epoch
on the NAME.bn.onnx export (BatchNorm kept) over the first QAT_IMAGES training images.
Float parity with ONNX Runtime is the ignored `torchvision_zoo_agrees_with_onnx_runtime` test.

    python3 tools/zoo_table.py ZOO_DIR IMAGES [MODEL ...] > table.md

Needs only the release binary (`cargo build --release`); no Python packages.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target", "release", "qatlas")
CALIB = 1000
EVAL = 32
QAT_IMAGES = 32


def run(args, timed=False):
    cmd = (["/usr/bin/time", "-v"] if timed else []) + [EXE] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    rss = None
    if timed:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        rss = int(m.group(1)) / 1e6 if m else None
    out = None
    for line in reversed(p.stdout.strip().splitlines()):
        try:
            out = json.loads(line)
            break
        except ValueError:
            continue
    err = p.stderr.strip().splitlines()
    err = [l for l in err if not l.startswith("\t") and not l.startswith("Command exited")]
    return p.returncode, out, rss, (err[-1] if err else "")


def short(msg):
    return msg.replace("|", "/")[:90]


def main(zoo, images, names):
    if not names:
        names = sorted(f[:-5] for f in os.listdir(zoo) if f.endswith(".onnx") and not f.endswith(".bn.onnx"))
    data = ["--data", images, "--preset", "imagenet"]
    print("| model | loads | PTQ int8 SQNR (dB) | PTQ peak RSS, 1,000 images (GB) | calib s | convert: argmax agree | int vs sim SQNR (dB) | QAT epoch (.bn) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        model = os.path.join(zoo, name + ".onnx")
        with tempfile.TemporaryDirectory() as tmp:
            plan = os.path.join(tmp, "plan.ron")
            rc, ptq, rss, err = run(["ptq", "--model", model, *data, "--calib-samples", str(CALIB),
                                     "--limit", str(EVAL), "--out", plan, "--json"], timed=True)
            if rc != 0 or ptq is None:
                loads = "yes" if run(["info", "--model", model])[0] == 0 else "no"
                print(f"| {name} | {loads} | ptq failed: {short(err)} | {rss or '-'} | | | | |", flush=True)
                continue
            sqnr = ptq.get("output_sqnr_db")
            calib_s = ptq.get("calibration_seconds")
            rc, conv, _, err = run(["convert", "--model", model, "--plan", plan, *data, "--eval",
                                    "--limit", str(EVAL), "--out", os.path.join(tmp, "m.qbundle"), "--json"])
            if rc == 0 and conv:
                a = conv.get("agreement") or conv
                agree = a.get("argmax_agreement", a.get("argmax_agree"))
                conv_txt = f"{agree}" if agree is not None else json.dumps(a)[:60]
                conv_sqnr = a.get("sqnr_db", "-")
            else:
                conv_txt, conv_sqnr = f"no: {short(err)}", "-"
            bn = os.path.join(zoo, name + ".bn.onnx")
            rc, qat, qrss, err = run(["qat", "--model", bn, *data, "--epochs", "1", "--batch", "8",
                                      "--calib-samples", "16", "--limit", str(QAT_IMAGES), "--eval-limit", "8",
                                      "--out", os.path.join(tmp, "q.safetensors"), "--json"], timed=True)
            if rc == 0 and qat:
                qat_txt = f"runs ({qat.get('images_per_s', 0):.1f} img/s, {qrss:.2f} GB)"
            else:
                qat_txt = f"no: {short(err)}"
            print(f"| {name} | yes | {sqnr:.1f} | {rss:.2f} | {calib_s:.0f} | {conv_txt} | {conv_sqnr} | {qat_txt} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
