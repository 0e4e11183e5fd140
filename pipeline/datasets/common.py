"""What every dataset adapter produces (`Video` records) and the one writer of `train.csv`, `test.csv` and `gt/`.

Feature files are found by video id in a feature folder (`<id>.npy`, `<id>_i3d.npy` or per-crop `<id>__0.npy`);
RTFM-style lists hold the authors' absolute paths, so their entries are mapped by basename onto that folder.
With `layout="sultani32"` the folder holds Sultani's 32-segment files instead (`segments.py`): they are converted
into OUT/features/, and each test video's ground truth lists the frame span of every row.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

import numpy as np

from mgfn.atomic import atomic_open, atomic_path, write_text
from mgfn.data import load_features
from mgfn.errors import InputError
from pipeline.store import video_id

FRAMES_PER_CLIP = 16
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")
_CROP = re.compile(r"__\d+$")


@dataclass
class Video:
    """One video of a dataset: split, video-level label, anomaly classes and (test) frame-level truth."""

    video_id: str
    label: int                                   # 0 normal, 1 abnormal
    split: str                                   # "train" | "test"
    classes: list[str] = field(default_factory=list)
    events: list[tuple[int, int]] | None = None  # inclusive frame ranges (test videos with annotations)
    mask: np.ndarray | None = None               # or a 0/1 mask per frame
    num_frames: int | None = None                # the annotation's frame count, when it gives one
    feature: Path | None = None                  # found in the feature folder
    spans: list[list[int]] | None = None         # frames [a, b) of each feature row, when rows are not clips
    source: Path | None = None                   # the video file or frame folder, when the adapter reads videos


@dataclass
class Sources:
    """Where a dataset's pieces are: videos, annotation, features, lists (any may be missing)."""

    root: Path | None = None
    annotation: Path | None = None
    features: Path | None = None
    train_list: Path | None = None
    test_list: Path | None = None
    config: dict = field(default_factory=dict)   # the dataset's `configs/datasets/*.yaml` settings
    layout: str = "clips"                        # "clips" (one row per 16 frames) or "sultani32" (32 segments)
    frame_counts: Path | None = None             # sultani32: the test videos' frame counts


@dataclass
class Report:
    """What was written, and what did not fit: videos without features (or, for segment features, test videos
    without a frame count), ground truth off by more than a clip."""

    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    missing_features: list[str] = field(default_factory=list)
    missing_frame_counts: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    no_truth: list[str] = field(default_factory=list)
    labels: Path | None = None                   # OUT/labels.csv for `mgfn run`, when the videos themselves are known
    with_features: bool = False                  # the lists name feature files


def list_entry_id(line: str) -> str:
    """A list line (`G:\\dir\\Abuse028_x264_i3d.npy`, `/x/name__3.npy`, `01_0014`) -> its video id."""
    name = PureWindowsPath(line.strip()).name          # splits on both / and \
    for suffix in (".npy", ".mp4", ".avi"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    name = _CROP.sub("", name)
    return name[:-len("_i3d")] if name.endswith("_i3d") else name


def read_id_list(path: Path) -> list[str]:
    """Video ids of a list file, in order, each once (per-crop lines collapse onto their video)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: list file not found")
    ids: dict[str, None] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            ids.setdefault(list_entry_id(line), None)
    return list(ids)


def feature_folder(path: Path) -> Path:
    """The folder holding the .npy files: PATH itself, or its only subfolder (a `mgfn extract` store)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: feature folder not found")
    if not any(path.glob("*.npy")):
        subs = [p for p in path.iterdir() if p.is_dir() and any(p.glob("*.npy"))]
        if len(subs) == 1:
            return subs[0]
    return path


def index_features(folder: Path) -> dict[str, Path]:
    """video id -> feature path for every `<id>.npy`, `<id>_i3d.npy`, `<id>__0.npy` in the folder."""
    found: dict[str, Path] = {}
    for p in sorted(Path(folder).glob("*.npy")):
        stem = p.name[:-len(".npy")]
        if _CROP.search(stem):
            if stem.endswith("__0"):
                found[stem[:-3]] = p
            continue
        found.setdefault(stem[:-len("_i3d")] if stem.endswith("_i3d") else stem, p)
    return found


def find_videos(root: Path) -> list[Path]:
    """Video files and frame folders (folders of images) under ROOT, sorted."""
    out = []
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            out.append(p)
        elif p.is_dir() and any(c.suffix.lower() in (".jpg", ".jpeg", ".png") for c in p.iterdir()):
            out.append(p)
    return out


def split_ids(src: "Sources", annotated_ids: list[str], missing: str) -> tuple[list[str], list[str]]:
    """(test ids, train ids): test from the test list or else the annotated videos; train from the train list,
    else the videos under --root, else the feature folder. `missing` is the error when there is no test source."""
    if src.test_list:
        test_ids = read_id_list(src.test_list)
    elif annotated_ids:
        test_ids = list(annotated_ids)
    else:
        raise InputError(missing)
    if src.train_list:
        train_ids = read_id_list(src.train_list)
    elif src.root:
        train_ids = [video_id(p) for p in find_videos(src.root)]
    elif src.features:
        train_ids = list(_index(src.features, src.layout))
    else:
        train_ids = []
    return test_ids, train_ids


def event_mask(events: list[tuple[int, int]], n: int) -> np.ndarray:
    """0/1 per frame for `n` frames, ones on each inclusive event."""
    mask = np.zeros(n, dtype=np.uint8)
    for start, end in events:
        mask[max(0, start):max(0, min(n, end + 1))] = 1
    return mask


def _link(src: Path, dst: Path, mode: str) -> None:
    if dst.exists():
        dst.unlink()
    if mode == "copy":
        with atomic_path(dst) as tmp:
            shutil.copy2(src, tmp)
        return
    try:
        os.link(src, dst)
    except OSError as exc:
        raise InputError(f"cannot hard-link {src} into {dst.parent} ({exc.strerror}): put --out on the same disk "
                         f"as the features, at or above the feature folder, or pass --link copy") from None


def _feature_files(path: Path) -> list[Path]:
    if path.name.endswith("__0.npy"):
        stem = path.name[:-len("__0.npy")]
        return sorted(path.parent.glob(f"{glob_escape(stem)}__*.npy"))
    return [path]


def glob_escape(name: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def write_dataset(videos: list[Video], out: Path, link: str = "hard", layout: str = "clips") -> Report:
    """Write `out/train.csv`, `out/test.csv` (video_id,label,path,classes) and `out/gt/`, aligned to 16·T
    (or, for segment features, to each video's frame count with the rows' spans)."""
    from pipeline.datasets.segments import write_segment_features

    out = Path(out)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    report = Report()
    for split in ("train", "test"):
        rows = []
        for v in (v for v in videos if v.split == split):
            if v.feature is None and any(x.feature is not None for x in videos):
                report.missing_features.append(v.video_id)
                continue
            if layout == "sultani32" and split == "test" and v.spans is None:
                report.missing_frame_counts.append(v.video_id)       # no spans, so no frame-level evaluation
                continue
            rel = ""
            if v.feature is not None and layout == "sultani32":
                rel = f"features/{v.video_id}.npy"
                write_segment_features(v.feature, out / rel)
            elif v.feature is not None:
                rel = _relative_feature(v.feature, out, link)
            rows.append((v.video_id, v.label, rel, "+".join(v.classes)))
            report.counts.setdefault(split, {0: 0, 1: 0})[v.label] += 1
            if split == "test":
                _write_truth(v, out / "gt", report)
        report.counts.setdefault(split, {0: 0, 1: 0})
        with atomic_open(out / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "label", "path", "classes"])
            w.writerows(rows)
    report.with_features = any(v.feature is not None for v in videos)
    if any(v.source is not None for v in videos):    # `mgfn run`'s dataset: the videos, paths relative to OUT
        report.labels = out / "labels.csv"
        relative = lambda p: Path(os.path.relpath(p.resolve(), out.resolve())).as_posix()  # noqa: E731
        with atomic_open(report.labels, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "label", "split", "path"])
            w.writerows((v.video_id, v.label, v.split, relative(v.source)) for v in videos if v.source is not None)
    return report


def _relative_feature(feature: Path, out: Path, link: str) -> str:
    """The path the CSV holds: relative when the features are under OUT, else linked into OUT/features/."""
    resolved = feature.resolve()
    if resolved.is_relative_to(out.resolve()):
        return resolved.relative_to(out.resolve()).as_posix()
    (out / "features").mkdir(exist_ok=True)
    for f in _feature_files(feature):
        _link(f, out / "features" / f.name, link)
    _keep_extractor_info(feature.parent, out / "features")
    return f"features/{feature.name}"


def _keep_extractor_info(src: Path, dst: Path) -> None:
    """An `mgfn extract` store's `extractor.json` goes with its linked features, so a model trained on them records
    what made them (and `mgfn score` extracts new videos the same way)."""
    info = src / "extractor.json"
    if not info.is_file():
        return
    kept = dst / "extractor.json"
    if not kept.is_file():
        write_text(kept, info.read_text())
    elif kept.read_text() != info.read_text():
        raise InputError(f"{src}: features of another extractor than those already in {dst} (their extractor.json "
                         f"differs): one dataset's features come from one extractor; use another --out, or remove {dst}")


def _write_truth(v: Video, gt: Path, report: Report) -> None:
    """`<id>.npy` (a mask) or `<id>.json` (events), aligned to 16·T when the features are known; with spans,
    `<id>.json` for every test video (normal ones too: their frames count) with num_frames, events and spans."""
    for stale in (gt / f"{v.video_id}.npy", gt / f"{v.video_id}.json"):
        stale.unlink(missing_ok=True)
    if v.spans is not None:
        events = [[int(s), int(e)] for s, e in (v.events or [])]
        if events and max(e for _, e in events) >= v.num_frames + FRAMES_PER_CLIP:
            report.mismatches.append(f"{v.video_id}: an event ends at frame {max(e for _, e in events)}, "
                                     f"the video has {v.num_frames} frames")
        record = {"num_frames": int(v.num_frames), "events": events, "spans": v.spans}
        write_text(gt / f"{v.video_id}.json", json.dumps(record) + "\n")
        if v.label == 1 and not events:
            report.no_truth.append(v.video_id)
        return
    n_feat = FRAMES_PER_CLIP * load_features(v.feature).shape[0] if v.feature is not None else None
    own = len(v.mask) if v.mask is not None else v.num_frames
    if n_feat is not None:
        if own is not None and abs(own - n_feat) > FRAMES_PER_CLIP:
            report.mismatches.append(f"{v.video_id}: annotation has {own} frames, features cover {n_feat} "
                                     f"({n_feat // FRAMES_PER_CLIP} clips)")
        elif own is None and v.events and max(e for _, e in v.events) >= n_feat + FRAMES_PER_CLIP:
            report.mismatches.append(f"{v.video_id}: an event ends at frame {max(e for _, e in v.events)}, "
                                     f"features cover {n_feat} ({n_feat // FRAMES_PER_CLIP} clips)")
    if v.mask is not None:
        mask = np.asarray(v.mask, dtype=np.uint8).reshape(-1)
        if n_feat is not None:
            mask = mask[:n_feat] if len(mask) >= n_feat else np.pad(mask, (0, n_feat - len(mask)))
        with atomic_open(gt / f"{v.video_id}.npy") as f:
            np.save(f, mask)
    elif v.events is not None:
        n = n_feat or own or (max((e for _, e in v.events), default=-1) + 1)
        events = [[int(s), int(e)] for s, e in v.events]
        text = json.dumps({"num_frames": int(n), "events": events}) + "\n"
        write_text(gt / f"{v.video_id}.json", text)
    elif v.label == 1:
        report.no_truth.append(v.video_id)


def _index(features: Path, layout: str) -> dict[str, Path]:
    """video id -> feature file: `.npy` clip features, or (sultani32) segment files `.txt`/`.npy` at any depth."""
    if layout == "sultani32":
        from pipeline.datasets.segments import index_segment_files

        return index_segment_files(features)
    return index_features(feature_folder(features))


def attach_features(videos: list[Video], features: Path | None, layout: str = "clips") -> None:
    """Set each video's feature file from the folder (by id, whatever path a list gave)."""
    if features is None:
        return
    index = _index(features, layout)
    for v in videos:
        v.feature = index.get(v.video_id)
