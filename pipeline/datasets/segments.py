"""Sultani's 32-segment C3D features (`mgfn data ucf-crime --layout sultani32`): rows, frame spans, frame counts.

Sultani et al. (`Save_C3DFeatures_32Segments.m`) average a video's 16-frame C3D clip features (fc6, 4096-d) into
32 segments, one text file of 32 lines x 4096 numbers per video. A row is then not 16 frames, so the ground truth
gives each row's frame span (`spans`), computed from the video's frame count (`datasets.md`, "Segment features").
"""
from __future__ import annotations

import csv
import re
from pathlib import Path, PureWindowsPath

import numpy as np

from mgfn.atomic import atomic_open
from mgfn.errors import InputError

LAYOUTS = ("clips", "sultani32")
SEGMENTS = 32
SEGMENT_DIM = 4096                    # C3D fc6
FRAMES_PER_CLIP = 16
_VIDEO_SUFFIX = re.compile(r"\.(mp4|avi|mkv|mov|webm|mpg|mpeg|m4v)$", re.IGNORECASE)


def sultani_spans(num_frames: int, segments: int = SEGMENTS) -> list[list[int]]:
    """Frame span [a, b) of each segment of a video of `num_frames` frames, by Sultani's rule.

    C = floor(N / 16) clips; b = round(linspace(1, C, 33)), MATLAB rounding (half away from zero), 1-based clips;
    segment i = clips b(i) .. b(i+1) - 1, or clip b(i) alone when that range is empty (C < 33). So the last clip C
    is in no segment unless the last range is empty: its frames, and frames >= 16C, lie after the last span and
    take the last segment's score (the official evaluator gives them 0; this is the usual re-implementation).
    """
    clips = num_frames // FRAMES_PER_CLIP
    if clips < 1:
        raise InputError(f"{num_frames} frames: fewer than one {FRAMES_PER_CLIP}-frame clip")
    # b(k) = round(1 + (C - 1) k / S) for k = 0..S, in integers: floor(x + 1/2) is MATLAB's round for x > 0, and
    # exact where a float could land just beside .5 (numpy's np.round would take 14.5 to 14, MATLAB to 15).
    k = np.arange(segments + 1)
    bounds = 1 + (2 * (clips - 1) * k + segments) // (2 * segments)          # [S + 1] 1-based clip numbers
    spans = []
    for first, nxt in zip(bounds[:-1], bounds[1:]):
        last = max(first, nxt - 1)
        spans.append([int(FRAMES_PER_CLIP * (first - 1)), int(FRAMES_PER_CLIP * last)])
    return spans


def _count_id(name: str) -> str:
    """`Arson/Arson022_x264.mp4` -> `Arson022_x264`, as pipeline.store.video_id names a video file (only a video
    suffix goes, so a bare id with dots keeps them)."""
    return _VIDEO_SUFFIX.sub("", PureWindowsPath(name.strip()).name)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def read_frame_counts(path) -> dict[str, int]:
    """Frame count per video id from MIST's `Temporal_Anomaly_Annotation_New.txt` (7th column), UR-DMU's
    `UCF_Annotation.txt` (2nd column) or a `video_id,num_frames` CSV; the format is told by the first line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: frame-count file not found")
    lines = [(n, ln) for n, ln in enumerate(path.read_text().splitlines(), start=1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise InputError(f"{path}: the frame-count file is empty")
    first = lines[0][1]
    if "," in first:
        rows = [(n, next(csv.reader([ln]))) for n, ln in lines]
        if len(rows[0][1]) >= 2 and _int(rows[0][1][1].strip()) is None:
            rows = rows[1:]                                          # a header line
        pairs = [(n, row[0], row[1] if len(row) > 1 else "") for n, row in rows]
        what = "video_id,num_frames"
    else:
        parts = first.split()
        if len(parts) >= 2 and _int(parts[1]) is not None:
            column, what = 1, "UR-DMU `path frames class s1 e1 s2 e2`"
        elif len(parts) >= 7 and _int(parts[6]) is not None:
            column, what = 6, "MIST `name class s1 e1 s2 e2 frames`"
        else:
            raise InputError(f"{path}:{lines[0][0]}: no frame count: expected MIST's "
                             "Temporal_Anomaly_Annotation_New.txt (7th column), UR-DMU's UCF_Annotation.txt "
                             "(2nd column) or a video_id,num_frames CSV")
        pairs = [(n, ln.split()[0], ln.split()[column] if len(ln.split()) > column else "") for n, ln in lines]
    counts: dict[str, int] = {}
    for lineno, name, value in pairs:
        n = _int(value.strip())
        if n is None or n < 0:
            raise InputError(f"{path}:{lineno}: expected a frame count ({what}), got {value.strip()!r}")
        vid = _count_id(name)
        if counts.get(vid, n) != n:
            raise InputError(f"{path}:{lineno}: {vid} has two frame counts, {counts[vid]} and {n}")
        counts[vid] = n
    return counts


def index_segment_files(folder) -> dict[str, Path]:
    """video id -> `<id>.txt` or `<id>.npy` anywhere under the folder (Sultani's files may sit in class folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: feature folder not found")
    found: dict[str, Path] = {}
    for p in sorted([*folder.rglob("*.txt"), *folder.rglob("*.npy")]):
        if p.stem in found:
            raise InputError(f"{folder}: two feature files for {p.stem}: {found[p.stem]} and {p}")
        found[p.stem] = p
    return found


def read_segment_file(path, segments: int = SEGMENTS, dim: int = SEGMENT_DIM) -> np.ndarray:
    """One video's segment features `[segments, dim]` float32 from a text file (one row per line, numbers apart by
    whitespace) or a `.npy` `[segments, dim]` (or `[segments, 1, dim]`)."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
            raise InputError(f"{path}: not a readable .npy feature file ({type(exc).__name__})") from None
        if arr.ndim == 3 and arr.shape[1] == 1:
            arr = arr[:, 0]                                                    # [S, 1, D] -> [S, D]
        if arr.shape != (segments, dim) or arr.dtype.kind != "f":
            raise InputError(f"{path}: expected {segments} x {dim} float segment features, got shape "
                             f"{tuple(arr.shape)} {arr.dtype}")
        return arr.astype(np.float32)
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if len(rows) != segments:
        raise InputError(f"{path}: {len(rows)} rows, expected {segments} (one segment per line)")
    for i, row in enumerate(rows):
        if len(row) != dim:
            raise InputError(f"{path}: row {i + 1} has {len(row)} numbers, expected {dim}")
    try:
        return np.array(rows, dtype=np.float32)                                # [S, D]
    except ValueError:
        raise InputError(f"{path}: holds something that is not a number") from None


def write_segment_features(src: Path, dst: Path) -> None:
    """Convert one video's segment file into the one-crop layout `[segments, 1, dim]` float32, written atomically."""
    arr = read_segment_file(src)[:, None, :]                                   # [S, 1, D]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(dst) as f:
        np.save(f, arr)


def attach_spans(videos, frame_counts) -> None:
    """Give every test video with a frame count its num_frames and Sultani spans; the others keep spans None
    (the writer leaves them out with a warning, as videos without features)."""
    if frame_counts is None:
        raise InputError("--layout sultani32 needs --frame-counts FILE (the test videos' frame counts: MIST's "
                         "Temporal_Anomaly_Annotation_New.txt, UR-DMU's UCF_Annotation.txt or a "
                         "video_id,num_frames CSV)")
    counts = read_frame_counts(frame_counts)
    for v in videos:
        n = counts.get(v.video_id)
        if v.split != "test" or n is None:
            continue
        if n < FRAMES_PER_CLIP:
            raise InputError(f"{frame_counts}: {v.video_id} has {n} frames, fewer than one "
                             f"{FRAMES_PER_CLIP}-frame clip")
        v.num_frames, v.spans = n, sultani_spans(n)
