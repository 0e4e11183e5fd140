"""Recipe H of `../shared/reference/README.md`: deterministic full-rank weights and inputs (splitmix64 hash)."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

_M = np.uint64


def uniform(seed: int, n: int) -> np.ndarray:
    """u(seed, idx) for idx = 0..n-1 in float64, exactly as the README's section 2.3."""
    with np.errstate(over="ignore"):
        z = _M(seed) * _M(2**32) + np.arange(n, dtype=np.uint64)
        z = z + _M(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _M(30))) * _M(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _M(27))) * _M(0x94D049BB133111EB)
        z = z ^ (z >> _M(31))
    return (z >> _M(11)).astype(np.float64) * 2.0**-53


def tensor(name: str, shape, rule: str) -> np.ndarray:
    """One state-dict tensor by its rule (fanin, one, small, mean, var), float64 maths rounded once to float32."""
    n = int(np.prod(shape)) if len(shape) else 1
    s = 2.0 * uniform(zlib.crc32(name.encode()), n) - 1.0
    if rule == "fanin":
        v = s * np.sqrt(6.0 / (n / shape[0]))
    elif rule == "one":
        v = 1.0 + 0.1 * s
    elif rule in ("small", "mean"):
        v = 0.1 * s
    elif rule == "var":
        v = 1.0 + 0.5 * s * s
    else:
        raise ValueError(rule)
    return v.astype(np.float32).reshape(shape)


def state_dict(manifest: Path) -> dict:
    """All tensors of a weights_manifest.json under the reference key names (skip rules left out)."""
    import torch

    out = {}
    for entry in json.loads(Path(manifest).read_text()):
        if entry["rule"] == "skip":
            out[entry["name"]] = torch.zeros(entry["shape"], dtype=torch.int64)
        else:
            out[entry["name"]] = torch.from_numpy(tensor(entry["name"], entry["shape"], entry["rule"]))
    return out


def inputs(shape) -> np.ndarray:
    """Formula H: x[idx] = float32(2 u(12345, idx) - 1) over the shape in C order."""
    n = int(np.prod(shape))
    return (2.0 * uniform(12345, n) - 1.0).astype(np.float32).reshape(shape)
