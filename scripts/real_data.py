#!/usr/bin/env python
"""Real-data benchmark: training recipes on real UCF-Crime features, scored frame by frame with each row's span.

Reads `../shared/data/ucf_crime_c3d` as it is (features.npz, train.csv, test.csv, gt.json: 244 training and 43
test videos, C3D, 32 segments each; its README). Trains every recipe with every seed for its epochs (the
recipe's, as `mgfn train` would, unless `--epochs` says) and
prints, per recipe: the final epoch's frame ROC-AUC, AP and AUC inside abnormal videos only (mean ± std over
seeds), the best epoch on the test set (optimistic: chosen on the test set), the epoch a held-out validation split
picks (with `--select val`: each run then trains on 80 % of the training videos), the seeds whose scores
collapsed, seconds per epoch, and the yardsticks (a video-level oracle, random scores). Then one JSON line.
Runs go to `--jobs` worker processes (one thread each).

    .venv/bin/python scripts/real_data.py --recipes default,mil,reference --seeds 0-4
    .venv/bin/python scripts/real_data.py --recipes default --seeds 0-4 --select val
    .venv/bin/python scripts/real_data.py --recipes default,mil --seeds 0-4 --smooth 8   # pooled training rows
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mgfn.data import TestSet, read_list  # noqa: E402
from mgfn.metrics import align_ground_truth, evaluate_scores  # noqa: E402
from mgfn.train import TrainConfig, parse_seeds, run_training  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ucf_crime_c3d"

# Each recipe is TrainConfig settings on top of `mgfn train`'s own defaults (so "default" is exactly what a user
# gets). "default-X" takes one setting of the default back out (docs/training.md, leave-one-out table).
RECIPES = {
    "default": {},
    "reference": {"recipe": "reference"},
    "mil": {"model_type": "mil"},
    "default-l2": {"model": {"normalize": "none"}},        # clips as they come
    "default-context": {"model": {"center": "median"}},    # centred, without the usual clip beside them
    "default-center": {"model": {"center": "none"}},       # neither centred nor the usual clip: L2-normalised only
    "default+edge": {"model": {"padding": "edge"}},        # end clips repeated instead of zero padding
    "default+wd5e-3": {"weight_decay": 5e-3},
    "default+epochs30": {"epochs": 30},
    "default+epochs100": {"epochs": 100},                  # the previous default's length
    "default-input_dropout": {"model": {"input_dropout": 0.0}},   # the previous default
    "default+cosine": {"lr_schedule": "cosine"},
    # measured on the previous default (docs/training.md)
    "default-input_dropout+cosine": {"lr_schedule": "cosine", "model": {"input_dropout": 0.0}},
    "default-input_dropout+bottom": {"loss": {"w_bottom": 1.0}, "model": {"input_dropout": 0.0}},  # k lowest -> 0
    "i3d_lstm": {"extractor": "i3d_lstm"},                 # an LSTM over each video's rows in front of MGFN
    "i3d_lstm-skip": {"extractor": "i3d_lstm", "model": {"lstm": {"skip": False}}},   # its outputs alone, no clips
    "i3d_lstm+h256": {"extractor": "i3d_lstm", "model": {"lstm": {"hidden": 256}}},
}


def dataset(data: Path) -> dict:
    """The set's lists as `VideoEntry` lists read from its `.npz`, and its ground truth (one JSON file)."""
    for name in ("features.npz", "train.csv", "test.csv", "gt.json"):
        if not (data / name).is_file():
            raise SystemExit(f"real_data.py: {data / name} not found (the real set lives in ../shared/data/ucf_crime_c3d)")
    npz = data / "features.npz"
    return {"train": read_list(data / "train.csv", features=npz), "test": read_list(data / "test.csv", features=npz),
            "gt": data / "gt.json"}


def finished(run: Path, config: dict) -> dict | None:
    """A run kept in `--out` by an earlier call with the same settings and all its epochs: its result, else None."""
    try:
        same = json.loads((run / "job.json").read_text()) == config
        with (run / "metrics.csv").open(newline="") as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not same or len(rows) != TrainConfig(**config).epochs:
        return None
    return {"epochs": rows, "collapsed": summary["collapsed"], "s": 0.0}


def train_one(job: dict) -> dict:
    """One (recipe, seed) run in a worker process (or its result from an earlier call); its per-epoch metrics."""
    import torch
    torch.set_num_threads(job["threads"])
    run = Path(job["run_dir"])
    done = finished(run, job["config"])
    if done is not None:
        return {"recipe": job["recipe"], "seed": job["seed"], **done}
    data = dataset(Path(job["data"]))
    cfg = TrainConfig(**job["config"])
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run_training(data["train"], data["test"], data["gt"], run, cfg, progress=False,
                               log=lambda *_: None, checkpoints=False)
    with (run / "metrics.csv").open(newline="") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    tmp = run / ".job.json.tmp"                                   # what `finished` compares a later call with
    tmp.write_text(json.dumps(job["config"]))
    tmp.replace(run / "job.json")
    return {"recipe": job["recipe"], "seed": job["seed"], "epochs": rows, "collapsed": summary["collapsed"],
            "s": time.perf_counter() - t0}


def smoothed_copy(data: Path, width: int, where: str, folder: Path) -> Path:
    """A copy of the set in `folder` whose rows (every training video's, or with `where="all"` every video's) are
    each replaced by the mean of `width` neighbouring rows (a window of `width`, kept inside the video): such rows
    average `width` times as many clips, as the 32 pooled segments of videos longer than these do."""
    import shutil
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "test.csv", "gt.json"):
        shutil.copy(data / name, folder / name)
    train = {e.video_id for e in read_list(data / "train.csv", features=data / "features.npz")}
    with np.load(data / "features.npz") as npz:
        out = {}
        for vid in npz.files:
            x = npz[vid].astype(np.float32)
            if where == "all" or vid in train:
                t = len(x)
                w = min(width, t)
                sums = np.cumsum(np.pad(x, ((1, 0), (0, 0))), axis=0)
                lo = np.clip(np.arange(t) - w // 2, 0, t - w)
                x = (sums[lo + w] - sums[lo]) / w
            out[vid] = x.astype(np.float16)
    np.savez(folder / "features.npz", **out)
    return folder


def yardsticks(data: dict, draws: int = 20) -> dict:
    """Frame AUC of a video-level oracle (every frame scored with its video's label) and of random row scores."""
    test = data["test"]
    rows = TestSet(test).clip_counts()
    truth = align_ground_truth(data["gt"], [e.video_id for e in test], [e.label for e in test], rows)
    oracle = evaluate_scores([np.full(t, float(e.label)) for e, t in zip(test, rows)], truth)
    rng = np.random.default_rng(0)
    random = [evaluate_scores([rng.random(t) for t in rows], truth)["auc"] for _ in range(draws)]
    return {"oracle_auc": oracle["auc"], "random_auc_mean": float(np.mean(random)), "random_auc_std": float(np.std(random))}


def summarise(recipe: str, runs: list[dict], select_val: bool) -> dict:
    """mean ± std over seeds of the final epoch's metrics, the best-on-test and the validation-selected AUC."""
    final = {k: np.array([r["epochs"][-1][k] for r in runs]) for k in ("auc", "ap", "auc_abnormal")}
    best = np.array([max(e["auc"] for e in r["epochs"]) for r in runs])
    row = {"recipe": recipe, "seeds": [r["seed"] for r in runs], "epochs": len(runs[0]["epochs"]),
           **{f"{k}_mean": float(v.mean()) for k, v in final.items()},
           **{f"{k}_std": float(v.std()) for k, v in final.items()},
           "auc_per_seed": [round(float(a), 4) for a in final["auc"]],
           "best_on_test_mean": float(best.mean()),
           "collapsed": [r["seed"] for r in runs if r["collapsed"]],
           "s_per_epoch": float(np.mean([e["train_s"] for r in runs for e in r["epochs"]]))}   # as first trained
    if select_val:    # the first epoch with the highest validation AUC, as `mgfn train --select val` keeps it
        val = np.array([r["epochs"][int(np.argmax([e["val_auc"] for e in r["epochs"]]))]["auc"] for r in runs])
        row["val_selected_mean"], row["val_selected_std"] = float(val.mean()), float(val.std())
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help="the real set's folder")
    p.add_argument("--recipes", default="default,mil,reference", help=f"comma list of {', '.join(RECIPES)}")
    p.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7")
    p.add_argument("--epochs", type=int, default=None, help="every recipe's epochs (default: each recipe's own)")
    p.add_argument("--select", choices=("last", "val"), default="last",
                   help="val: hold out 20 %% of the training videos and report the epoch they pick too")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (one thread each)")
    p.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder); a later call with "
                                             "the same --out reuses every finished run with the same settings")
    p.add_argument("--smooth", type=int, default=1, metavar="W",
                   help="replace each training video's rows by the mean of W neighbouring rows, so that they average "
                        "W times as many clips as the test rows (as 32 pooled segments of long videos do)")
    p.add_argument("--smooth-where", choices=("train", "all"), default="train",
                   help="all: smooth the test videos' rows as well")
    args = p.parse_args()
    recipes = args.recipes.split(",")
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipes {unknown}; known: {', '.join(RECIPES)}")
    seeds = parse_seeds(args.seeds)
    if args.smooth < 1:
        p.error("--smooth must be 1 or more")
    dataset(args.data)     # a missing file is reported before any work

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.smooth > 1:
            args.data = smoothed_copy(args.data, args.smooth, args.smooth_where, Path(tmp) / "smoothed")
        sticks = yardsticks(dataset(args.data))
        root = args.out or Path(tmp)
        smoothed = f"-smooth{args.smooth}{args.smooth_where}" if args.smooth > 1 else ""
        jobs = [{"recipe": r, "seed": s, "data": str(args.data), "threads": 1,
                 "run_dir": str(root / f"{r}-seed{s}{smoothed}"),
                 "config": {**({"epochs": args.epochs} if args.epochs else {}), "seed": s, "device": "cpu",
                            "select": args.select, **RECIPES[r]}}
                for r in recipes for s in seeds]
        with ProcessPoolExecutor(max(1, args.jobs)) as pool:
            runs = list(pool.map(train_one, jobs))
    wall = time.perf_counter() - t0

    print(f"{'recipe':24s} {'epochs':>6s} {'frame AUC':>15s} {'AP':>13s} {'AUC abnormal':>15s} {'best-on-test':>12s} "
          f"{'val-selected':>15s}  collapsed  s/epoch")
    results = []
    for recipe in recipes:
        row = summarise(recipe, [r for r in runs if r["recipe"] == recipe], args.select == "val")
        results.append(row)
        val = f"{row['val_selected_mean']:.3f} ± {row['val_selected_std']:.3f}" if "val_selected_mean" in row else "-"
        print(f"{recipe:24s} {row['epochs']:6d} {row['auc_mean']:.3f} ± {row['auc_std']:.3f}  {row['ap_mean']:.3f} ± {row['ap_std']:.3f}  "
              f"{row['auc_abnormal_mean']:.3f} ± {row['auc_abnormal_std']:.3f}  {row['best_on_test_mean']:12.3f} "
              f"{val:>15s}  {len(row['collapsed'])}/{len(seeds):<7d}  {row['s_per_epoch']:.2f}")
    print(f"{'video-level oracle':24s} {sticks['oracle_auc']:.4f}")
    print(f"{'random row scores':24s} {sticks['random_auc_mean']:.3f} ± {sticks['random_auc_std']:.3f}")
    length = f"{args.epochs} epochs" if args.epochs else "each recipe's epochs"
    print(f"# {len(runs)} runs ({length}, final epoch unless said) in {wall:.0f} s with {args.jobs} jobs",
          file=sys.stderr)
    print(json.dumps({"select": args.select, "epochs": args.epochs, "seeds": seeds, "wall_s": round(wall, 1),
                      **({"smooth": args.smooth, "smooth_where": args.smooth_where} if args.smooth > 1 else {}),
                      "yardsticks": sticks, "recipes": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
