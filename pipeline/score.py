"""`mgfn score VIDEO_OR_DIR... --model CKPT --out DIR`: per-frame anomaly scores for new videos.

Features come from the feature store (nothing is extracted twice) with the extractor, weights and preset the
model was trained on, as recorded in the checkpoint; a mismatch is refused. Per video: `<id>.csv` (frame,
time_s, score for every real frame), `<id>.json` (max score, segments above the threshold), a plot; for the run,
`summary.csv` (every input: scored or failed, and why) and one `report.html`. Inputs that are missing or cannot be
read are reported and the others still scored; the exit status is then 1. A feature row's score covers its
16-frame clip, or its frame span where the feature store's record gives `spans` (rows that are not clips); the
JSON then carries those spans.
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from extractors.errors import InputError
from mgfn.atomic import atomic_open, write_text

EXIT_FAILED = 1


@dataclass
class ScoredVideo:
    video_id: str
    source: str
    fps: float
    frame_scores: np.ndarray       # [num_frames]
    snippet_scores: np.ndarray     # [T]
    spans: np.ndarray | None = None  # [T, 2] frames [a, b) of each row, when rows are not clips of `stride` frames


def frame_scores_for(snippet_scores: np.ndarray, num_frames: int, stride: int = 16, spans=None) -> np.ndarray:
    """One score per real frame: frame f takes the score of clip f // stride (frames past the last clip, as with
    the `drop` tail, take the last clip's score); with `spans`, the score of the row whose span holds it."""
    if spans is not None:
        from mgfn.metrics import frame_scores

        return frame_scores(snippet_scores, spans=spans, num_frames=num_frames)
    idx = np.minimum(np.arange(num_frames) // stride, len(snippet_scores) - 1)
    return np.asarray(snippet_scores, dtype=np.float64)[idx]


def anomalous_segments(scores: np.ndarray, fps: float, threshold: float) -> list[dict]:
    """Runs of consecutive frames scoring >= threshold, highest first: start/end frame and seconds, max score."""
    above = np.concatenate([[False], scores >= threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    segments = []
    for start, stop in zip(edges[::2], edges[1::2]):                       # frames [start, stop)
        segments.append({"start_frame": int(start), "end_frame": int(stop - 1),
                         "start_s": round(start / fps, 3), "end_s": round(stop / fps, 3),
                         "max_score": round(float(scores[start:stop].max()), 6)})
    return sorted(segments, key=lambda s: -s["max_score"])


def write_scores(out: Path, video: ScoredVideo, threshold: float, provenance: dict) -> dict:
    """`<id>.csv` with every frame and `<id>.json` with the summary; returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / f"{video.video_id}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame", "time_s", "score"])
        for i, s in enumerate(video.frame_scores):
            w.writerow([i, f"{i / video.fps:.3f}", f"{s:.6f}"])
    summary = {"video_id": video.video_id, "source": video.source, "num_frames": int(len(video.frame_scores)),
               "fps": video.fps, "clips": int(len(video.snippet_scores)),
               "max_score": round(float(video.frame_scores.max()), 6), "threshold": threshold,
               "segments": anomalous_segments(video.frame_scores, video.fps, threshold),
               "random_weights": bool(provenance.get("random_weights"))}
    if video.spans is not None:
        summary["spans"] = np.asarray(video.spans).tolist()
    write_text(out / f"{video.video_id}.json", json.dumps(summary, indent=1))
    return summary


def add_arguments(parser) -> None:
    from extractors.decode import VIDEO_EXTENSIONS
    from pipeline.cli import add_device_argument, add_quiet_argument

    parser.add_argument("inputs", nargs="+", type=Path,
                        help=f"videos ({' '.join(VIDEO_EXTENSIONS)}), folders of videos (recursive), or text files "
                             "of paths")
    parser.add_argument("--model", required=True, type=Path, help="checkpoint from mgfn train (best.pt) or mgfn demo")
    parser.add_argument("--out", required=True, type=Path, help="folder for <video-id>.csv/.json/.png and report.html")
    parser.add_argument("--store", type=Path, default=Path("data/features"),
                        help="feature store root shared with mgfn extract: features are extracted into "
                             "STORE/<extractor-id>/ once and reused")
    parser.add_argument("--features", type=Path,
                        help="a feature folder (OUT/<extractor-id>/ of mgfn extract) to read instead of extracting")
    parser.add_argument("--weights", help="I3D weights (name, path or 'random') (default: those the model was trained on)")
    parser.add_argument("--extractor", help="only for models with no record of their features (e.g. imported ones); "
                                            "i3d_lstm (I3D features, LSTM front end) must match the model")
    parser.add_argument("--base", help="with --extractor i3d_lstm: the I3D extractor whose features it reads "
                                       "(default: the recorded one, else i3d_r50_rtfm)")
    parser.add_argument("--threshold", type=float, default=0.5, help="score above which frames form anomalous segments")
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="clips per I3D forward pass (default: 1 on CPU, 8 on CUDA)")
    parser.add_argument("--embed-videos", action="store_true", help="embed small videos in report.html (base64)")
    add_quiet_argument(parser)


def recorded_extractor(ckpt: dict) -> dict:
    """The extractor.json of the features a checkpoint was trained on, or {} when it has no record."""
    info = (ckpt.get("provenance") or {}).get("extractor")
    if not isinstance(info, dict) or "extractor_id" not in info:
        return {}
    return info


def requested_extractor(args, model, recorded: dict) -> str | None:
    """The I3D extractor `--extractor` (and `--base`) names, checked against the model: `i3d_lstm` is for a model
    with an LSTM front end, and only for one. None when the flag is not given."""
    from mgfn.lstm import VARIANTS, resolve_extractor

    if recorded.get("front_end") and not args.features:
        raise InputError(f"{args.model} was trained on features exported by mgfn export ({recorded['extractor_id']}); "
                         "it scores such features with --features DIR, not videos")
    has_lstm = getattr(model, "frontend", None) is not None
    if not args.extractor:
        if args.base:
            raise InputError("--base goes with --extractor i3d_lstm")
        return None
    base, lstm = resolve_extractor(args.extractor, args.base)
    if lstm != has_lstm:
        raise InputError(f"{args.model} " + (f"has no LSTM front end: it is not an {args.extractor} model" if lstm else
                         f"has an LSTM front end: name its features --extractor {next(iter(VARIANTS))}"))
    if lstm and not args.base and recorded:
        return recorded["name"]                              # i3d_lstm reads whichever I3D features it was trained on
    return base


def build_extractor(recorded: dict, args, requested: str | None = None):
    """The extractor the model was trained with (same settings, same weights), or a refusal saying why not."""
    from extractors.extractor import FeatureExtractor

    if not recorded:
        if not requested:
            raise InputError(f"{args.model}: the checkpoint does not record which extractor made its training "
                             "features; pass --extractor NAME and --weights W to say it")
        print(f"warning: {args.model} has no record of its features; using --extractor {args.extractor} as told",
              file=sys.stderr)
        return FeatureExtractor(requested, weights=args.weights, device=args.device, batch_size=args.batch_size)
    if requested and requested != recorded["name"]:
        raise InputError(f"{args.model} was trained on {recorded['name']} features, not {requested}")
    weights = args.weights or (recorded.get("provenance") or {}).get("weights")
    extractor = FeatureExtractor(
        recorded["name"], weights=weights, crops=recorded["crops"], preset=recorded["preset"],
        resize=recorded["resize"], tail=recorded["tail"], clip_len=recorded["clip_len"], stride=recorded["stride"],
        fps=recorded.get("fps"), device=args.device, dtype=recorded["dtype"], batch_size=args.batch_size,
        crop_size=recorded.get("crop_size", 224))
    check_same_extractor(recorded, extractor.config(), f"weights {weights}" if weights else
                         "the default weights (--weights W to choose)")
    return extractor


def check_same_extractor(recorded: dict, found: dict, what: str) -> None:
    if found.get("extractor_id") != recorded["extractor_id"]:
        differ = [k for k in ("name", "weights", "crops", "preset", "resize", "tail", "clip_len", "stride", "fps",
                              "dtype") if found.get(k) != recorded.get(k)]
        raise InputError(f"the model was trained on features {recorded['extractor_id']}, but {what} gives "
                         f"{found.get('extractor_id')} (differs in: {', '.join(differ) or 'settings'})")


def _features_folder(path: Path, recorded: dict):
    """A feature folder given with --features, checked against the model's record like an extractor is."""
    info_path = path / "extractor.json"
    if not info_path.is_file():
        raise InputError(f"{path}: no extractor.json (not a feature folder written by mgfn extract)")
    found = json.loads(info_path.read_text())
    if recorded:
        check_same_extractor(recorded, found, f"--features {path}")
    return found


def check_feature_dim(model, info: dict, model_path) -> None:
    """The model reads features of the size the extractor (or feature folder) `info` gives, or a one-line refusal."""
    if info.get("feature_dim") not in (None, model.config.feature_size):
        raise InputError(f"{model_path} expects {model.config.feature_size}-d features, the extractor gives "
                         f"{info['feature_dim']}-d")


def open_features(args, recorded: dict, videos: list[Path], requested: str | None = None, model=None):
    """(store, extractor config, failed) with every video's features in the store, extracting what is missing;
    with `model`, a model that cannot read the extractor's features is refused before any extraction."""
    from pipeline.extract import extract_videos
    from pipeline.store import FeatureStore

    if args.features:
        info = _features_folder(args.features, recorded)
        return FeatureStore(args.features.parent, args.features.name), info, []
    extractor = build_extractor(recorded, args, requested)
    if model is not None:
        check_feature_dim(model, extractor.config(), args.model)
    store = FeatureStore(args.store, extractor.extractor_id)
    store.write_extractor_info(extractor.config())
    _, _, failed = extract_videos(extractor, store, videos, show=not args.quiet)
    return store, extractor.config(), failed


def score_videos(model, store, info: dict, videos: list[Path], out: Path, threshold: float, model_path,
                 skip: set[str] = frozenset(), ckpt: dict | None = None
                 ) -> tuple[list[dict], list[tuple[str, str]], dict]:
    """Score every video whose features are in `store`: per-video CSV/JSON/PNG in `out`.

    Returns (summaries, failed, provenance); videos in `skip` (failed earlier) are left out. With the model's
    checkpoint dict `ckpt`, the provenance also says which epoch it holds and how it was trained.
    """
    from mgfn.data import magnitude_channel
    from pipeline.report import plot_scores
    from pipeline.store import video_id

    check_feature_dim(model, info, model_path)
    stride = int(info.get("stride", 16))
    provenance = {"model": str(model_path), "extractor": info.get("name"), "extractor_id": info.get("extractor_id"),
                  "weights": (info.get("provenance") or {}).get("weights"),
                  "weights_digest": (info.get("provenance") or {}).get("sha256"),
                  "random_weights": bool(info.get("random_weights")), **model_provenance(ckpt or {})}
    device = next(model.parameters()).device
    summaries, failed = [], []
    for path in videos:
        vid = video_id(path)
        if vid in skip:
            continue
        record = store.records.get(vid)
        if record is None or record.get("status") != "done":
            failed.append((vid, (record or {}).get("error") or f"no features for {vid} in {store.dir}"))
            continue
        feats = np.asarray(store.load(vid), dtype=np.float32)                     # [T, crops, D]
        x = np.concatenate([feats, magnitude_channel(feats)], axis=-1)             # [T, crops, D+1]
        with torch.no_grad():
            snippets = model.predict(torch.from_numpy(x.transpose(1, 0, 2)).unsqueeze(0).to(device))[0]
        snippets = snippets.float().cpu().numpy()
        spans = record.get("spans")                   # rows that are not `stride`-frame clips say which frames
        num_frames = int(record.get("num_frames") or (spans[-1][1] if spans else stride * len(snippets)))
        fps = float(record.get("fps") or 25.0)
        scored = ScoredVideo(vid, str(path), fps, frame_scores_for(snippets, num_frames, stride, spans), snippets,
                             None if spans is None else np.asarray(spans))
        summary = write_scores(out, scored, threshold, provenance)
        plot_scores(scored.frame_scores, fps, path=out / f"{vid}.png", title=vid, threshold=threshold)
        summaries.append(summary)
    return summaries, failed, provenance


def _settings_text(settings: dict) -> str:
    """'recipe: default; epochs: 8; shuffle: yes; ...' (settings left unset, None, are left out)."""
    def text(v):
        return ("yes" if v else "no") if isinstance(v, bool) else json.dumps(v) if isinstance(v, (dict, list)) else v

    return "; ".join(f"{k}: {text(v)}" for k, v in settings.items() if v is not None)


def model_provenance(ckpt: dict) -> dict:
    """What a report says about a model from its checkpoint: the epoch it holds, how that epoch was chosen, and the
    training and model settings; {} for checkpoints without a record (imported ones)."""
    out = {}
    train = ckpt.get("train_config") or {}
    if ckpt.get("epoch") is not None:
        out["model_epoch"] = (f"epoch {ckpt['epoch']}" + (f" of {train['epochs']}" if train.get("epochs") else "")
                              + (f": {ckpt['selection']}" if ckpt.get("selection") else ""))
    if train:
        out["training"] = _settings_text({k: v for k, v in train.items() if k not in ("model", "loss")})
        nested = {**(train.get("model") or {}), **{f"loss {k}": v for k, v in (train.get("loss") or {}).items()}}
        if nested:
            out["model_settings"] = _settings_text(nested)
    return out


def write_summary_csv(out: Path, summaries: list[dict], failed: list[tuple[str, str]], sources: dict) -> Path:
    """`summary.csv`: one row per input video, scored or failed (with the reason)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "status", "source", "num_frames", "max_score", "segments", "reason"])
        for s in summaries:
            w.writerow([s["video_id"], "scored", s["source"], s["num_frames"], s["max_score"], len(s["segments"]), ""])
        for vid, reason in failed:
            w.writerow([vid, "failed", sources.get(vid, ""), "", "", "", reason])
    return out / "summary.csv"


def list_score_inputs(inputs: list[Path]) -> tuple[list[Path], list[tuple[str, str]], dict]:
    """(videos, failed, sources): the videos named by each input; an input that is missing or names no video is
    a failure of its own, so the others are still scored. Refused (InputError) only when no input names a video."""
    from pipeline.extract import list_inputs
    from pipeline.store import video_id

    videos, failed, sources = [], [], {}
    for item in inputs:
        try:
            found = list_inputs(item)
        except InputError as exc:
            failed.append((video_id(item), str(exc)))
            sources[failed[-1][0]] = str(item)
            continue
        videos += found
        sources.update((video_id(v), str(v)) for v in found)
    if not videos:
        raise InputError("; ".join(reason for _, reason in failed) or "no videos given")
    return videos, failed, sources


def report_entries(out: Path, summaries: list[dict], events: dict | None = None) -> list[dict]:
    """What write_report needs per video, read back from the CSVs written by score_videos."""
    entries = []
    for s in summaries:
        with (out / f"{s['video_id']}.csv").open(newline="") as f:
            scores = [float(r["score"]) for r in csv.DictReader(f)]
        entries.append({"video_id": s["video_id"], "video_path": s["source"], "fps": s["fps"], "frame_scores": scores,
                        "segments": s["segments"][:5], "events": (events or {}).get(s["video_id"])})
    return entries


def main(args) -> int:
    from mgfn.atomic import check_writable
    from mgfn.checkpoint import load_model
    from mgfn.evaluate import resolve_device
    from pipeline.report import write_report

    check_writable(args.out)                          # a read-only --out is refused before any work
    model, ckpt = load_model(args.model, device=resolve_device(args.device))
    recorded = recorded_extractor(ckpt)
    requested = requested_extractor(args, model, recorded)
    videos, failed, sources = list_score_inputs(args.inputs)
    store, info, unreadable = open_features(args, recorded, videos, requested, model)
    with store:
        summaries, missing, provenance = score_videos(model, store, info, videos, args.out, args.threshold,
                                                      args.model, skip={vid for vid, _ in unreadable}, ckpt=ckpt)
    failed += unreadable + missing
    if provenance["random_weights"]:
        print("WARNING: the I3D weights are random: these scores come from random features, not Kinetics ones",
              file=sys.stderr)
    summary_csv = write_summary_csv(args.out, summaries, failed, sources)
    report = write_report(args.out / "report.html", report_entries(args.out, summaries), provenance,
                          title="mgfn score", embed_videos=args.embed_videos, threshold=args.threshold, failed=failed)
    for s in summaries:
        print(f"{s['video_id']}: max score {s['max_score']:.3f}, {len(s['segments'])} segment(s) >= {args.threshold}")
    for vid, reason in failed:
        print(f"mgfn score: error: {vid}: {reason}", file=sys.stderr)
    print(f"mgfn score: {len(summaries) + len(failed)} video(s): {len(summaries)} scored, {len(failed)} failed; "
          f"report: {report}; summary: {summary_csv}")
    print(f"mgfn score: features {'read from' if args.features else 'in the feature store'} {store.dir}"
          + ("" if args.features else " (--store; reused by later runs and mgfn extract)"))
    return EXIT_FAILED if failed else 0
