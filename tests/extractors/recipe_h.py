"""Recipe-H weights and formula-H inputs (shared/reference/README.md sections 2.3 and 3), and writers that save those
weights in each original checkpoint format (Tushar .pth, Caffe2 .pkl, piergiaj .pt, video_features .pt)."""
from __future__ import annotations

import importlib.util
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import torch

# The hash, rules and inputs live in tests/reference_vectors.py (shared with the MGFN parity test); loaded by path
# because tests/ is not a package.
_spec = importlib.util.spec_from_file_location("recipe_h_common", Path(__file__).resolve().parents[1] / "reference_vectors.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
splitmix_uniform = _common.uniform


def formula_h_input(shape) -> torch.Tensor:
    """x[idx] = float32(2 u(12345, idx) - 1) over `shape` in C order."""
    return torch.from_numpy(_common.inputs(shape))


def recipe_h_tensor(name: str, shape, rule: str) -> np.ndarray:
    """One recipe-H tensor (int64 zeros for the `skip` rule)."""
    shape = tuple(shape)
    return np.zeros(shape, dtype=np.int64) if rule == "skip" else _common.tensor(name, shape, rule)


def recipe_h_state_dict(weights_manifest: Path) -> dict[str, torch.Tensor]:
    """All tensors of a reference `weights_manifest.json`, under the reference key names, in reference order."""
    return _common.state_dict(weights_manifest)


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
