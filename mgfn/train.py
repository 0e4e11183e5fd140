"""`mgfn train`: the reference protocol (Adam 1e-3, wd 5e-4, B normal + B abnormal, evaluation every epoch),
resumable per epoch, with the checkpoint chosen on the test set (reference) or a held-out validation split.

Shape of the file follows torchvision's reference scripts: `train_one_epoch`, `evaluate`, `main`.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from mgfn import atomic
from mgfn.checkpoint import read_checkpoint, save_checkpoint
from mgfn.data import PairedBatches, TestSet, TrainingSet, read_list
from mgfn.errors import InputError
from mgfn.evaluate import predict, resolve_device
from mgfn.losses import LossConfig, mgfn_loss
from mgfn.features import deviation_scale
from mgfn.lstm import VARIANTS, check_extractor, parse_lstm_option, training_set, with_frontend
from mgfn.metrics import align_ground_truth, evaluate_scores, video_auc
from mgfn.mil import MILConfig, MILRanking, mil_loss
from mgfn.model import MGFN, MGFNConfig
from mgfn.schema import check, read_yaml, setting

# Collapse: every test snippet gets (nearly) one score, so the model no longer ranks anything. Measured on the
# logits, log(s / (1 - s)), so that a confident model whose scores saturate near 0 or 1 is not mistaken for it:
# a logit spread of 0.05 is +-1.25 % around a score of 0.5.
COLLAPSE_LOGIT_STD = 0.05


def logit_spread(scores) -> float:
    """Standard deviation of the test-snippet logits (scores clipped to [1e-6, 1 - 1e-6])."""
    s = np.clip(np.concatenate(scores).astype(np.float64), 1e-6, 1 - 1e-6)
    return float(np.log(s / (1 - s)).std())


# Training recipes: settings a config leaves out come from its recipe. "reference" is exactly the published MGFN
# recipe; "default" is what the real-data benchmark supports (docs/training.md, scripts/real_data.py): clips
# L2-normalised, each centred on its video's usual clip with that usual clip beside it (center: context); and, from
# the small-data benchmark (scripts/small_data.py), a narrow MGFN with feed-forward dropout, top-k by score, no
# contrastive terms, lr 1e-4; 20 epochs, where held-out training videos stop gaining (past it the model goes on
# fitting its own videos and separates new ones less well).
RECIPES = {
    "reference": {"lr": 1e-3, "weight_decay": 5e-4, "shuffle": False, "epochs": 100, "select": "test",
                  "model": {}, "loss": {}},
    "default": {"lr": 1e-4, "weight_decay": 5e-4, "shuffle": True, "epochs": 20, "select": "last",
                "model": {"select_by": "score", "normalize": "l2", "center": "context",
                          "dims": [32, 64, 128], "dim_head": 32, "ff_dropout": 0.3, "input_dropout": 0.5},
                "loss": {"w_contrastive": 0.0}},
}
MIL_EPOCHS = 100   # the MIL baseline's length (it still gains at epoch 100 on the real set)
WIDTH = ("dims", "dim_head")   # filled together: a config that sets either keeps the other's model default

METRIC_NAMES = ("auc", "pr_auc", "ap", "auc_abnormal", "far")


@dataclass
class TrainConfig:
    """Everything that decides a run; loaded from YAML (`model:`, `loss:` sub-sections) and CLI overrides."""

    recipe: str = "default"              # "default" | "reference": fills epochs, lr, weight_decay, model and loss gaps
    epochs: int | None = setting(None, min=1)           # None: the recipe's (the MIL baseline: MIL_EPOCHS)
    batch_size: int = setting(16, min=1, help="videos per class per iteration (B normal + B abnormal)")
    lr: float | None = setting(None, min=0)              # None: the recipe's
    lr_schedule: str | None = setting(None, choices=("constant", "cosine"),
                                      help="constant, or cosine: from lr at the first epoch down to 0 at the last")
    weight_decay: float | None = setting(None, min=0)
    seed: int = 0
    shuffle: bool | None = None          # False = the reference order (no shuffle, drop_last); None: the recipe's
    segments: int = setting(32, min=1)
    frames_per_snippet: int = setting(16, min=1)
    select: str | None = None            # "test" | "val" (held-out split of the training list) | "last"; None: the
                                         # recipe's (reference: test, as published; default: last, its measured length)
    metric: str = "auc"                  # test metric that picks best.pt: auc | pr_auc | ap
    val_fraction: float = setting(0.2, min=0, max=1)
    amp: str = "none"                    # "none" | "bf16" (autocast; CPU with AMX or GPU)
    device: str = "auto"
    n_abnormal: int | None = setting(None, min=0)       # for RTFM .list training files: abnormal videos come first
    model_type: str = "mgfn"             # "mgfn" | "mil" (Sultani's MIL ranking baseline)
    extractor: str | None = None         # what made the features (checked when they say); i3d_lstm: + LSTM front end
    model: dict = setting(factory=dict, schema=lambda section: MILConfig if section.get("model_type") == "mil"
                          else MGFNConfig, help="model settings (MGFNConfig, or MILConfig with model_type: mil)")
    loss: dict = setting(factory=dict, schema=LossConfig, help="loss settings (LossConfig)")

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise InputError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        recipe = RECIPES[self.recipe]
        self.lr = recipe["lr"] if self.lr is None else float(self.lr)
        self.weight_decay = recipe["weight_decay"] if self.weight_decay is None else float(self.weight_decay)
        self.shuffle = recipe["shuffle"] if self.shuffle is None else bool(self.shuffle)
        self.lr_schedule = recipe.get("lr_schedule", "constant") if self.lr_schedule is None else self.lr_schedule
        self.select = recipe["select"] if self.select is None else self.select
        if self.epochs is None:
            self.epochs = recipe["epochs"] if self.model_type == "mgfn" else MIL_EPOCHS
        if self.model_type == "mgfn":    # the MIL baseline has its own model settings and loss
            given = self.model or {}
            fill = {k: v for k, v in recipe["model"].items() if not (k in WIDTH and any(w in given for w in WIDTH))}
            self.model = {**fill, **given}
            self.loss = {**recipe["loss"], **(self.loss or {})}
            self.model = with_frontend(self.extractor, self.model)
        elif self.extractor in VARIANTS:
            raise InputError(f"extractor {self.extractor} puts an LSTM in front of MGFN; the MIL baseline has none")
        if self.lr_schedule not in ("constant", "cosine"):
            raise InputError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.select not in ("test", "val", "last"):
            raise InputError(f"select must be test, val or last, got {self.select!r}")
        if self.metric not in ("auc", "pr_auc", "ap"):
            raise InputError(f"metric must be auc, pr_auc or ap, got {self.metric!r}")
        if self.amp not in ("none", "bf16"):
            raise InputError(f"amp must be none or bf16, got {self.amp!r}")
        if self.model_type not in ("mgfn", "mil"):
            raise InputError(f"model_type must be mgfn or mil, got {self.model_type!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise InputError("epochs and batch_size must be positive")
        try:
            self.loss_config()
            if self.model:
                (MILConfig if self.model_type == "mil" else MGFNConfig)(**{"feature_size": 1, **self.model})
        except (TypeError, ValueError) as exc:
            raise InputError(f"bad model/loss settings: {exc}") from None

    def loss_config(self) -> LossConfig:
        return LossConfig(**self.loss)

    @classmethod
    def from_yaml(cls, path) -> "TrainConfig":
        return cls(**cls.read_yaml(path))

    @classmethod
    def read_yaml(cls, path) -> dict:
        """The settings a YAML file gives (or its `train:` section), held against the schema (mgfn.schema) and
        tried once, so that any bad setting is one line naming the file before any work; the recipe fills the rest
        later."""
        data = read_yaml(path)
        section = "train" if isinstance(data, dict) and "train" in data else ""
        if section:                     # a run config given as a training config: its `train:` section
            data = data["train"]
        data = check({} if data is None else data, cls, path, section)
        try:
            cls(**data)
        except InputError as exc:
            raise InputError(f"{path}: {section + ': ' if section else ''}{exc}") from None
        return data


def feature_provenance(entries) -> dict:
    """What made the features: the `extractor.json` a feature store keeps beside its files, when there is one.

    Scoring refuses a model whose features came from a different extractor, so this travels in checkpoints.
    """
    folders = {e.path.parent for e in entries}
    infos = {}
    for folder in folders:
        info = folder / "extractor.json"
        if info.is_file():
            try:
                infos[folder] = json.loads(info.read_text())
            except ValueError:
                raise InputError(f"{info}: unreadable extractor description") from None
    if not infos:
        return {}
    ids = {i.get("extractor_id") for i in infos.values()}
    if len(ids) > 1 or len(infos) != len(folders):
        raise InputError(f"training features come from different extractors or unlabelled folders: {sorted(map(str, ids))}")
    return {"extractor": next(iter(infos.values()))}


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (1-based): `lr`, or with `lr_schedule: cosine` half a cosine from `lr` at
    the first epoch to 0 after the last."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / cfg.epochs))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def train_one_epoch(model, optimizer, data: TrainingSet, batches, loss_fn, device, amp: str,
                    progress: bool = True) -> dict[str, float]:
    """One pass over zip(normal batches, abnormal batches); returns the mean of each loss term."""
    model.train()
    sums: dict[str, float] = {}
    for normal, abnormal in tqdm(batches, desc="train", unit="it", disable=not progress, leave=False):
        x = data.data[np.concatenate([normal, abnormal])].to(device, non_blocking=True)   # [2B, crops, S, D+1]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = model(x, n_normal=len(normal), prepared=data.prepared)
        out = type(out)(*(t.float() for t in out))
        terms = loss_fn(out)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
    return {k: v / max(1, len(batches)) for k, v in sums.items()}


@torch.no_grad()
def validation_auc(model, data: TrainingSet, val_idx: np.ndarray, device) -> float:
    """Video-level AUC of the max snippet score on held-out training videos (no frame labels needed)."""
    model.eval()
    scores = []
    for i in range(0, len(val_idx), 16):
        x = data.data[val_idx[i:i + 16]].to(device)
        scores.extend(model.predict(x, prepared=data.prepared).max(dim=1).values.float().cpu().tolist())
    return video_auc(data.labels[val_idx], scores)


def split_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of the training list: (train indices, validation indices)."""
    rng = np.random.default_rng(seed + 7919)
    train, val = [], []
    for label in (0, 1):
        idx = np.flatnonzero(labels == label)
        idx = idx[rng.permutation(len(idx))]
        n_val = max(1, int(round(fraction * len(idx))))
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


class MetricsLog:
    """`metrics.csv` (one row per epoch, rewritten atomically) and TensorBoard scalars."""

    def __init__(self, run_dir: Path, resume_epoch: int):
        self.path = run_dir / "metrics.csv"
        self.rows: list[dict] = []
        if resume_epoch and self.path.is_file():
            with self.path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= resume_epoch]
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=resume_epoch + 1)
        except ImportError:  # TensorBoard is optional
            pass

    def add(self, row: dict) -> None:
        self.rows.append(row)
        keys = list(row)
        with atomic.atomic_open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and not math.isnan(v):
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def run_training(train_list, test_list, gt_dir, run_dir, cfg: TrainConfig, resume: bool = False,
                 provenance: dict | None = None, progress: bool = True, log=print, checkpoints: bool = True,
                 features=None) -> dict:
    """Validate everything, then train `cfg.epochs` epochs (continuing from last.pt with resume).

    The lists are files (`read_list`; `features`: where their videos' features are) or lists of `VideoEntry`.
    `checkpoints=False` writes metrics only (benchmarks over many seeds): no last.pt/best.pt, so no resume.
    """
    run_dir = Path(run_dir)
    atomic.check_writable(run_dir, "run folder")         # a read-only --out is refused before any work
    device = resolve_device(cfg.device)
    train_entries = (train_list if isinstance(train_list, list)
                     else read_list(train_list, n_abnormal=cfg.n_abnormal, features=features))
    test_entries = test_list if isinstance(test_list, list) else read_list(test_list, features=features)
    labels = np.array([e.label for e in train_entries])
    train_idx, val_idx = np.arange(len(train_entries)), np.array([], dtype=int)
    if cfg.select == "val":
        train_idx, val_idx = split_validation(labels, cfg.val_fraction, cfg.seed)
    # Before any pooling: a class with fewer training videos than the batch size lowers the batch size to it.
    counts = {name: int((labels[train_idx] == label).sum()) for label, name in ((0, "normal"), (1, "abnormal"))}
    for name, n in counts.items():
        if n == 0:
            raise InputError(f"{train_list}: no {name} videos to train on"
                             + (" after the validation split" if cfg.select == "val" else ""))
    smallest = min(counts, key=counts.get)
    if counts[smallest] < cfg.batch_size:
        log(f"note: {counts[smallest]} {smallest} training videos, fewer than the batch size {cfg.batch_size}; "
            f"using batch size {counts[smallest]}")
        cfg = replace(cfg, batch_size=counts[smallest])
    test_labels = {e.label for e in test_entries}
    if cfg.select == "test" and test_labels != {0, 1}:
        missing = "abnormal" if 1 not in test_labels else "normal"
        raise InputError(f"{test_list}: no {missing} test videos, so no frame AUC to choose best.pt by "
                         "(--select test); add some, or train with --select last")
    test_set = TestSet(test_entries)
    truth = align_ground_truth(gt_dir, [e.video_id for e in test_entries], [e.label for e in test_entries],
                               test_set.clip_counts(), cfg.frames_per_snippet)
    for line in truth.mismatches:
        log(f"warning: {line}")
    data = training_set(train_entries, cfg.segments, cfg.model)   # pooled once, or clip sequences for an LSTM
    if data.info != test_set.info:
        raise InputError(f"{test_list}: test features are {test_set.info.crops} crops x {test_set.info.feature_size}-d, "
                         f"training features {data.info.crops} x {data.info.feature_size}-d")

    batches = PairedBatches(train_idx[labels[train_idx] == 0], train_idx[labels[train_idx] == 1],
                            cfg.batch_size, cfg.shuffle)

    model_cfg = {**cfg.model, "feature_size": data.info.feature_size}
    if model_cfg.get("center", "none") != "none" and "center_scale" not in model_cfg:
        # recorded in every checkpoint, so new videos are scaled as the training videos were
        model_cfg["center_scale"] = deviation_scale(data.videos(), model_cfg.get("normalize", "none"))
    seed_everything(cfg.seed)
    if cfg.model_type == "mil":
        model = MILRanking(MILConfig(**model_cfg)).to(device)
        loss_fn = mil_loss
    else:
        model = MGFN(MGFNConfig(**model_cfg)).to(device)
        loss_cfg, crops = cfg.loss_config(), data.info.crops
        loss_fn = lambda out: mgfn_loss(out, crops, loss_cfg)  # noqa: E731
    data.prepare(model.prepare_inputs)     # normalising and centring fixed videos once, not every iteration
    test_set.prepare(model.prepare_inputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best, metrics = 0, {"epoch": 0, "value": -math.inf}, {}
    last = run_dir / "last.pt"
    if resume and last.is_file():
        ckpt = read_checkpoint(last)
        if ckpt["model_config"]["feature_size"] != data.info.feature_size:
            raise InputError(f"{last}: checkpoint is for {ckpt['model_config']['feature_size']}-d features, "
                             f"the data is {data.info.feature_size}-d")
        if ckpt.get("train_config", {}).get("seed") != cfg.seed:
            log(f"warning: resuming a run trained with seed {ckpt.get('train_config', {}).get('seed')} using seed {cfg.seed}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, best = ckpt["epoch"], ckpt["best"]
        metrics = ckpt.get("metrics", {})             # the summary's final metrics when no epoch is left to run
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        log(f"resuming from {last} after epoch {start_epoch}")
    elif resume:
        log(f"no {last} yet: starting from scratch")
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*run_dir.glob(".*.pt.*.tmp"), *run_dir.glob("*.csv.tmp")]:  # left by a killed run
        stale.unlink()
    atomic.write_text(run_dir / "config.yaml", yaml.safe_dump(asdict(cfg), sort_keys=False))

    selection = {"test": f"best on the test set ({cfg.metric})",
                 "val": f"best video-level AUC on a held-out validation split ({len(val_idx)} training videos)",
                 "last": "the final epoch (no selection)"}[cfg.select]
    log(f"{len(train_entries)} training videos ({data.info.crops} crops x {data.info.feature_size}-d), "
        f"{len(test_entries)} test videos, {len(batches)} iterations/epoch, device {device}; checkpoint: {selection}")
    metrics_log = MetricsLog(run_dir, start_epoch)
    provenance = {**feature_provenance(train_entries), **(provenance or {})}
    check_extractor(cfg.extractor, provenance.get("extractor"), train_list)
    extra = {"provenance": provenance, "train_config": asdict(cfg),
             "feature_info": {"feature_size": data.info.feature_size, "crops": data.info.crops},
             "selection": selection}
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)   # order depends only on (seed, epoch)
        for group in optimizer.param_groups:        # a function of the epoch alone, so a resumed run follows it too
            group["lr"] = epoch_lr(cfg, epoch)
        losses = train_one_epoch(model, optimizer, data, batches.epoch(generator), loss_fn, device, cfg.amp, progress)
        train_s = time.perf_counter() - t0
        scores = predict(model, test_set, device)
        metrics = evaluate_scores(scores, truth, cfg.frames_per_snippet)
        metrics["score_std"] = float(np.concatenate(scores).std())
        metrics["logit_std"] = logit_spread(scores)
        if metrics["logit_std"] < COLLAPSE_LOGIT_STD:
            log(f"warning: epoch {epoch}: every test snippet scores {float(np.concatenate(scores).mean()):.4f} "
                f"(logit spread {metrics['logit_std']:.1e}): the scores have collapsed")
        if cfg.select == "val":
            metrics["val_auc"] = validation_auc(model, data, val_idx, device)
            chosen = metrics["val_auc"]
        else:
            chosen = float(epoch) if cfg.select == "last" else metrics[cfg.metric]
        row = {"epoch": epoch, **{f"loss_{k}": v for k, v in losses.items()}, **metrics, "train_s": train_s}
        metrics_log.add(row)
        rng = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        improved = not math.isnan(chosen) and chosen > best["value"]
        if improved:
            best = {"epoch": epoch, "value": chosen}
            if checkpoints:
                save_checkpoint(run_dir / "best.pt", model, epoch=epoch, metrics=metrics, **extra)
        if checkpoints:
            save_checkpoint(last, model, optimizer=optimizer.state_dict(), epoch=epoch, best=best, rng=rng,
                            metrics=metrics, **extra)
        saved = "  -> best.pt" if improved and checkpoints else ""
        log(f"epoch {epoch}/{cfg.epochs}  loss {losses['total']:.4f}  "
            + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({train_s:.1f}s){saved}")
    metrics_log.close()
    # best.pt holds best_epoch; best_value is best_metric there (with select=last, best["value"] is an epoch number
    # used only to compare epochs, so the value reported is the test metric of that final epoch)
    best_metric = "val_auc" if cfg.select == "val" else cfg.metric
    best_value = float(metrics.get(cfg.metric, math.nan)) if cfg.select == "last" else best["value"]
    summary = {"best_epoch": best["epoch"], "best_metric": best_metric, "best_value": best_value,
               "selection": selection, "final_epoch": max(start_epoch, cfg.epochs),
               "final": metrics, "run_dir": str(run_dir),
               "collapsed": bool(metrics.get("logit_std", 1.0) < COLLAPSE_LOGIT_STD)}
    atomic.write_text(run_dir / "summary.json", json.dumps(summary, indent=1, default=float))
    return summary


def add_arguments(parser) -> None:
    from pipeline.cli import add_device_argument, add_dtype_argument, add_quiet_argument

    def unset(name: str) -> str:       # options left out keep the --config's setting, else TrainConfig's default
        return f" (default: the --config's, else {TrainConfig.__dataclass_fields__[name].default})"

    parser.add_argument("--train", required=True, help="training list: CSV video_id,label,path or an RTFM .list")
    parser.add_argument("--test", required=True, help="test list (CSV or RTFM .list)")
    parser.add_argument("--gt", required=True, help="ground truth: a folder of <video_id>.npy masks or <video_id>.json "
                                                    "events, or one JSON {video_id: {num_frames, events, spans}}")
    parser.add_argument("--features", help="where the lists' videos' features are, instead of their paths: a folder of "
                                           "<video_id>.npy or one .npz with an array per video id")
    parser.add_argument("--out", required=True, help="run folder: config.yaml, last.pt, best.pt, metrics.csv, tb/")
    parser.add_argument("--config", help="YAML of training settings (configs/train/*.yaml)")
    parser.add_argument("--recipe", choices=tuple(RECIPES),
                        help="default (L2-normalised clips, each beside its video's usual clip, a narrow MGFN; chosen on "
                             "real UCF-Crime features, docs/training.md) or reference (the published MGFN recipe) "
                             "(default: the --config's, else default)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the --config's, else the recipe's: "
                        f"{RECIPES['default']['epochs']} for default, {RECIPES['reference']['epochs']} for reference; "
                        f"{MIL_EPOCHS} for --model mil)")
    parser.add_argument("--batch-size", type=int, help="videos per class per iteration (reference: 16)"
                        + unset("batch_size"))
    parser.add_argument("--seed", type=int, help="random seed (model initialisation, batch order)" + unset("seed"))
    parser.add_argument("--select", choices=("test", "val", "last"),
                        help="best.pt: best on the test set (as published; optimistic), on a validation split, or the "
                             "last epoch (default: the --config's, else the recipe's: last for default, test for "
                             "reference)")
    parser.add_argument("--metric", choices=("auc", "pr_auc", "ap"), help="test metric for --select test"
                        + unset("metric"))
    parser.add_argument("--loss-form", choices=("rtfm", "head"),
                        help="smoothness/sparsity form (default: the --config's, else rtfm)")
    parser.add_argument("--reference-order", action="store_true", help="no shuffling: the reference loaders' order")
    parser.add_argument("--n-abnormal", type=int,
                        help="RTFM .list training file: number of abnormal lines first (UCF: 810; default: the "
                             "--config's, else labels from the names: `Normal` in a name means normal)")
    parser.add_argument("--model", choices=("mgfn", "mil"), help="mgfn or the MIL ranking baseline (Sultani)"
                        + unset("model_type"))
    parser.add_argument("--extractor", help="the features' extractor (checked against their extractor.json); "
                                            "i3d_lstm: I3D features with an LSTM front end trained jointly with MGFN")
    parser.add_argument("--lstm", metavar="KEY=VALUE,...",
                        help="LSTM front end settings (implies one): layers, hidden, bidirectional, dropout, "
                             "sequences (pooled|clips), max_clips, skip (the clips beside the LSTM's outputs); "
                             "e.g. hidden=128,bidirectional=true")
    parser.add_argument("--seeds", help="train one run per seed (e.g. 0-4 or 0,3,7) into OUT/seed_<s>; report mean ± std")
    add_dtype_argument(parser, default=None, amp_alias=True,
                       help="training arithmetic; bfloat16 is autocast (fast on AMX CPUs and GPUs) (default: the "
                            "--config's amp, else float32)")
    add_device_argument(parser, default=None, extra=unset("device"))
    parser.add_argument("--provenance", help="JSON file describing where the features came from (stored in checkpoints)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_quiet_argument(parser)


def config_from_args(args) -> TrainConfig:
    from pipeline.cli import AMP_DTYPES

    data = TrainConfig.read_yaml(args.config) if args.config else {}
    amp = {dtype: amp for amp, dtype in AMP_DTYPES.items()}.get(args.dtype)      # --dtype bfloat16: amp bf16
    overrides = {"recipe": args.recipe, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                 "select": args.select, "metric": args.metric, "n_abnormal": args.n_abnormal, "amp": amp,
                 "device": args.device, "model_type": args.model, "extractor": args.extractor}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.lstm is not None:
        model = data.get("model") or {}
        data["model"] = {**model, "lstm": {**(model.get("lstm") or {}), **parse_lstm_option(args.lstm)}}
    if args.reference_order:
        data["shuffle"] = False
    if args.loss_form:
        data["loss"] = {**data.get("loss", {}), "form": args.loss_form}
    return TrainConfig(**data)


def main(args) -> int:
    cfg = config_from_args(args)
    provenance = None
    if args.provenance:
        try:
            provenance = json.loads(Path(args.provenance).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{args.provenance}: unreadable provenance JSON ({exc})") from None
    progress = not args.quiet and sys.stderr.isatty()
    if args.seeds:
        return train_seeds(args, cfg, parse_seeds(args.seeds), provenance, progress)
    summary = run_training(args.train, args.test, args.gt, args.out, cfg, resume=args.resume,
                           provenance=provenance, progress=progress, features=args.features)
    print(f"best epoch {summary['best_epoch']} ({summary['selection']}): {summary['best_metric']} "
          f"{summary['best_value']:.4f}; "
          f"checkpoints in {summary['run_dir']}")
    return 0


def parse_seeds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,3,7" -> [0, 3, 7]."""
    try:
        if "-" in text and "," not in text:
            lo, hi = (int(x) for x in text.split("-"))
            return list(range(lo, hi + 1))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise InputError(f"--seeds: expected a range like 0-4 or a list like 0,3,7, got {text!r}") from None


def train_seeds(args, cfg: TrainConfig, seeds: list[int], provenance, progress: bool) -> int:
    """One run per seed; prints final-epoch and best-on-test AUC as mean ± std and which seeds collapsed."""
    out = Path(args.out)
    rows = []
    for seed in seeds:
        run_cfg = TrainConfig(**{**asdict(cfg), "seed": seed})
        summary = run_training(args.train, args.test, args.gt, out / f"seed_{seed}", run_cfg, resume=args.resume,
                               provenance=provenance, progress=progress, features=args.features)
        with (out / f"seed_{seed}" / "metrics.csv").open(newline="") as f:
            best_test = max(float(r[cfg.metric]) for r in csv.DictReader(f))
        rows.append({"seed": seed, "final": summary["final"][cfg.metric], "best_on_test": best_test,
                     "collapsed": summary["collapsed"]})
    final = np.array([r["final"] for r in rows])
    best = np.array([r["best_on_test"] for r in rows])
    result = {"metric": cfg.metric, "seeds": rows, "final_mean": float(final.mean()), "final_std": float(final.std()),
              "best_on_test_mean": float(best.mean()), "best_on_test_std": float(best.std()),
              "collapsed": [r["seed"] for r in rows if r["collapsed"]]}
    atomic.write_text(out / "seeds.json", json.dumps(result, indent=1))
    print(f"{len(seeds)} seeds, {cfg.metric}: final epoch {final.mean():.4f} ± {final.std():.4f}, "
          f"best on test {best.mean():.4f} ± {best.std():.4f}; collapsed: {result['collapsed'] or 'none'}; "
          f"runs in {out / 'seed_<s>'}, summary {out / 'seeds.json'}")
    return 0
