#!/usr/bin/env bash
# lora-bert, PyTorch and onnxruntime side by side on this machine (all-MiniLM-L6-v2, fp32, CPU).
# Not part of CI: it installs PyTorch (with its CUDA wheels, a few GB) into a virtual
# environment of its own, builds the Rust side and runs scripts/bench_reference.py, which
# prints the table for docs/benchmarks.md and writes target/bench-side-by-side.json.
#
#   scripts/bench_side_by_side.sh [--rounds 3] [--impls torch,ort,rust-flex,rust-flex-system-malloc,rust-ndarray]
#
# BENCH_VENV chooses the environment (default target/bench-venv); run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BENCH_VENV:-target/bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "torch==2.15.0" "transformers==5.24.0" "peft==0.21.2" "onnxruntime==1.32.0" "onnx==1.23.2" "onnxscript==0.7.2" \
    "numpy==2.4.6"
cargo build --release --example bench_compare
exec "$venv/bin/python" scripts/bench_reference.py all \
    --rust target/release/examples/bench_compare "$@"
