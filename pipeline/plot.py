"""`mgfn plot features FILE.npy` | `mgfn plot curves RUN_DIR` | `mgfn plot scores VIDEO.csv|VIDEO.npy`: the plots of
pipeline.report. Row scores (`mgfn eval --scores-dir`) are spread over 16-frame clips, or over the rows' frame spans
where the ground truth gives them."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mgfn.errors import InputError
from pipeline import report


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    report.add_plot_arguments(sub.add_parser(
        "features", help="a feature file as a heat map, per-clip mean, one clip",
        description="Write a PNG of a feature file ([T, crops, D] or [T, D] .npy from mgfn extract, crops averaged): "
                    "a clips x channels heat map, the per-clip mean and L2 norm, and the channels of one clip."))
    curves = sub.add_parser(
        "curves", help="per-epoch ROC-AUC, PR-AUC and loss terms of a training run",
        description="Write a PNG of a training run's metrics.csv: per-epoch ROC-AUC, PR-AUC and AP on one panel, "
                    "and each loss term on a panel of its own with its own scale (the terms differ by orders of "
                    "magnitude).")
    curves.add_argument("run", type=Path, help="run folder (or its metrics.csv)")
    curves.add_argument("--out", type=Path, help="PNG to write (default: RUN/curves.png)")
    scores = sub.add_parser(
        "scores", help="a scored video: frame scores (<video-id>.csv from mgfn score) or row scores (<video-id>.npy "
                       "from mgfn eval --scores-dir)",
        description="Write a PNG of a video's anomaly score over time, from frame scores (<video-id>.csv of mgfn "
                    "score) or row scores (<video-id>.npy of mgfn eval --scores-dir). With --gt the ground-truth "
                    "events are shaded red and row scores are spread over the rows' frame spans (else over 16-frame "
                    "clips).")
    scores.add_argument("csv", type=Path, metavar="FILE", help="<video-id>.csv or <video-id>.npy")
    scores.add_argument("--out", type=Path, help="PNG to write (default: FILE with .png)")
    scores.add_argument("--gt", type=Path, help="with an .npy: ground-truth folder or JSON file (as mgfn eval --gt); "
                                                "its events are shaded and its spans say which frames each row covers")
    scores.add_argument("--fps", type=float, help="with an .npy: frames per second for a time axis (default: frames)")


def main(args) -> int:
    if args.what == "features":
        return report.plot_features_main(args)
    if args.what == "curves":
        metrics = args.run / "metrics.csv" if args.run.is_dir() else args.run
        print(report.plot_training_curves(metrics, args.out or metrics.with_name("curves.png")))
        return 0
    if not args.csv.is_file():
        raise InputError(f"{args.csv}: not found")
    if args.csv.suffix == ".npy":
        return plot_row_scores(args)
    with args.csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "score" not in rows[0]:
        raise InputError(f"{args.csv}: expected columns frame,time_s,score")
    scores = np.array([float(r["score"]) for r in rows])
    fps = (len(rows) - 1) / float(rows[-1]["time_s"]) if len(rows) > 1 and float(rows[-1]["time_s"]) > 0 else 25.0
    print(report.plot_scores(scores, fps, path=args.out or args.csv.with_suffix(".png"), title=args.csv.stem))
    return 0


def plot_row_scores(args) -> int:
    """`mgfn plot scores ROWS.npy [--gt GT]`: each row's score over its span (or 16-frame clip), events shaded."""
    from mgfn.metrics import frame_scores, read_ground_truth

    try:
        rows = np.load(args.csv, allow_pickle=False).astype(np.float64).reshape(-1)       # [T]
    except (OSError, ValueError) as exc:
        raise InputError(f"{args.csv}: not a readable .npy of row scores ({type(exc).__name__})") from None
    vid = args.csv.stem
    truth = read_ground_truth(args.gt, vid, 0) if args.gt else None
    if truth is not None and truth.spans is not None:
        frames = frame_scores(rows, spans=truth.spans, num_frames=len(truth.mask))              # [num_frames]
    else:
        frames = frame_scores(rows)                                                             # [16 * T]
    events = None
    if truth is not None:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], truth.mask, [0]])))
        events = [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2])]       # inclusive frame ranges
    print(report.plot_scores(frames, args.fps or 1.0, events, path=args.out or args.csv.with_suffix(".png"),
                             title=vid, seconds=args.fps is not None))
    return 0
