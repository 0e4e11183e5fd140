"""`mgfn eval`: score every test video with a checkpoint and report frame-level metrics.

Each snippet score stands for 16 frames, or for its frame span where the ground truth lists one per row (`spans`).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mgfn.atomic import atomic_open
from mgfn.checkpoint import load_model
from mgfn.data import TestSet, read_list
from mgfn.errors import InputError
from mgfn.metrics import align_ground_truth, evaluate_scores


@torch.no_grad()
def predict(model, test_set: TestSet, device="cpu", progress: bool = False) -> list[np.ndarray]:
    """Crop-averaged snippet scores `[T]` for every test video, in list order."""
    model.eval()
    out = []
    for i in tqdm(range(len(test_set)), desc="eval", unit="video", disable=not progress, leave=False):
        x = test_set.video(i).to(device)
        out.append(model.predict(x, prepared=test_set.prepared)[0].float().cpu().numpy())
    return out


def check_feature_size(model, info, where: str) -> None:
    if model.config.feature_size != info.feature_size:
        raise InputError(f"{where}: features are {info.feature_size}-d but the model expects "
                         f"{model.config.feature_size}-d (checkpoint from a different feature size)")


def add_arguments(parser) -> None:
    from pipeline.cli import add_device_argument, add_quiet_argument

    parser.add_argument("--model", required=True, help="checkpoint: ours (best.pt/last.pt) or an official state dict")
    parser.add_argument("--test", required=True, help="test list: CSV video_id,label,path or an RTFM .list")
    parser.add_argument("--gt", required=True,
                        help="ground truth: a folder of <video_id>.npy frame masks or <video_id>.json "
                             "{num_frames, events[, spans]}, or one JSON file {video_id: {num_frames, events, spans}}; "
                             "with spans, each feature row's score covers its frame span [a, b)")
    parser.add_argument("--scores-dir", help="write each video's crop-averaged snippet scores as <video_id>.npy [T]")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the metrics")
    parser.add_argument("--frames-per-snippet", type=int, default=16,
                        help="frames each snippet score stands for; not used for videos whose ground truth has spans")
    add_device_argument(parser)
    add_quiet_argument(parser, help="no progress bar (--json implies it)")


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" is CUDA when available, else CPU; anything else is checked (a one-line InputError) and passed to
    torch.device. The extractors' twin (extractors.extractor.resolve_device) says the same: mgfn does not import it."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def main(args) -> int:
    device = resolve_device(args.device)
    entries = read_list(args.test)
    test_set = TestSet(entries)
    model, ckpt = load_model(args.model, device=device)
    check_feature_size(model, test_set.info, args.test)
    truth = align_ground_truth(args.gt, [e.video_id for e in entries], [e.label for e in entries],
                               test_set.clip_counts(), args.frames_per_snippet)
    scores = predict(model, test_set, device, progress=not (args.json or args.quiet))
    metrics = evaluate_scores(scores, truth, args.frames_per_snippet)
    if args.scores_dir:
        out = Path(args.scores_dir)
        out.mkdir(parents=True, exist_ok=True)
        for e, s in zip(entries, scores):
            with atomic_open(out / f"{e.video_id}.npy") as f:
                np.save(f, s.astype(np.float32))
    for line in truth.mismatches:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        record = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
        record.update(videos=len(entries), checkpoint=str(args.model), epoch=ckpt.get("epoch"))
        if args.scores_dir:
            record["scores_dir"] = str(args.scores_dir)
        print(json.dumps(record))
    else:
        print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({len(entries)} videos)"
              + (f"; row scores in {args.scores_dir}" if args.scores_dir else ""))
    return 0
