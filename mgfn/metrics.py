"""Frame-level evaluation: snippet scores -> frame scores, ground truth per video, AUCs and false alarms."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

from mgfn.errors import InputError


def frame_scores(snippet_scores: np.ndarray, frames_per_snippet: int = 16) -> np.ndarray:
    """Each snippet score repeated once per frame of its clip (the reference's `np.repeat(scores, 16)`)."""
    return np.repeat(np.asarray(snippet_scores, dtype=np.float64).reshape(-1), frames_per_snippet)


def read_ground_truth(gt_dir, video_id: str, label: int) -> np.ndarray | None:
    """A video's 0/1 frame mask from `<id>.npy` or `<id>.json` (events inclusive); None for a normal video without one."""
    gt_dir = Path(gt_dir)
    npy, js = gt_dir / f"{video_id}.npy", gt_dir / f"{video_id}.json"
    if npy.is_file():
        try:
            mask = np.load(npy, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{npy}: unreadable ground-truth mask ({type(exc).__name__})") from None
        mask = np.asarray(mask).reshape(-1)
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise InputError(f"{npy}: ground-truth mask must hold only 0/1 values")
        return mask.astype(np.int8)
    if js.is_file():
        try:
            obj = json.loads(js.read_text())
            n = int(obj["num_frames"])
            mask = np.zeros(n, dtype=np.int8)
            for start, end in obj.get("events", []):
                mask[max(0, int(start)):min(n, int(end) + 1)] = 1
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{js}: expected {{\"num_frames\": N, \"events\": [[start, end], ...]}} ({exc})") from None
        return mask
    if label == 0:
        return None
    raise InputError(f"{gt_dir}: no ground truth for abnormal test video {video_id!r} ({npy.name} or {js.name})")


@dataclass
class GroundTruth:
    """Frame masks aligned to 16*T per video, and the videos whose mask length was off by more than a clip."""

    masks: list[np.ndarray]
    labels: list[int]
    mismatches: list[str] = field(default_factory=list)


def align_ground_truth(gt_dir, video_ids: list[str], labels: list[int], clip_counts: list[int],
                       frames_per_snippet: int = 16) -> GroundTruth:
    """Load every video's mask and pad (zeros) or cut it to `frames_per_snippet * T`."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise InputError(f"{gt_dir}: ground-truth folder not found")
    masks, mismatches = [], []
    for vid, label, t in zip(video_ids, labels, clip_counts):
        n = frames_per_snippet * t
        mask = read_ground_truth(gt_dir, vid, label)
        if mask is None:
            mask = np.zeros(n, dtype=np.int8)
        if abs(len(mask) - n) > frames_per_snippet:
            mismatches.append(f"{vid}: ground truth has {len(mask)} frames, features cover {n} ({t} clips)")
        mask = mask[:n] if len(mask) >= n else np.pad(mask, (0, n - len(mask)))
        masks.append(mask)
    return GroundTruth(masks, list(labels), mismatches)


def _roc_auc(gt: np.ndarray, scores: np.ndarray) -> float:
    if gt.min() == gt.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(gt, scores)
    return float(auc(fpr, tpr))


def evaluate_scores(per_video_scores: list[np.ndarray], truth: GroundTruth, frames_per_snippet: int = 16,
                    threshold: float = 0.5) -> dict[str, float]:
    """auc (frame ROC-AUC, all frames pooled), pr_auc (trapezoid, as the reference), ap (sklearn),
    auc_abnormal (abnormal videos only), far (share of normal-video frames scored >= threshold)."""
    frames = [frame_scores(s, frames_per_snippet) for s in per_video_scores]
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
