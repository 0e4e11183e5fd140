"""`mgfn plot features FILE.npy` | `mgfn plot curves RUN_DIR` | `mgfn plot scores VIDEO.csv`: the plots of pipeline.report."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mgfn.errors import InputError
from pipeline import report


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    report.add_plot_arguments(sub.add_parser("features", help="a feature file as a heat map, per-clip mean, one clip"))
    curves = sub.add_parser("curves", help="per-epoch ROC-AUC and PR-AUC of a training run")
    curves.add_argument("run", type=Path, help="run folder (or its metrics.csv)")
    curves.add_argument("--out", type=Path, help="PNG to write (default RUN/curves.png)")
    scores = sub.add_parser("scores", help="a scored video's frame scores (<video-id>.csv from mgfn score)")
    scores.add_argument("csv", type=Path)
    scores.add_argument("--out", type=Path, help="PNG to write (default: the CSV with .png)")


def main(args) -> int:
    if args.what == "features":
        return report.plot_features_main(args)
    if args.what == "curves":
        metrics = args.run / "metrics.csv" if args.run.is_dir() else args.run
        print(report.plot_training_curves(metrics, args.out or metrics.with_name("curves.png")))
        return 0
    if not args.csv.is_file():
        raise InputError(f"{args.csv}: not found")
    with args.csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "score" not in rows[0]:
        raise InputError(f"{args.csv}: expected columns frame,time_s,score")
    scores = np.array([float(r["score"]) for r in rows])
    fps = (len(rows) - 1) / float(rows[-1]["time_s"]) if len(rows) > 1 and float(rows[-1]["time_s"]) > 0 else 25.0
    print(report.plot_scores(scores, fps, path=args.out or args.csv.with_suffix(".png"), title=args.csv.stem))
    return 0
