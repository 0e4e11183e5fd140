"""`mgfn run CONFIG`: extract -> train -> score -> report for one dataset, each stage skipped when its outputs for
the same configuration exist and resumed when partial.

A stage that finishes writes `WORKSPACE/stages/<stage>.json` with the hash of everything it depends on; a re-run
skips a stage whose record matches. Inside a stage, resuming is the stage's own: the feature store skips done
videos and resumes a long one from its last flushed clip, training continues from `last.pt`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mgfn.atomic import atomic_open, check_writable, write_bytes, write_text
from mgfn.errors import InputError
from mgfn.schema import Setting, check, read_yaml, settings, setting

STAGES = ("extract", "train", "score", "report")
FAILURES_SHOWN = 5                                   # failed videos named in the log (all are in the manifest)


def _extractor_settings(_section) -> dict:
    """The `extractor:` section: FeatureExtractor's keyword arguments, and `base` for i3d_lstm."""
    from extractors.extractor import FeatureExtractor

    return {**settings(FeatureExtractor),
            "base": Setting("base", str | None, None, help="i3d_lstm: the I3D extractor under the LSTM")}


def _train_settings(_section):
    from mgfn.train import TrainConfig

    return TrainConfig


@dataclass
class DatasetSection:
    """`dataset:` of a run config (paths relative to the YAML)."""

    videos: str = setting(help="folder of videos")
    labels: str = setting(help="labels CSV: video_id,label,split[,path]")
    gt: str = setting(help="ground-truth folder: <video_id>.json events or <video_id>.npy masks")


@dataclass
class ScoreSection:
    """`score:` of a run config."""

    videos: str | list[str] = setting("test", choices=("test", "all"), help="test, all or a list of video paths")
    threshold: float = setting(0.5, min=0, max=1, help="frames scoring above it are flagged")


@dataclass
class RunConfig:
    """One YAML: the dataset, the extractor, training settings and the videos to score (paths relative to the YAML).

    Each section's settings are those of the dataclass (or class) named as its schema; `from_yaml` holds the file
    against them (mgfn.schema) before any work.
    """

    name: str = setting(help="the run's name (it names the run folder)")
    workspace: str = setting(help="where every stage writes")
    dataset: dict = setting(schema=DatasetSection, help="videos, labels and ground truth")
    extractor: dict = setting(factory=lambda: {"name": "i3d_r50_rtfm"}, schema=_extractor_settings,
                              help="FeatureExtractor settings, or just a name; i3d_lstm: + base")
    train: dict = setting(factory=dict, schema=_train_settings, help="training settings (mgfn.train.TrainConfig)")
    score: dict = setting(factory=dict, schema=ScoreSection, help="which videos to score, and the threshold")
    report: str | None = None            # where to put the report (default WORKSPACE/report.html)
    allow_outside: bool = False          # let paths point outside the config's folder

    @classmethod
    def from_yaml(cls, path) -> tuple["RunConfig", Path]:
        """The config, every section checked and the training settings tried: a bad setting is one line."""
        path = Path(path)
        data = read_yaml(path)
        if isinstance(data, dict) and isinstance(data.get("extractor"), str):          # `extractor: i3d_lstm`
            data["extractor"] = {"name": data["extractor"]}
        cfg = cls(**check({} if data is None else data, cls, path))
        try:
            cfg.resolve()
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        return cfg, path.resolve().parent

    def resolve(self):
        """(the extractor whose features are read, its other settings, the TrainConfig)."""
        from mgfn.lstm import resolve_extractor
        from mgfn.train import TrainConfig

        ext_args = dict(self.extractor)
        # i3d_lstm: the I3D features of its base are extracted (and shared with plain runs); the LSTM is in the model
        ext_name, lstm = resolve_extractor(ext_args.pop("name", "i3d_r50_rtfm"), ext_args.pop("base", None))
        train = dict(self.train)
        if lstm:
            if train.get("extractor") not in (None, self.extractor["name"]):
                raise InputError(f"extractor is {self.extractor['name']} but train.extractor is {train['extractor']}")
            train["extractor"] = self.extractor["name"]
        try:
            return ext_name, ext_args, TrainConfig(**train)
        except InputError as exc:
            raise InputError(f"train: {exc}") from None


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Stages:
    """`stages/<name>.json` records: a stage is done when its record holds the same input hash."""

    def __init__(self, workspace: Path):
        self.dir = workspace / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)

    def done(self, stage: str, digest: str) -> dict | None:
        path = self.dir / f"{stage}.json"
        if path.is_file():
            rec = json.loads(path.read_text())
            if rec.get("digest") == digest:
                return rec
        return None

    def finish(self, stage: str, digest: str, **outputs) -> dict:
        rec = {"stage": stage, "digest": digest, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **outputs}
        write_text(self.dir / f"{stage}.json", json.dumps(rec, indent=1, default=str))
        return rec


@dataclass
class DatasetVideo:
    video_id: str
    label: int
    split: str
    path: Path


def read_dataset(cfg: RunConfig, base: Path) -> tuple[list[DatasetVideo], Path]:
    """The labelled videos (CSV `video_id,label,split[,path]`, paths relative to the CSV) and the ground-truth folder."""
    ds = cfg.dataset
    for key in ("videos", "labels", "gt"):
        if key not in ds:
            raise InputError(f"dataset needs '{key}' (videos folder, labels CSV, ground-truth folder)")
    root = base.resolve()

    def inside(p) -> Path:
        path = (base / p).resolve()
        if not cfg.allow_outside and not path.is_relative_to(root):
            raise InputError(f"{p}: outside the config's folder {root} (set allow_outside: true to permit)")
        return path

    videos_dir, labels, gt = inside(ds["videos"]), inside(ds["labels"]), inside(ds["gt"])
    if not labels.is_file():
        raise InputError(f"{labels}: labels CSV not found")
    if not videos_dir.is_dir():
        raise InputError(f"{videos_dir}: videos folder not found (dataset.videos)")
    out = []
    with labels.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                vid, label, split = row["video_id"], int(row["label"]), row.get("split") or "train"
            except (KeyError, ValueError):
                raise InputError(f"{labels}: expected columns video_id,label,split[,path]") from None
            path = inside(Path(ds["labels"]).parent / row["path"]) if row.get("path") else videos_dir / f"{vid}.mp4"
            if label not in (0, 1) or split not in ("train", "test"):
                raise InputError(f"{labels}: {vid}: label must be 0/1 and split train/test")
            out.append(DatasetVideo(vid, label, split, path))
    if not out:
        raise InputError(f"{labels}: no videos")
    missing = [v.path for v in out if not v.path.exists()]
    if len(missing) == len(out):
        raise InputError(f"{labels}: none of its {len(out)} videos exists (the first: {missing[0]})")
    return out, gt


def _write_list(path: Path, rows) -> Path:
    """A training/test list in mgfn's CSV format; left untouched when it already says the same."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["video_id", "label", "path"])
    w.writerows(rows)
    data = buf.getvalue().encode()
    if not path.is_file() or path.read_bytes() != data:
        write_bytes(path, data)
    return path


def run(config_path, stop_after: str | None = None, log=print, keep_model=None) -> dict:
    """Every stage in order; returns the record of the last one run.

    keep_model: where to copy the trained model (`mgfn demo`'s model.pt); the run then scores with that copy, so
    its report names the file that is kept.
    """
    from extractors.extractor import FeatureExtractor
    from mgfn.checkpoint import load_model
    from mgfn.evaluate import resolve_device
    from mgfn.train import run_training
    from pipeline.extract import extract_videos
    from pipeline.report import write_report
    from pipeline.score import report_entries, score_videos
    from pipeline.store import FeatureStore

    cfg, base = RunConfig.from_yaml(config_path)
    workspace = (base / cfg.workspace).resolve()
    if not cfg.allow_outside and not workspace.is_relative_to(base.resolve()):
        raise InputError(f"workspace {cfg.workspace} is outside the config's folder (set allow_outside: true)")
    videos, gt_dir = read_dataset(cfg, base)
    ext_name, ext_args, train_cfg = cfg.resolve()     # validated by from_yaml, before any work starts
    resolve_device(train_cfg.device)                  # so is train.device (extract's: by FeatureExtractor)
    check_writable(workspace, "workspace")            # a read-only workspace is refused before any work
    stages = Stages(workspace)

    # extract ---------------------------------------------------------------------------------------------------
    sources = [(v.video_id, str(v.path), v.path.stat().st_size if v.path.exists() else -1) for v in videos]
    digest = _digest("extract", ext_name, ext_args, sources)
    rec = stages.done("extract", digest)
    if rec is None:
        log(f"[extract] {len(videos)} videos with {ext_name}")
        extractor = FeatureExtractor(ext_name, **ext_args)
        if extractor.random_weights:
            log("[extract] WARNING: random I3D weights (asked for): the features are not Kinetics features")
        with FeatureStore(workspace / "features", extractor.extractor_id) as store:
            store.write_extractor_info(extractor.config())
            done, skipped, failed = extract_videos(extractor, store, [v.path for v in videos], show=False)
        rec = stages.finish("extract", digest, extractor_id=extractor.extractor_id, done=len(done) + len(skipped),
                            failed=failed, features=str(store.dir))
        log(f"[extract] {len(done)} extracted, {len(skipped)} already done, {len(failed)} failed")
        for vid, reason in failed[:FAILURES_SHOWN]:         # warnings: kept by --quiet too
            log(f"[extract] warning: {vid} failed: {reason}")
        if len(failed) > FAILURES_SHOWN:
            log(f"[extract] warning: {len(failed) - FAILURES_SHOWN} more failed (every reason: "
                f"{store.dir / 'manifest.jsonl'})")
    else:
        log(f"[extract] done before ({rec['extractor_id']}): skipped")
    extractor_id, failed_ids = rec["extractor_id"], {vid for vid, _ in rec["failed"]}
    extract_failed = [(vid, reason) for vid, reason in rec["failed"]]
    if stop_after == "extract":
        return rec

    # train -------------------------------------------------------------------------------------------------------
    feature_dir = workspace / "features" / extractor_id
    lists = {}
    for split in ("train", "test"):
        rows = [(v.video_id, v.label, f"features/{extractor_id}/{v.video_id}.npy") for v in videos
                if v.split == split and v.video_id not in failed_ids]
        if not rows:
            first = next(((vid, why) for vid, why in extract_failed
                          if any(v.video_id == vid and v.split == split for v in videos)), None)
            raise InputError(f"no {split} videos left: " + (
                f"every one failed to extract (the first, {first[0]}: {first[1]})" if first else
                f"{cfg.dataset['labels']} has none with split {split}"))
        lists[split] = _write_list(workspace / f"{split}.csv", rows)
    digest = _digest("train", extractor_id, asdict(train_cfg), lists["train"].read_text(), lists["test"].read_text())
    run_dir = workspace / "runs" / f"{cfg.name}-{digest}"
    rec = stages.done("train", digest)
    if rec is None:
        log(f"[train] {run_dir}")
        summary = run_training(lists["train"], lists["test"], gt_dir, run_dir, train_cfg, resume=True,
                               progress=False, log=lambda msg: log(f"[train] {msg}"))
        rec = stages.finish("train", digest, run_dir=str(run_dir), model=str(run_dir / "best.pt"),
                            final=summary["final"], best_epoch=summary["best_epoch"], selection=summary["selection"])
    else:
        log(f"[train] done before ({run_dir.name}): skipped")
    model_path, model_source = Path(rec["model"]), None
    if keep_model is not None:
        import shutil

        kept = Path(keep_model).resolve()
        if not kept.is_file() or kept.read_bytes() != model_path.read_bytes():
            with atomic_open(kept) as f, model_path.open("rb") as src:
                shutil.copyfileobj(src, f)
        model_path, model_source = kept, str(model_path)
    if stop_after == "train":
        return rec

    # score -------------------------------------------------------------------------------------------------------
    which = cfg.score.get("videos", "test")
    if which in ("test", "all"):
        targets = [v.path for v in videos if (which == "all" or v.split == "test") and v.video_id not in failed_ids]
    else:
        targets = [(base / p).resolve() for p in which]
    threshold = float(cfg.score.get("threshold", 0.5))
    digest = _digest("score", hashlib.sha256(model_path.read_bytes()).hexdigest(), [str(t) for t in targets],
                     threshold, str(model_path))          # the path too: the report names the model file used
    scores_dir = workspace / "scores" / run_dir.name
    score_rec = stages.done("score", digest)
    if score_rec is None:
        model, ckpt = load_model(model_path)
        with FeatureStore(workspace / "features", extractor_id) as store:
            info = json.loads((feature_dir / "extractor.json").read_text())
            summaries, failed, provenance = score_videos(model, store, info, targets, scores_dir, threshold, model_path,
                                                         ckpt=ckpt)
        if model_source:
            provenance["model_source"] = model_source
        score_rec = stages.finish("score", digest, scores_dir=str(scores_dir), summaries=summaries, failed=failed,
                                  provenance=provenance)
        log(f"[score] {len(summaries)} videos scored into {scores_dir}")
    else:
        log("[score] done before: skipped")
    if stop_after == "score":
        return score_rec

    # report ------------------------------------------------------------------------------------------------------
    report_path = (base / cfg.report).resolve() if cfg.report else workspace / "report.html"
    digest = _digest("report", score_rec["digest"], str(report_path))
    rec = stages.done("report", digest)
    if rec is None:
        from mgfn.metrics import read_ground_truth

        events, masks, preds = {}, [], []
        labels = {v.video_id: v.label for v in videos}
        for s in score_rec["summaries"]:
            vid = s["video_id"]
            truth = read_ground_truth(gt_dir, vid, labels.get(vid, 0))
            mask = truth.mask if truth is not None else None
            with (scores_dir / f"{vid}.csv").open(newline="") as f:
                frame = np.array([float(r["score"]) for r in csv.DictReader(f)])   # already spread over spans
            padded = np.zeros(len(frame), np.int8)                  # ground truth of every real frame
            if mask is not None:
                padded[:min(len(frame), len(mask))] = mask[:len(frame)]
            mask = padded
            masks.append(mask)
            preds.append(frame)
            starts = np.flatnonzero(np.diff(np.concatenate([[0], mask, [0]])) == 1)
            ends = np.flatnonzero(np.diff(np.concatenate([[0], mask, [0]])) == -1) - 1
            events[vid] = [[int(a), int(b)] for a, b in zip(starts, ends)]
        quality = localisation(masks, preds)
        wanted = {v.video_id for v in videos if which == "all" or v.split == "test"} if which in ("test", "all") \
            else {Path(p).stem for p in which}           # the videos this run meant to score, failed ones included
        failed = [(vid, reason) for vid, reason in extract_failed if vid in wanted] + \
            [(vid, reason) for vid, reason in score_rec["failed"]]
        write_report(report_path, report_entries(scores_dir, score_rec["summaries"], events),
                     score_rec["provenance"], title=f"mgfn run: {cfg.name}", threshold=threshold, failed=failed)
        rec = stages.finish("report", digest, report=str(report_path), **quality)
        note = ""
        if quality["frame_auc"] is not None:
            note = f" (frame AUC {quality['frame_auc']:.3f} on {len(masks)} videos"
            if quality["frame_auc_abnormal"] is not None:
                note += f"; {quality['frame_auc_abnormal']:.3f} inside the abnormal ones"
            note += ")"
        log(f"[report] {report_path}{note}")
    else:
        log(f"[report] done before: {rec['report']}")
    return {**rec, "model": str(model_path)}      # what `mgfn score` takes next


def localisation(masks: list[np.ndarray], preds: list[np.ndarray], clip: int = 16) -> dict:
    """How well frame scores find the events: frame AUC over all videos, frame AUC over the frames of the videos
    that have events (pooled: does the curve rise on the event, not just in abnormal videos), and the position
    gap, the normal videos' mean score at clip 0 less that at clip 5 (scores should not depend on where a clip is)."""
    from sklearn.metrics import roc_auc_score

    out = {"frame_auc": None, "frame_auc_abnormal": None, "position_gap": None}
    if masks and 0 < np.concatenate(masks).mean() < 1:
        out["frame_auc"] = float(roc_auc_score(np.concatenate(masks), np.concatenate(preds)))
    abnormal = [i for i, m in enumerate(masks) if 0 < m.mean() < 1]
    if abnormal:
        out["frame_auc_abnormal"] = float(roc_auc_score(np.concatenate([masks[i] for i in abnormal]),
                                                        np.concatenate([preds[i] for i in abnormal])))
    normal = [p for m, p in zip(masks, preds) if m.max(initial=0) == 0 and len(p) > 5 * clip]
    if normal:
        out["position_gap"] = float(np.mean([p[0] for p in normal]) - np.mean([p[5 * clip] for p in normal]))
    return out


def add_arguments(parser) -> None:
    from pipeline.cli import add_quiet_argument

    parser.add_argument("config", help="run YAML: name, workspace, dataset, extractor, train, score (see docs/guide.md)")
    parser.add_argument("--stop-after", choices=STAGES, help="stop after this stage (default: run them all)")
    add_quiet_argument(parser, help="no per-stage and per-epoch lines: only warnings and the result")


def quiet_log(log=print):
    """The log of `--quiet`: stage and epoch lines left out, warnings, notes and errors kept."""
    def keep(line: str) -> None:
        if any(word in line.lower() for word in ("warning", "note:", "error")):
            log(line)
    return keep


def main(args) -> int:
    rec = run(args.config, stop_after=args.stop_after, log=quiet_log() if args.quiet else print)
    stage = rec.get("stage")
    if stage == "report":
        auc = rec.get("frame_auc")
        print((f"frame AUC {auc:.3f}; " if auc is not None else "") + f"model {rec['model']}; report {rec['report']}")
    else:                                          # --stop-after: where that stage's output went
        where = {"extract": f"features in {rec.get('features') or rec.get('extractor_id')}",
                 "train": f"model {rec.get('model')}",
                 "score": f"scores in {rec.get('scores_dir')}"}.get(stage, "")
        print(f"mgfn run: stopped after {stage}" + (f"; {where}" if where else ""))
    return 0
