#!/usr/bin/env python
"""Plain I3D vs I3D-LSTM: final-epoch frame AUC (mean ± std over seeds) and training seconds per epoch.

Three benchmarks, each trained with both models and the same recipe (a narrow MGFN, few epochs, as the demo does):
- context: `mgfn.synthetic_context`, where no clip is anomalous on its own and only the order of clips decides;
- planted: `mgfn.synthetic`, anomalies planted clip by clip (the ordinary synthetic benchmark);
- demo: the demo's videos (`pipeline.scenes`), features by the demo's extraction (random I3D weights unless the
  Kinetics checkpoint is in the torch hub cache; the output says which).
I3D-LSTM runs with the default training input (`sequences`) and, with `--both-inputs`, with the other one too (the
comparison that chose the default). Prints a table, the verdict on the context benchmark, then one JSON line.

    nice -n 5 .venv/bin/python scripts/ablation_lstm.py --seeds 5
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mgfn.lstm import LSTMConfig, parse_lstm_option  # noqa: E402

NARROW = {"dims": [32, 64, 128], "dim_head": 32, "select_by": "score", "center": "none", "ff_dropout": 0.0}
LSTM = {"hidden": 64}
# The small-data recipe of the demo (snippets ranked by score, no contrastive terms), written out so that the
# numbers do not move with mgfn.train's default recipe; lr 1e-3 and 10 epochs for the synthetic sets.
SYNTHETIC = {"epochs": 10, "batch_size": 8, "lr": 1e-3, "weight_decay": 5e-4, "shuffle": True, "select": "last",
             "model": NARROW, "loss": {"w_contrastive": 0.0}}
# Per benchmark: the data and the training settings both models share.
BENCHMARKS = {
    "context": {"data": {"seed": 0},                     # mgfn.synthetic_context's defaults: 256 training videos
                "train": SYNTHETIC},
    # longer videos (160-256 clips): 5-8 clips per pooled segment, where pooling before the LSTM blurs the order
    "context_long": {"data": {"min_clips": 160, "max_clips": 256, "seed": 0},
                     "train": SYNTHETIC},
    "planted": {"data": {"train_normal": 32, "train_abnormal": 32, "test_normal": 16, "test_abnormal": 16,
                         "feature_size": 64, "seed": 0},
                "train": SYNTHETIC},
    "demo": {"data": {"seed": 0}, "train": None},         # the demo's own training settings (pipeline/demo.py)
}


def make_context(root: Path, settings: dict) -> dict:
    from mgfn.synthetic_context import ContextConfig, make_dataset

    return make_dataset(root, ContextConfig(**settings))


def make_planted(root: Path, settings: dict) -> dict:
    from mgfn.synthetic import SynthConfig, make_dataset

    return make_dataset(root, SynthConfig(**settings))


def make_demo(root: Path, settings: dict) -> tuple[dict, dict, bool]:
    """The demo's videos and features (its extraction settings); returns (lists, training settings, random)."""
    import yaml

    from pipeline.demo import DEMO_WEIGHTS, kinetics_weights_cached, make_videos, run_config
    from pipeline.run import run

    random_weights = not kinetics_weights_cached()
    make_videos(root, settings["seed"])
    config = run_config("random" if random_weights else DEMO_WEIGHTS, seed=settings["seed"])
    (root / "demo.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with contextlib.redirect_stdout(io.StringIO()):
        rec = run(root / "demo.yaml", stop_after="extract", log=lambda *_: None)
    rows = {"train": [], "test": []}
    with (root / "labels.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            rows[r["split"]].append((r["video_id"], r["label"], f"features/{rec['extractor_id']}/{r['video_id']}.npy"))
    lists = {"gt": root / "videos" / "gt", "root": root}
    for split, items in rows.items():
        lists[split] = root / f"{split}_features.csv"
        with lists[split].open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "label", "path"])
            w.writerows(items)
    return lists, config["train"], random_weights


def train_one(job: dict) -> dict:
    """One (benchmark, model, seed) run in a worker process: final-epoch frame AUC and mean training s/epoch."""
    import torch

    from mgfn.train import TrainConfig, run_training

    torch.set_num_threads(job["threads"])
    cfg = TrainConfig(**job["config"])
    run = Path(job["run_dir"])
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run_training(job["data"]["train"], job["data"]["test"], job["data"]["gt"], run, cfg,
                               progress=False, log=lambda *_: None, checkpoints=False)
    with (run / "metrics.csv").open(newline="") as f:
        epochs = list(csv.DictReader(f))
    return {**{k: job[k] for k in ("benchmark", "model", "seed")}, "auc": summary["final"]["auc"],
            "s_per_epoch": float(np.mean([float(r["train_s"]) for r in epochs]))}


def models(both_inputs: bool, extra: dict | None = None) -> dict[str, dict | None]:
    """Model name -> LSTM settings (None: plain I3D); `extra` (from --lstm) on top of LSTM."""
    default = LSTMConfig().sequences
    base = {**LSTM, **(extra or {})}
    out = {"I3D": None, f"I3D-LSTM ({default})": {**base, "sequences": default}}
    if both_inputs:
        other = "clips" if default == "pooled" else "pooled"
        out[f"I3D-LSTM ({other})"] = {**base, "sequences": other}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="training seeds per benchmark and model (default 5)")
    p.add_argument("--benchmarks", default="context,planted,demo",
                   help="comma-separated: context, planted, demo (default), context_long")
    p.add_argument("--both-inputs", action="store_true",
                   help="also run I3D-LSTM with the non-default training input (pooled segments vs clip sequences)")
    p.add_argument("--epochs", type=int, help="override every benchmark's epochs (quick checks)")
    p.add_argument("--lstm", default="", help="LSTM settings on top of hidden=64, as `mgfn train --lstm` takes them "
                                              "(e.g. skip=true)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: timings are then per process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--work", type=Path, help="where datasets and runs go (default: a temporary folder)")
    args = p.parse_args()
    names = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    extra = parse_lstm_option(args.lstm)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmarks {unknown}; known: {sorted(BENCHMARKS)}")

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ablation_lstm_") as tmp:
        work = args.work or Path(tmp)
        jobs, notes = [], {}
        for name in names:
            spec = BENCHMARKS[name]
            root = work / name
            if name == "demo":
                data, train, random_weights = make_demo(root, spec["data"])
                notes[name] = ("demo videos, features with RANDOM I3D weights (no Kinetics checkpoint in the torch hub "
                               "cache)" if random_weights else "demo videos, Kinetics I3D features")
            else:
                data = (make_context if name.startswith("context") else make_planted)(root, spec["data"])
                train = spec["train"]
            data = {k: str(v) for k, v in data.items() if k in ("train", "test", "gt")}
            for model, lstm in models(args.both_inputs, extra).items():
                for seed in range(args.seeds):
                    model_settings = {**train["model"], **({"lstm": lstm} if lstm else {})}
                    config = {**train, "seed": seed, "device": "cpu", "model": model_settings}
                    if args.epochs:
                        config["epochs"] = args.epochs
                    jobs.append({"benchmark": name, "model": model, "seed": seed, "config": config, "data": data,
                                 "threads": args.threads,
                                 "run_dir": str(work / "runs" / f"{name}-{model.replace(' ', '_')}-{seed}")})
        print(f"{len(jobs)} runs ({len(names)} benchmarks x {len(models(args.both_inputs, extra))} models x {args.seeds} "
              f"seeds), {args.jobs} worker(s)", file=sys.stderr, flush=True)
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                results = list(pool.map(train_one, jobs))
        else:
            results = [train_one(j) for j in jobs]

    table = {}
    for r in results:
        table.setdefault(r["benchmark"], {}).setdefault(r["model"], []).append(r)
    print("| benchmark | model | frame AUC mean ± std | per seed | s/epoch |")
    print("|---|---|---|---|---|")
    summary = {}
    for name, by_model in table.items():
        for model, runs in by_model.items():
            auc = np.array([r["auc"] for r in runs])
            secs = float(np.mean([r["s_per_epoch"] for r in runs]))
            summary.setdefault(name, {})[model] = {"auc_mean": float(auc.mean()), "auc_std": float(auc.std()),
                                                   "aucs": auc.round(4).tolist(), "s_per_epoch": round(secs, 3)}
            print(f"| {name} | {model} | {auc.mean():.3f} ± {auc.std():.3f} | "
                  f"{' '.join(f'{a:.3f}' for a in auc)} | {secs:.2f} |")
    for name, note in notes.items():
        print(f"{name}: {note}")
    verdict = None
    if "context" in summary:
        plain = summary["context"]["I3D"]
        lstm_name = next(m for m in summary["context"] if m.startswith("I3D-LSTM"))
        lstm = summary["context"][lstm_name]
        margin = lstm["auc_mean"] - plain["auc_mean"]
        spread = max(lstm["auc_std"], plain["auc_std"])
        verdict = {"margin": round(margin, 4), "seed_spread": round(spread, 4), "lstm_beats_plain": margin > spread}
        print(f"context: {lstm_name} - I3D = {margin:+.3f} frame AUC; seed spread (larger std) {spread:.3f}: "
              + ("I3D-LSTM beats plain I3D by more than the seed spread" if margin > spread
                 else "I3D-LSTM does NOT beat plain I3D by more than the seed spread"))
    print(f"total {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    print(json.dumps({"results": summary, "context_verdict": verdict, "notes": notes, "seeds": args.seeds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
