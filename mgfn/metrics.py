"""Frame-level evaluation: row scores -> frame scores, ground truth per video, AUCs and false alarms.

A feature row is a 16-frame clip unless the video's ground truth lists each row's frame span (`spans`, as for
Sultani's 32 C3D segments per video): then every frame takes the score of the row whose span holds it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from mgfn.errors import InputError


def check_spans(spans, num_frames: int, where: str) -> np.ndarray:
    """Spans as int64 `[T, 2]` (row i covers frames [a, b)), checked: 0 <= a < b <= num_frames, both ends
    non-decreasing row after row."""
    try:
        arr = np.asarray(spans)
    except ValueError:
        raise InputError(f"{where}: spans must be a list of [start, end] frame pairs") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or arr.dtype.kind not in "iu":
        raise InputError(f"{where}: spans must be a non-empty list of [start, end] integer frame pairs")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero((arr[:, 0] < 0) | (arr[:, 0] >= arr[:, 1]) | (arr[:, 1] > num_frames))
    if bad.size:
        a, b = arr[bad[0]]
        raise InputError(f"{where}: span {bad[0]} [{a}, {b}) is empty or outside the video's {num_frames} frames")
    back = np.flatnonzero((np.diff(arr[:, 0]) < 0) | (np.diff(arr[:, 1]) < 0))
    if back.size:
        raise InputError(f"{where}: spans must be non-decreasing, but span {back[0] + 1} starts or ends before "
                         f"span {back[0]}")
    return arr


def span_rows(spans: np.ndarray, num_frames: int) -> np.ndarray:
    """The row each frame takes `[num_frames]`: frame f in spans[i] takes row i (the later row where spans
    overlap, as the official evaluator overwrites); a frame in no span takes the row before it (so frames after
    the last span take the last row), frames before the first span the first row."""
    rows = np.full(num_frames, -1, dtype=np.int64)
    for i, (start, end) in enumerate(spans):
        rows[start:end] = i
    # Spans are non-decreasing, so the rows are too: a running maximum carries the last row over uncovered frames.
    np.maximum.accumulate(rows, out=rows)
    rows[rows < 0] = 0
    return rows


def frame_scores(snippet_scores: np.ndarray, frames_per_snippet: int = 16, spans=None,
                 num_frames: int | None = None) -> np.ndarray:
    """Per-frame scores: each snippet repeated `frames_per_snippet` times (the reference's `np.repeat(scores, 16)`),
    or with `spans` each row's score over its span for `num_frames` frames (default: to the last span's end)."""
    scores = np.asarray(snippet_scores, dtype=np.float64).reshape(-1)
    if spans is None:
        return np.repeat(scores, frames_per_snippet)
    spans = check_spans(spans, np.iinfo(np.int64).max if num_frames is None else num_frames, "spans")
    num_frames = int(spans[-1, 1]) if num_frames is None else num_frames
    if len(spans) != len(scores):
        raise InputError(f"{len(scores)} row scores but {len(spans)} spans")
    return scores[span_rows(spans, num_frames)]


@dataclass
class VideoTruth:
    """One video's 0/1 frame mask, and each feature row's frame span when rows are not 16-frame clips."""

    mask: np.ndarray                     # [num_frames] int8
    spans: np.ndarray | None = None      # [T, 2] int64: row i covers frames [a, b)


class _NamedTruth(dict):
    """A dict of per-video ground truth that remembers the file it came from (for error messages)."""

    def __init__(self, entries: dict, path: Path):
        super().__init__(entries)
        self.path = path


def _source(gt):
    """A ground-truth folder (Path), or a dict {video_id: {...}} given as such or as one JSON file."""
    if isinstance(gt, dict):
        return gt
    path = Path(gt)
    if path.is_dir():
        return path
    if not path.is_file():
        raise InputError(f"{path}: ground-truth folder or JSON file not found")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or "num_frames" in obj or not all(isinstance(v, dict) for v in obj.values()):
        raise InputError(f"{path}: expected one JSON object {{video_id: {{\"num_frames\", \"events\", \"spans\"}}}}")
    return _NamedTruth(obj, path)


def _parse_entry(obj, where: str) -> VideoTruth:
    """`{"num_frames": N, "events": [[s, e], ...] (inclusive), "spans": [[a, b), ...] (optional)}` -> VideoTruth."""
    try:
        n = int(obj["num_frames"])
        mask = np.zeros(n, dtype=np.int8)
        for start, end in obj.get("events", []):
            mask[max(0, int(start)):min(n, int(end) + 1)] = 1
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{where}: expected {{\"num_frames\": N, \"events\": [[start, end], ...]}} ({exc})") from None
    spans = obj.get("spans")
    return VideoTruth(mask, None if spans is None else check_spans(spans, n, where))


def read_ground_truth(gt, video_id: str, label: int) -> VideoTruth | None:
    """A video's mask (and spans) from a folder's `<id>.npy` or `<id>.json` (events inclusive), a JSON file of
    all videos or a dict `{id: {"num_frames", "events", "spans"}}`; None for a normal video without one."""
    gt = _source(gt)
    if isinstance(gt, dict):
        where = f"{gt.path}: {video_id}" if isinstance(gt, _NamedTruth) else f"ground truth of {video_id!r}"
        if video_id in gt:
            return _parse_entry(gt[video_id], where)
        if label == 0:
            return None
        raise InputError(f"{getattr(gt, 'path', 'ground truth')}: no entry for abnormal test video {video_id!r}")
    npy, js = gt / f"{video_id}.npy", gt / f"{video_id}.json"
    if npy.is_file():
        try:
            mask = np.load(npy, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{npy}: unreadable ground-truth mask ({type(exc).__name__})") from None
        mask = np.asarray(mask).reshape(-1)
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise InputError(f"{npy}: ground-truth mask must hold only 0/1 values")
        return VideoTruth(mask.astype(np.int8))
    if js.is_file():
        try:
            obj = json.loads(js.read_text())
        except ValueError as exc:
            raise InputError(f"{js}: not valid JSON ({exc})") from None
        return _parse_entry(obj, str(js))
    if label == 0:
        return None
    raise InputError(f"{gt}: no ground truth for abnormal test video {video_id!r} ({npy.name} or {js.name})")


@dataclass
class GroundTruth:
    """Frame masks per video (16*T frames, or all num_frames where rows have spans), each video's spans (None:
    16-frame clips) and the videos whose mask length was off by more than a clip."""

    masks: list[np.ndarray]
    labels: list[int]
    mismatches: list[str] = field(default_factory=list)
    spans: list[np.ndarray | None] = field(default_factory=list)


def align_ground_truth(gt, video_ids: list[str], labels: list[int], clip_counts: list[int],
                       frames_per_snippet: int = 16) -> GroundTruth:
    """Load every video's truth from a folder, one JSON file or a dict (see read_ground_truth). Without spans,
    pad (zeros) or cut the mask to `frames_per_snippet * T`; with spans, keep all frames and check one span per row."""
    source = _source(gt)
    masks, spans, mismatches = [], [], []
    for vid, label, t in zip(video_ids, labels, clip_counts):
        n = frames_per_snippet * t
        truth = read_ground_truth(source, vid, label)
        if truth is not None and truth.spans is not None:
            if len(truth.spans) != t:
                where = source / f"{vid}.json" if isinstance(source, Path) else getattr(source, "path", "ground truth")
                raise InputError(f"{where}: {vid} has {len(truth.spans)} spans but its features have {t} rows")
            masks.append(truth.mask)
            spans.append(truth.spans)
            continue
        mask = truth.mask if truth is not None else np.zeros(n, dtype=np.int8)
        if abs(len(mask) - n) > frames_per_snippet:
            mismatches.append(f"{vid}: ground truth has {len(mask)} frames, features cover {n} ({t} clips)")
        mask = mask[:n] if len(mask) >= n else np.pad(mask, (0, n - len(mask)))
        masks.append(mask)
        spans.append(None)
    return GroundTruth(masks, list(labels), mismatches, spans)


def _roc_auc(gt: np.ndarray, scores: np.ndarray) -> float:
    if gt.min() == gt.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(gt, scores)
    return float(auc(fpr, tpr))


def evaluate_scores(per_video_scores: list[np.ndarray], truth: GroundTruth, frames_per_snippet: int = 16,
                    threshold: float = 0.5) -> dict[str, float]:
    """auc (frame ROC-AUC, all frames pooled), pr_auc (trapezoid, as the reference), ap (sklearn),
    auc_abnormal (abnormal videos only), far (share of normal-video frames scored >= threshold).

    A video with spans in `truth` spreads each row's score over its span; the others repeat it per 16 frames.
    """
    spans = truth.spans or [None] * len(truth.masks)
    frames = [frame_scores(s, frames_per_snippet) if sp is None else frame_scores(s, spans=sp, num_frames=len(m))
              for s, sp, m in zip(per_video_scores, spans, truth.masks)]
    pred, gt = np.concatenate(frames), np.concatenate(truth.masks)
    if len(pred) != len(gt):
        raise InputError(f"{len(pred)} frame scores but {len(gt)} ground-truth frames")
    out = {"auc": _roc_auc(gt, pred)}
    if gt.max() > 0:
        precision, recall, _ = precision_recall_curve(gt, pred)
        out["pr_auc"] = float(auc(recall, precision))
        out["ap"] = float(average_precision_score(gt, pred))
    else:
        out["pr_auc"] = out["ap"] = float("nan")
    abn = [i for i, label in enumerate(truth.labels) if label == 1]
    if abn:
        out["auc_abnormal"] = _roc_auc(np.concatenate([truth.masks[i] for i in abn]),
                                       np.concatenate([frames[i] for i in abn]))
    else:
        out["auc_abnormal"] = float("nan")
    normal = [frames[i] for i, label in enumerate(truth.labels) if label == 0]
    out["far"] = float((np.concatenate(normal) >= threshold).mean()) if normal else float("nan")
    return out


def video_auc(labels, video_scores) -> float:
    """Video-level ROC-AUC (used on a held-out validation split, which has no frame labels)."""
    labels, video_scores = np.asarray(labels), np.asarray(video_scores, dtype=np.float64)
    return _roc_auc(labels, video_scores)
