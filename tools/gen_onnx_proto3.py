"""Regenerates proto/onnx.proto3 from the `onnx` Python package's own proto definition.

The onnx wheel no longer ships onnx.proto3 itself (onnx 1.23 ships onnx.in.proto, onnx.proto and
gen_proto.py), so this runs onnx's own generator (`onnx.gen_proto.translate`, the code that made
the onnx.proto3 the ONNX repository used to carry) on `onnx.in.proto`: proto3 syntax, `optional`
dropped, package `onnx`, no ONNX-ML extensions.

Usage: .venv/bin/python tools/gen_onnx_proto3.py   (from the repository root; needs `pip install onnx`)
"""

import os
import sys

import onnx
from onnx import gen_proto

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "proto", "onnx.proto3")


def main() -> None:
    src_path = os.path.join(os.path.dirname(onnx.__file__), "onnx.in.proto")
    with open(src_path, encoding="utf-8") as f:
        source = f.read()
    body = gen_proto.translate(source, proto=3, onnx_ml=False, package_name="onnx")
    header = (
        "//\n"
        "// Vendored for qatlas by tools/gen_onnx_proto3.py from the onnx Python package\n"
        f"// version {onnx.__version__} (onnx/onnx.in.proto through onnx.gen_proto.translate, proto3,\n"
        "// without ONNX-ML). Licensed under the Apache License 2.0 by the ONNX Project Contributors.\n"
        "// Do not edit by hand: rerun the script.\n"
        "//\n\n"
    )
    with open(OUT, "w", newline="\n", encoding="utf-8") as f:
        f.write(header)
        f.write(body.replace("\r\n", "\n"))
        f.write("\n")
    print(f"wrote {os.path.normpath(OUT)} from onnx {onnx.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
