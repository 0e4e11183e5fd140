"""Plain folders: `ROOT/normal/` and `ROOT/abnormal/` (or `ROOT/{train,test}/{normal,abnormal}/`) of videos or
frame folders, with optional frame labels per video.

Annotation (optional): a folder of `<id>.json` / `<id>.npy` ground truth, or a text file of `id s1 e1 [s2 e2 …]`
lines. Without train/ and test/ subfolders, every annotated video and a `test_fraction` share of the unannotated
normal videos go to test; unannotated abnormal videos stay in train (an abnormal test video without frame labels
could not be evaluated, and training refuses it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgfn.errors import InputError
from mgfn.schema import setting
from pipeline.datasets.common import Sources, Video, attach_features, find_videos, list_entry_id
from pipeline.store import video_id


@dataclass
class FoldersSettings:
    """`adapter:` in configs/datasets/folders.yaml."""

    test_fraction: float = setting(0.3, min=0, max=1, help="without train/ and test/: the share of the unannotated "
                                                            "normal videos that goes to test")


SETTINGS = FoldersSettings     # what DatasetConfig checks `adapter:` against


def read_annotation(path: Path) -> dict[str, dict]:
    """id -> {"events": [...], "num_frames": N} or {"mask": array}."""
    path = Path(path)
    out: dict[str, dict] = {}
    if path.is_dir():
        for p in sorted(path.iterdir()):
            if p.suffix == ".npy":
                out[p.stem] = {"mask": np.asarray(np.load(p, allow_pickle=False)).reshape(-1).astype(np.uint8)}
            elif p.suffix == ".json":
                try:
                    obj = json.loads(p.read_text())
                    out[p.stem] = {"events": [tuple(map(int, e)) for e in obj.get("events", [])],
                                   "num_frames": int(obj["num_frames"]) if "num_frames" in obj else None}
                except (ValueError, KeyError, TypeError) as exc:
                    raise InputError(f"{p}: expected {{\"num_frames\": N, \"events\": [[start, end], ...]}} ({exc})") from None
        return out
    if not path.is_file():
        raise InputError(f"{path}: annotation not found")
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            frames = [int(x) for x in parts[1:]]
        except ValueError:
            raise InputError(f"{path}:{lineno}: expected `video_id start end [start end …]`") from None
        if len(frames) % 2:
            raise InputError(f"{path}:{lineno}: an odd number of frame numbers")
        out[list_entry_id(parts[0])] = {"events": list(zip(frames[::2], frames[1::2])), "num_frames": None}
    return out


def _label_folders(root: Path) -> dict[int, Path]:
    found = {label: root / name for label, name in ((0, "normal"), (1, "abnormal")) if (root / name).is_dir()}
    if not found:
        raise InputError(f"{root}: expected subfolders normal/ and abnormal/ (or train/ and test/ holding them)")
    return found


def load(src: Sources) -> list[Video]:
    if not src.root:
        raise InputError("folders: give --root with normal/ and abnormal/ subfolders")
    root = Path(src.root)
    truth = read_annotation(src.annotation) if src.annotation else {}
    fraction = float((src.config or {}).get("test_fraction", FoldersSettings.test_fraction))
    entries: list[tuple[str, int, str, Path]] = []
    if (root / "train").is_dir() or (root / "test").is_dir():
        for split in ("train", "test"):
            if (root / split).is_dir():
                for label, folder in _label_folders(root / split).items():
                    entries += [(video_id(p), label, split, p) for p in find_videos(folder)]
    else:
        for label, folder in _label_folders(root).items():
            paths = {video_id(p): p for p in find_videos(folder)}
            rest = [v for v in paths if v not in truth] if label == 0 else []   # abnormal: only annotated to test
            chosen = {v for i, v in enumerate(rest) if int((i + 1) * fraction + 0.5) > int(i * fraction + 0.5)}
            entries += [(v, label, "test" if v in truth or v in chosen else "train", p) for v, p in paths.items()]
    videos = []
    for vid, label, split, path in entries:
        t = truth.get(vid, {}) if split == "test" else {}
        videos.append(Video(vid, label, split, ["abnormal"] if label else [], events=t.get("events"),
                            mask=t.get("mask"), num_frames=t.get("num_frames"), source=path))
    attach_features(videos, src.features)
    return videos
