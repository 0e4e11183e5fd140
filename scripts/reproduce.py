#!/usr/bin/env python
"""The published protocol over seeds: mean ± std of the final epoch, of the best-on-test checkpoint (what the
paper reports) and of the validation-selected checkpoint, as a table beside the published number.

    scripts/reproduce.py ucf-crime --features UCF_features/ --annotation Temporal_Anomaly_Annotation.txt \
        --train-list ucf-i3d.list --test-list ucf-i3d-test.list
    scripts/reproduce.py ucf-crime --synthetic          # a small synthetic set and tiny epochs: checks the machinery

Each seed trains twice with the dataset's reference settings: select=test on the whole training list (final epoch
and best-on-test), and select=val (the test metric at the epoch a held-out split of the training list chose).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mgfn.errors import InputError  # noqa: E402
from mgfn.synthetic import SynthConfig, make_dataset  # noqa: E402
from mgfn.train import TrainConfig, run_training  # noqa: E402
from pipeline.data_cli import build, print_report  # noqa: E402
from pipeline.datasets import DATASETS, DatasetConfig, default_config  # noqa: E402
from pipeline.datasets.common import Sources  # noqa: E402

ROWS = (("final", "final epoch"), ("best_test", "best on test (as published)"), ("val", "selected on validation"))
TINY_MODEL = {"dims": [32, 64, 128], "depths": [1, 1, 1], "dim_head": 32}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset", choices=list(DATASETS))
    p.add_argument("--features", help="feature folder (<id>.npy, <id>_i3d.npy or <id>__k.npy)")
    p.add_argument("--annotation", help="the dataset's test annotation (see `mgfn data --help`)")
    p.add_argument("--train-list", help="RTFM / official training list")
    p.add_argument("--test-list", help="RTFM / official test list")
    p.add_argument("--lists", help="a folder `mgfn data` already wrote (train.csv, test.csv, gt/) instead")
    p.add_argument("--config", help="dataset settings YAML (default configs/datasets/<dataset>.yaml)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, help="override the reference epoch count")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="folder for the lists, one run per seed and selection, results.json/.md")
    p.add_argument("--synthetic", action="store_true",
                   help="a small synthetic set, a tiny model and 3 epochs: shows the protocol runs, not the numbers")
    return p.parse_args(argv)


def train_config(ds: DatasetConfig, args) -> TrainConfig:
    path = ds.train_config_path()
    cfg = asdict(TrainConfig.from_yaml(path)) if path else asdict(TrainConfig(metric=ds.metric))
    if args.synthetic:
        cfg.update(epochs=3, batch_size=4, model={**cfg["model"], **TINY_MODEL})
    if args.epochs:
        cfg["epochs"] = args.epochs
    cfg["device"] = args.device
    return TrainConfig(**cfg)


def prepare_lists(ds: DatasetConfig, args, out: Path) -> tuple[Path, Path, Path]:
    if args.synthetic:
        paths = make_dataset(out / "data", SynthConfig(train_normal=10, train_abnormal=10, test_normal=5,
                                                       test_abnormal=5, feature_size=64, min_clips=16, max_clips=24))
        return paths["train"], paths["test"], paths["gt"]
    if args.lists:
        lists = Path(args.lists)
    else:
        if not args.features:
            raise InputError("give --features DIR (with --annotation and lists), --lists DIR, or --synthetic")
        lists = out / "data"
        p = lambda v: Path(v) if v else None  # noqa: E731
        report = build(ds.name, Sources(annotation=p(args.annotation), features=p(args.features),
                                        train_list=p(args.train_list), test_list=p(args.test_list),
                                        config=ds.adapter), lists)
        print_report(report, lists)
    return lists / "train.csv", lists / "test.csv", lists / "gt"


def metric_at(run_dir: Path, epoch: int, metric: str) -> float:
    """The test metric recorded in metrics.csv for one epoch."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if int(row["epoch"]) == epoch:
                return float(row[metric])
    return math.nan


def run_seed(seed: int, cfg: TrainConfig, lists, out: Path) -> dict[str, float]:
    """One seed: select=test (final and best-on-test), select=val (test metric at the chosen epoch)."""
    quiet = lambda *_: None  # noqa: E731
    test_run = run_training(*lists, out / f"seed{seed}_test", TrainConfig(**{**asdict(cfg), "seed": seed,
                            "select": "test"}), progress=False, log=quiet)
    val_dir = out / f"seed{seed}_val"
    val_run = run_training(*lists, val_dir, TrainConfig(**{**asdict(cfg), "seed": seed, "select": "val"}),
                           progress=False, log=quiet)
    return {"final": float(test_run["final"][cfg.metric]), "best_test": float(test_run["best_value"]),
            "val": metric_at(val_dir, val_run["best_epoch"], cfg.metric), "best_epoch": test_run["best_epoch"],
            "val_epoch": val_run["best_epoch"]}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(results: dict[int, dict], metric: str, published: float | None, title: str) -> str:
    lines = [f"{title}", "", f"| checkpoint | {metric} % mean ± std | per seed | published |", "|---|---|---|---|"]
    for key, name in ROWS:
        vals = [r[key] for r in results.values()]
        m, s = mean_std(vals)
        pub = f"{published:.2f}" if published is not None and key == "best_test" else ""
        lines.append(f"| {name} | {100 * m:.2f} ± {100 * s:.2f} | {' '.join(f'{100 * v:.2f}' for v in vals)} | {pub} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    ds = DatasetConfig.from_yaml(args.config, args.dataset) if args.config else default_config(args.dataset)
    out = Path(args.out or f"runs/reproduce/{args.dataset}{'-synthetic' if args.synthetic else ''}")
    out.mkdir(parents=True, exist_ok=True)
    cfg = train_config(ds, args)
    lists = prepare_lists(ds, args, out)
    results = {}
    for seed in args.seeds:
        results[seed] = run_seed(seed, cfg, lists, out)
        r = results[seed]
        print(f"seed {seed}: final {100 * r['final']:.2f}  best-on-test {100 * r['best_test']:.2f} "
              f"(epoch {r['best_epoch']})  val-selected {100 * r['val']:.2f} (epoch {r['val_epoch']})", flush=True)
    published = None if args.synthetic else ds.published.get(cfg.metric)
    title = (f"{ds.name}{' (synthetic)' if args.synthetic else ''}: {len(args.seeds)} seeds x {cfg.epochs} epochs, "
             f"metric {cfg.metric}")
    text = table(results, cfg.metric, published, title)
    print(text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"dataset": ds.name, "synthetic": args.synthetic,
                                                  "metric": cfg.metric, "epochs": cfg.epochs, "published": published,
                                                  "seeds": results}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as exc:
        print(f"reproduce: error: {exc}", file=sys.stderr)
        sys.exit(2)
