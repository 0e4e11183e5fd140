#!/usr/bin/env bash
# GPU benchmark of I3D feature extraction: scripts/bench_extract.py on CUDA (Caffe2 I3D-R50, 10 crops, random
# weights): end-to-end vs model-only frames/s, float32 (TF32 off) matmul and model GMAC/s, naive baseline,
# bfloat16 vs float32 speed and cosine, peak RSS on a 10x longer video. Self-contained, about 2-4 minutes.
#
#   bash scripts/bench_gpu.sh            # JSON to $OUT/bench_gpu.json when OUT is set, else /tmp/bench_gpu/
#
# Needs a Python with the project's torch (CUDA build): the carried .venv, else python3.11 / python3 with
# .venv's site-packages on PYTHONPATH (an existing PYTHONPATH is kept after them). Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${OUT:-/tmp/bench_gpu}"
mkdir -p "$OUT_DIR"

PY=.venv/bin/python
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    PY=""
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && \
           PYTHONPATH="$PWD/.venv/lib/python3.11/site-packages:$PWD${PYTHONPATH:+:$PYTHONPATH}" "$candidate" -c "import torch" >/dev/null 2>&1; then
            PY="$candidate"
            export PYTHONPATH="$PWD/.venv/lib/python3.11/site-packages:$PWD${PYTHONPATH:+:$PYTHONPATH}"
            break
        fi
    done
    if [ -z "$PY" ]; then
        echo "bench_gpu: no Python with torch found (.venv/bin/python, python3.11, python3)" | tee "$OUT_DIR/bench_gpu.log" >&2
        exit 2
    fi
fi

"$PY" - <<'EOF' 2>&1 | tee "$OUT_DIR/bench_gpu_env.txt"
import torch, platform, os
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(), "cpus", os.cpu_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.0f} GiB", "sm", f"{p.major}.{p.minor}")
EOF
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "bench_gpu: CUDA is not available to torch here" | tee -a "$OUT_DIR/bench_gpu.log" >&2
    exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv,noheader | tee -a "$OUT_DIR/bench_gpu_env.txt" || true

# 64 clips (1,024 frames) per timed step, 2 rounds each, 4 clips for the (slow, CPU-bound) naive baseline.
timeout 290 "$PY" scripts/bench_extract.py --device cuda --clips 64 --rounds 2 --naive-clips 4 \
    --json-out "$OUT_DIR/bench_gpu.json" 2> >(tee "$OUT_DIR/bench_gpu.log" >&2)
