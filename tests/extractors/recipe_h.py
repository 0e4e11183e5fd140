"""Recipe-H weights and formula-H inputs (shared/reference/README.md sections 2.3 and 3), and writers that save those
weights in each original checkpoint format (Tushar .pth, Caffe2 .pkl, piergiaj .pt, video_features .pt)."""
from __future__ import annotations

import json
import pickle
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix_uniform(seed: int, n: int) -> np.ndarray:
    """u(seed, idx) for idx = 0..n-1 in [0, 1), float64 (splitmix64 finaliser, wrapping uint64 arithmetic)."""
    z = (np.uint64(seed) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def formula_h_input(shape) -> torch.Tensor:
    """x[idx] = float32(2 u(12345, idx) - 1) over `shape` in C order."""
    n = int(np.prod(shape))
    return torch.from_numpy((2.0 * splitmix_uniform(12345, n) - 1.0).astype(np.float32).reshape(shape))


def recipe_h_tensor(name: str, shape, rule: str) -> np.ndarray:
    """One recipe-H tensor: rule evaluated in float64 on s = 2u - 1 with seed crc32(name), rounded once to float32."""
    shape = tuple(shape)
    if rule == "skip":
        return np.zeros(shape, dtype=np.int64)
    n = int(np.prod(shape)) if shape else 1
    s = 2.0 * splitmix_uniform(zlib.crc32(name.encode("utf-8")), n) - 1.0
    if rule == "fanin":
        v = s * np.sqrt(6.0 / (n / shape[0]))
    elif rule == "one":
        v = 1.0 + 0.1 * s
    elif rule in ("small", "mean"):
        v = 0.1 * s
    elif rule == "var":
        v = 1.0 + 0.5 * s * s
    else:
        raise ValueError(f"unknown rule {rule!r}")
    return v.astype(np.float32).reshape(shape)


def recipe_h_state_dict(weights_manifest: Path) -> dict[str, torch.Tensor]:
    """All tensors of a reference `weights_manifest.json`, under the reference key names, in reference order."""
    entries = json.loads(Path(weights_manifest).read_text())
    return {e["name"]: torch.from_numpy(recipe_h_tensor(e["name"], e["shape"], e["rule"])) for e in entries}


# ---- writers in the original formats ----------------------------------------------------------------------------

def _arrow_pairs(text_file: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in Path(text_file).read_text().splitlines():
        if line.startswith("#") or "->" not in line:
            continue
        left, right = line.split("->")
        pairs.append((left.strip(), right.split()[0].strip()))
    return pairs


class _Python2StylePickler(pickle._Pickler):
    """Writes what Python 2 cPickle wrote for numpy arrays: byte strings as BINSTRING, `numpy.core.multiarray`."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_bytes_as_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_bytes_as_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)


def write_caffe2_pkl(tushar_state: dict[str, torch.Tensor], caffe2_blobs_txt: Path, path: Path) -> Path:
    """A synthetic video-nonlocal-net pickle ({"blobs": {...}}, protocol 2, Python 2 layout) with momentum blobs,
    lr and model_iter, as lib/utils/checkpoints.py save_model_params wrote it."""
    blobs = {}
    for blob, key in _arrow_pairs(caffe2_blobs_txt):
        arr = tushar_state[key].numpy()
        blobs[blob] = arr
        blobs[blob + "_momentum"] = np.zeros_like(arr)
    blobs["lr"] = np.array(0.01, dtype=np.float32)
    blobs["model_iter"] = 400001
    with open(path, "wb") as f:
        _Python2StylePickler(f, protocol=2).dump({"blobs": blobs})
    return path


def to_video_features_names(piergiaj_state: dict[str, torch.Tensor], keys_txt: Path) -> dict[str, torch.Tensor]:
    """Rename piergiaj keys to the v-iashin/video_features names listed in `video_features_keys.txt`."""
    return {vf: piergiaj_state[pj] for vf, pj in _arrow_pairs(keys_txt)}


def to_ptv_names(tushar_state: dict[str, torch.Tensor], ptv_keys_txt: Path) -> dict[str, torch.Tensor]:
    """Rename Tushar keys to pytorchvideo `i3d_r50` keys using `pytorchvideo_i3d_r50_keys.txt`."""
    out = {}
    for line in Path(ptv_keys_txt).read_text().splitlines():
        m = re.match(r"^(\S+) \[[\d,]*\] <- (\S+)$", line)
        if m:
            out[m[1]] = tushar_state[m[2]]
    return out
