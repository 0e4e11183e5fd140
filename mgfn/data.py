"""Feature lists and batches: `[T, crops, D]` files -> 32 pooled segments + magnitude, B normal + B abnormal.

List formats: our CSV `video_id,label,path` (path relative to the CSV), RTFM `.list` files (one path per
line, the first `n_abnormal` lines abnormal), and one-file-per-crop layouts (`<video>__<k>.npy`).
Everything is validated before training starts; each problem is one `InputError` line naming the file.
"""
from __future__ import annotations

import csv
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mgfn.errors import InputError

_CROP_FILE = re.compile(r"^(?P<video>.+)__(?P<crop>\d+)\.npy$")


@dataclass
class VideoEntry:
    video_id: str
    label: int
    path: Path            # a `[T, crops, D]` / `[T, D]` .npy file, or the `__0.npy` file of a per-crop set
    member: str | None = None   # with a `.npz` path: the name of this video's array inside it

    def load(self, mmap: bool = True) -> np.ndarray:
        """This video's features `[T, crops, D]`."""
        if self.member is not None:
            return load_archived(self.path, self.member)
        return load_features(self.path, mmap)


def _resolve(root: Path, rel: str, list_file: Path, allow_outside: bool) -> Path:
    path = (root / rel).resolve() if not Path(rel).is_absolute() else Path(rel).resolve()
    if not allow_outside and not path.is_relative_to(root.resolve()):
        raise InputError(f"{list_file}: path {rel!r} escapes the list's folder {root} (use allow_outside to permit)")
    return path


def _label(value: str, where: str) -> int:
    if value.strip() not in ("0", "1"):
        raise InputError(f"{where}: label must be 0 or 1, got {value!r}")
    return int(value)


def check_list_file(path: Path) -> None:
    """A one-line InputError unless `path` is a file (a folder of features is the commonest slip)."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder; a list is a file (CSV video_id,label[,path]; `mgfn data` writes them, "
                         "and --features FOLDER points a list's videos at a folder of features)")
    if not path.is_file():
        raise InputError(f"{path}: list file not found")


def read_csv_list(path, allow_outside: bool = False, features=None) -> list[VideoEntry]:
    """Read `video_id,label[,path]`; path defaults to `<video_id>.npy` (or `features`, see `read_list`).

    With a header row, only a column named `path` (or `features_path`) gives paths (a `video_id,label,class` list
    has none); without one, the third column is the path. A path ending in `.npz` means the array named
    `<video_id>` inside it.
    """
    path = Path(path)
    check_list_file(path)
    root = path.parent
    entries, seen, path_col = [], set(), 2
    with path.open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].startswith("#"):
                continue
            if lineno == 1 and row[0].strip().lower() == "video_id":
                header = [c.strip().lower() for c in row]
                path_col = next((header.index(c) for c in ("path", "features_path") if c in header), None)
                continue
            if len(row) < 2:
                raise InputError(f"{path}:{lineno}: expected video_id,label[,path], got {','.join(row)!r}")
            vid = row[0].strip()
            label = _label(row[1], f"{path}:{lineno}")
            rel = row[path_col].strip() if path_col is not None and len(row) > path_col else ""
            if vid in seen:
                raise InputError(f"{path}:{lineno}: duplicate video_id {vid!r}")
            seen.add(vid)
            if features is not None:
                entries.append(feature_entry(vid, label, Path(features)))
                continue
            file = _resolve(root, rel or f"{vid}.npy", path, allow_outside)
            entries.append(VideoEntry(vid, label, file, vid if file.suffix.lower() == ".npz" else None))
    if not entries:
        raise InputError(f"{path}: the list is empty")
    return entries


def feature_entry(video_id: str, label: int, features: Path) -> VideoEntry:
    """A video's entry in a feature set given on its own: a folder of `<video_id>.npy` or one `.npz` archive."""
    if features.suffix.lower() == ".npz":
        return VideoEntry(video_id, label, features, video_id)
    return VideoEntry(video_id, label, features / f"{video_id}.npy")


def read_rtfm_list(path, n_abnormal: int | None = None, allow_outside: bool = True) -> list[VideoEntry]:
    """RTFM `.list`: one feature path per line, the first `n_abnormal` abnormal (UCF train: 810).

    Without `n_abnormal`, labels come from the names (`Normal` in the name means normal), as RTFM's
    UCF test list and ShanghaiTech lists allow. RTFM lists hold absolute paths, so they may point anywhere.
    """
    path = Path(path)
    check_list_file(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    entries = []
    for i, line in enumerate(lines):
        file = _resolve(path.parent, line, path, allow_outside)
        vid = file.name[:-len(".npy")] if file.name.endswith(".npy") else file.name
        vid = vid[:-len("_i3d")] if vid.endswith("_i3d") else vid
        label = int(i < n_abnormal) if n_abnormal is not None else int("normal" not in vid.lower())
        entries.append(VideoEntry(vid, label, file))
    return entries


def read_list(path, n_abnormal: int | None = None, allow_outside: bool = False, features=None) -> list[VideoEntry]:
    """Read a list by its extension: `.csv` (ours) or `.list`/`.txt` (RTFM).

    `features` (a CSV list only): where every video's features are, instead of the list's paths: a folder of
    `<video_id>.npy` files or one `.npz` archive holding an array per video id.
    """
    path = Path(path)
    if features is not None and not Path(features).exists():
        raise InputError(f"{features}: feature folder or archive not found")
    if path.suffix.lower() == ".csv":
        return read_csv_list(path, allow_outside, features)
    if features is not None:
        raise InputError(f"{path}: --features works with CSV lists; an RTFM list names its own files")
    return read_rtfm_list(path, n_abnormal)


def crop_files(path: Path) -> list[Path] | None:
    """The `<video>__0.npy … __k.npy` files of a per-crop feature set, or None when `path` is one file."""
    m = _CROP_FILE.match(path.name)
    if m:
        stem = m.group("video")
    elif path.is_file() or not (path.parent / f"{path.stem}__0.npy").is_file():
        return None
    else:
        stem = path.stem
    found = {}
    for p in path.parent.iterdir():
        pm = _CROP_FILE.match(p.name)
        if pm and pm.group("video") == stem:
            found[int(pm.group("crop"))] = p
    if sorted(found) != list(range(len(found))):
        raise InputError(f"{path}: per-crop files of {stem!r} are not numbered 0..{len(found) - 1}")
    return [found[k] for k in range(len(found))]


def load_features(path: Path, mmap: bool = True) -> np.ndarray:
    """One video's features as `[T, crops, D]` (a `[T, D]` file is one crop; per-crop files are stacked)."""
    files = crop_files(path)
    if files is None and not path.is_file():
        empty = path.parent.is_dir() and not any(path.parent.glob("*.npy"))
        raise InputError(f"{path}: feature file not found" + (f" ({path.parent} holds no .npy files)" if empty else ""))
    arrays = []
    for file in files or [path]:
        try:
            arr = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
            raise InputError(f"{file}: not a readable .npy feature file ({type(exc).__name__})") from None
        if arr.dtype not in (np.float16, np.float32, np.float64):
            raise InputError(f"{file}: features must be float16/32/64, got {arr.dtype}")
        arrays.append(arr)
    if files:
        if any(a.ndim != 2 for a in arrays):
            raise InputError(f"{files[0]}: per-crop files must be [T, D], got {arrays[0].shape}")
        if len({a.shape for a in arrays}) != 1:
            raise InputError(f"{files[0]}: per-crop files of one video differ in shape")
        return np.stack(arrays, axis=1)                                 # [T, crops, D]
    arr = arrays[0]
    if arr.ndim == 2:
        arr = arr[:, None, :]                                           # [T, 1, D]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[2] < 1:
        raise InputError(f"{path}: expected features [T, crops, D] or [T, D], got shape {tuple(arr.shape)}")
    return arr


@functools.lru_cache(maxsize=4)
def _archive(path: Path, pid: int):
    """The open archive, one per process: a forked worker must not share the parent's file offset."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(f"{path}: not a readable .npz archive ({type(exc).__name__})") from None


def load_archived(path: Path, member: str) -> np.ndarray:
    """Array `member` of an `.npz` archive (a whole feature set in one file) as `[T, crops, D]` float32."""
    archive = _archive(Path(path), os.getpid())
    if member not in archive.files:
        raise InputError(f"{path}: no array named {member!r}")
    arr = archive[member]
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise InputError(f"{path}: {member} must be float16/32/64, got {arr.dtype}")
    arr = arr.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[:, None, :]                                           # [T, 1, D]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[2] < 1:
        raise InputError(f"{path}: {member}: expected features [T, crops, D] or [T, D], got shape {tuple(arr.shape)}")
    return arr


def magnitude_channel(features: np.ndarray) -> np.ndarray:
    """L2 norm over the last axis (computed in float64, rounded to float32), kept as a trailing channel."""
    return np.sqrt(np.square(features, dtype=np.float64).sum(-1, keepdims=True)).astype(np.float32)


def segment_bounds(t: int, segments: int = 32) -> np.ndarray:
    """The reference's boundaries: `linspace(0, T, segments+1)` cast to int."""
    return np.linspace(0, t, segments + 1).astype(int)


def pool_segments(features: np.ndarray, segments: int = 32) -> np.ndarray:
    """`[T, crops, D]` -> `[segments, crops, D]`: mean of the clips in each segment, or clip r_i if empty."""
    r = segment_bounds(features.shape[0], segments)
    out = np.empty((segments,) + features.shape[1:], dtype=np.float32)
    for i in range(segments):
        a, b = r[i], r[i + 1]
        out[i] = features[a:b].mean(0, dtype=np.float32) if b > a else features[a]
    return out


def check_finite(arr: np.ndarray, path) -> None:
    """Refuse features holding NaN or inf (they would make every loss and score NaN, or stop training deep in torch)."""
    finite = np.isfinite(arr)
    if not finite.all():
        clip = int(np.flatnonzero(~finite.reshape(len(arr), -1).all(1))[0])
        raise InputError(f"{path}: features hold NaN or inf values (first in row {clip} of {len(arr)})")


@dataclass
class FeatureInfo:
    feature_size: int
    crops: int


def inspect_entries(entries: list[VideoEntry], what: str) -> FeatureInfo:
    """Check every file (shape, dtype, one feature size and crop count) without reading the data."""
    info = None
    for e in entries:
        arr = e.load()
        shape = FeatureInfo(arr.shape[2], arr.shape[1])
        if info is None:
            info, first = shape, e.path
        elif shape != info:
            raise InputError(f"{e.path}: {shape.crops} crops x {shape.feature_size}-d, but {first} has "
                             f"{info.crops} crops x {info.feature_size}-d ({what} list mixes feature sizes)")
    return info


class TrainingSet:
    """All training videos pooled once to `[N, crops, segments, D+1]` (magnitude last), kept in memory."""

    prepared = False    # True once `prepare` has applied a model's input transforms to `data`

    def __init__(self, entries: list[VideoEntry], segments: int = 32, dtype=torch.float32):
        self.entries = entries
        self.info = inspect_entries(entries, "training")
        self.labels = np.array([e.label for e in entries])
        n, c, d = len(entries), self.info.crops, self.info.feature_size
        self.data = torch.empty((n, c, segments, d + 1), dtype=dtype)
        for i, e in enumerate(entries):
            feats = e.load()
            pooled = pool_segments(feats, segments)                        # [S, crops, D]
            if not np.isfinite(pooled).all():                              # NaN and inf survive the means
                check_finite(feats, e.path)
            x = np.concatenate([pooled, magnitude_channel(pooled)], axis=-1)
            self.data[i] = torch.from_numpy(x.transpose(1, 0, 2))          # [crops, S, D+1]

    def indices(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)

    def videos(self):
        """Each video's pooled segments `[crops, segments, D]`, without the magnitude channel (as read)."""
        if self.prepared:
            raise RuntimeError("videos() reads the features as they came, before prepare()")
        for i in range(len(self.entries)):
            yield self.data[i, ..., :-1]

    @torch.no_grad()
    def prepare(self, transform, chunk: int = 64) -> None:
        """Replace `data` by `transform(data)` (a model's per-video input transforms), a few videos at a time."""
        self.data = torch.cat([transform(self.data[i:i + chunk]) for i in range(0, len(self.data), chunk)])
        self.prepared = True


class PairedBatches:
    """One epoch = zip(normal batches, abnormal batches) of B each; drop_last like the reference loaders."""

    def __init__(self, normal: np.ndarray, abnormal: np.ndarray, batch_size: int, shuffle: bool = True):
        for name, idx in (("normal", normal), ("abnormal", abnormal)):
            if len(idx) < batch_size:
                raise InputError(f"training list has {len(idx)} {name} videos, fewer than the batch size {batch_size}")
        self.normal, self.abnormal, self.batch_size, self.shuffle = normal, abnormal, batch_size, shuffle

    def __len__(self) -> int:
        return min(len(self.normal), len(self.abnormal)) // self.batch_size

    def epoch(self, generator: torch.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (normal, abnormal) index batches of one epoch; the order depends only on `generator`."""
        n, a = self.normal, self.abnormal
        if self.shuffle:
            n = n[torch.randperm(len(n), generator=generator).numpy()]
            a = a[torch.randperm(len(a), generator=generator).numpy()]
        b = self.batch_size
        return [(n[i * b:(i + 1) * b], a[i * b:(i + 1) * b]) for i in range(len(self))]


class TestSet:
    """Full-length test videos `[1, crops, T, D+1]` with raw-clip magnitudes; cached in memory when small."""

    __test__ = False    # a name pytest would otherwise try to collect from test modules that import it

    def __init__(self, entries: list[VideoEntry], cache_bytes: int = 2 << 30):
        self.entries = entries
        self.info = inspect_entries(entries, "test")
        for e in entries:
            check_finite(e.load(), e.path)
        sizes = [int(np.prod(e.load().shape)) * 4 for e in entries]
        self._cache = [None] * len(entries) if sum(sizes) <= cache_bytes else None
        self._transform = None

    @property
    def prepared(self) -> bool:
        """True when `video` returns the videos through a model's input transforms (see `prepare`)."""
        return self._transform is not None

    def prepare(self, transform) -> None:
        """Cache each video through `transform` (a model's per-video input transforms) when the set fits in memory:
        training scores the same test videos every epoch. Larger sets stay as read; the model transforms them."""
        if self._cache is not None:
            self._transform = transform
            self._cache = [None] * len(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def clip_counts(self) -> list[int]:
        return [e.load().shape[0] for e in self.entries]

    def video(self, i: int) -> torch.Tensor:
        if self._cache is not None and self._cache[i] is not None:
            return self._cache[i]
        feats = np.asarray(self.entries[i].load(), dtype=np.float32)                # [T, crops, D]
        x = np.concatenate([feats, magnitude_channel(feats)], axis=-1).transpose(1, 0, 2)
        x = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(0)                  # [1, crops, T, D+1]
        if self._transform is not None:
            with torch.no_grad():
                x = self._transform(x)
        if self._cache is not None:
            self._cache[i] = x
        return x
