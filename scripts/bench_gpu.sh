#!/usr/bin/env bash
# GPU extraction benchmark (scripts/bench_gpu.py): 16 generated UCF-like videos (2,000-8,000 frames, 320x240,
# 30 fps) end to end (sequential, --decoders N, compiled, Ray when installed), the network alone (eager,
# autotuned, compiled; bf16 and float32), peak GPU memory and a kernel profile, as one JSON line.
# Caffe2 I3D-R50, 10 crops, random weights (speed does not depend on them). Self-contained, under 8 minutes.
#
#   bash scripts/bench_gpu.sh [bench_gpu.py options]   # JSON to $OUT/bench_gpu.json when OUT is set, else /tmp/bench_gpu/
#
# Python: .venv/bin/python when it has torch, else python3.11 / python3 with the packages the project needs.
# Packages missing on a bare GPU machine may be carried in: wheels in .whl/ (installed into /tmp/site), and
# plain package folders (pytorchvideo, fvcore, iopath, ...) in .gpu_site/. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${OUT:-/tmp/bench_gpu}"
mkdir -p "$OUT_DIR"

PY=.venv/bin/python
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    PY=$(command -v python3.11 || command -v python3)
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if [ -d .gpu_site ]; then export PYTHONPATH="$PWD/.gpu_site${PYTHONPATH:+:$PYTHONPATH}"; fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" - <<'EOF' 2>&1 | tee "$OUT_DIR/bench_gpu_env.txt"
import os, platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version(), "available", torch.cuda.is_available(), "cpus", os.cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "sm", f"{p.major}.{p.minor}")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv,noheader | tee -a "$OUT_DIR/bench_gpu_env.txt" || true

PYTHONUNBUFFERED=1 timeout 470 "$PY" scripts/bench_gpu.py --json-out "$OUT_DIR/bench_gpu.json" "$@" \
    2> >(tee "$OUT_DIR/bench_gpu.log" >&2)
