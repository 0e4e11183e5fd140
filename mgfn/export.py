"""`mgfn export --model CKPT --features I3D_DIR --out OUT_DIR`: a trained I3D-LSTM's encoder outputs as features.

Each video's I3D features `[T, crops, D]` in I3D_DIR go through the checkpoint's LSTM front end (the whole clip
sequence, as at test time) and become `OUT_DIR/<video-id>.npy` `[T, crops, H]` float32. OUT_DIR also gets
`extractor.json` (what made them: the source features' extractor.json, the checkpoint and its sha256, the LSTM
settings), `videos.list` (every exported file, RTFM style) and, for each `--list`, the same list with its labels
pointing at the exported files, so `mgfn train` reads them like any other features. Every file is written under
a temporary name and renamed into place; a re-run skips videos already exported.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mgfn.atomic import atomic_open, write_bytes
from mgfn.data import crop_files, load_features, magnitude_channel, read_list
from mgfn.errors import InputError

EXPORT_NAME = "i3d_lstm_export"


def add_arguments(parser) -> None:
    from pipeline.cli import add_device_argument, add_quiet_argument

    parser.add_argument("--model", required=True, type=Path, metavar="CKPT",
                        help="an I3D-LSTM checkpoint (mgfn train with i3d_lstm)")
    parser.add_argument("--features", required=True, type=Path, metavar="I3D_DIR",
                        help="folder of I3D features <video-id>.npy [T, crops, D] (e.g. OUT/<extractor-id>/ of mgfn "
                             "extract); every video in it is exported")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT_DIR",
                        help="folder for <video-id>.npy [T, crops, H], extractor.json and the lists")
    parser.add_argument("--list", dest="lists", action="append", type=Path, default=[], metavar="LIST",
                        help="a training/test list (CSV or RTFM) of videos in --features: written to OUT_DIR with the "
                             "same ids and labels, pointing at the exported files (repeatable)")
    add_device_argument(parser)
    add_quiet_argument(parser, help="no progress bar")


def feature_files(folder: Path) -> dict[str, Path]:
    """video id -> feature file of every video in a folder (`<id>.npy`, `<id>_i3d.npy`, per-crop `<id>__0.npy`)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: feature folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.npy")):
        files = crop_files(path)
        if files is not None and path != files[0]:
            continue                                          # per-crop set: named by its __0 file
        vid = path.name[: -len(".npy")]
        vid = vid.rsplit("__", 1)[0] if files is not None else vid
        vid = vid[: -len("_i3d")] if vid.endswith("_i3d") else vid
        if vid in found:
            raise InputError(f"{folder}: two feature files for video {vid!r} ({found[vid].name}, {path.name})")
        found[vid] = path
    if not found:
        raise InputError(f"{folder}: no .npy feature files")
    return found


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@torch.no_grad()
def encode(model, features: np.ndarray, device) -> np.ndarray:
    """One video's I3D features `[T, crops, D]` -> the LSTM front end's outputs `[T, crops, H]` (whole sequence)."""
    feats = np.asarray(features, dtype=np.float32)
    x = np.concatenate([feats, magnitude_channel(feats)], axis=-1).transpose(1, 0, 2)        # [crops, T, D+1]
    out = model.encode_clips(torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(0).to(device))  # [crops, T, H+1]
    return out[..., :-1].transpose(0, 1).float().cpu().numpy()                                # [T, crops, H]


def export_info(ckpt_path: Path, ckpt: dict, model, source: dict | None, crops: int) -> dict:
    """extractor.json of the exported set: its id changes with the checkpoint's bytes and the source features."""
    digest = sha256_of(ckpt_path)
    source_id = (source or {}).get("extractor_id")
    tag = hashlib.sha256(json.dumps([digest, source_id]).encode()).hexdigest()[:10]
    return {"extractor_id": f"{EXPORT_NAME}-{tag}", "name": EXPORT_NAME, "front_end": "lstm",
            "feature_dim": model.frontend.out_size, "crops": crops, "lstm": model.config.lstm,
            "checkpoint": str(ckpt_path), "checkpoint_sha256": digest, "epoch": ckpt.get("epoch"),
            "source": source, "source_extractor_id": source_id,
            "random_weights": bool((source or {}).get("random_weights"))}


def _rewrite_list(list_path: Path, out: Path, exported: dict[str, Path], by_path: dict[Path, str]) -> Path:
    """`list_path`'s videos and labels as `OUT/<stem>.csv` pointing at the exported files."""
    rows = []
    for e in read_list(list_path, allow_outside=True):
        vid = by_path.get(e.path.resolve())
        if vid is None:
            raise InputError(f"{list_path}: {e.video_id} ({e.path}) is not a video of --features")
        rows.append((e.video_id, e.label, exported[vid].name))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["video_id", "label", "path"])
    w.writerows(rows)
    target = out / f"{list_path.stem}.csv"
    write_bytes(target, buf.getvalue().encode())
    return target


def main(args) -> int:
    from mgfn.checkpoint import load_model
    from mgfn.evaluate import resolve_device

    device = resolve_device(args.device)
    model, ckpt = load_model(args.model, device=device)
    if getattr(model, "frontend", None) is None:
        raise InputError(f"{args.model}: the model has no LSTM front end, so there is nothing to export "
                         "(train it with --extractor i3d_lstm)")
    files = feature_files(args.features)
    by_path = {p.resolve(): vid for vid, p in files.items()}
    first = load_features(next(iter(files.values())))
    if first.shape[2] != model.config.feature_size:
        raise InputError(f"{args.features}: features are {first.shape[2]}-d, the model expects "
                         f"{model.config.feature_size}-d")
    source_json = args.features / "extractor.json"
    source = json.loads(source_json.read_text()) if source_json.is_file() else None
    info = export_info(args.model, ckpt, model, source, first.shape[1])
    args.out.mkdir(parents=True, exist_ok=True)
    info_path = args.out / "extractor.json"
    if info_path.is_file():
        before = json.loads(info_path.read_text())
        if before.get("extractor_id") != info["extractor_id"]:
            raise InputError(f"{args.out} holds features exported from another checkpoint or source "
                             f"({before.get('extractor_id')}); export into another folder")
    write_bytes(info_path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    for stale in args.out.glob(".*.tmp"):                       # left by a killed run
        stale.unlink()
    stems = [lst.stem for lst in args.lists]
    if len(set(stems)) != len(stems):
        raise InputError(f"--list: two lists named {sorted(s for s in stems if stems.count(s) > 1)[0]!r}; "
                         "each becomes OUT/<name>.csv")

    exported, done, skipped = {}, 0, 0
    for vid, path in tqdm(files.items(), desc="export", unit="video", disable=args.quiet or not sys.stderr.isatty()):
        target = args.out / f"{vid}.npy"
        exported[vid] = target
        if target.is_file():
            skipped += 1
            continue
        feats = load_features(path)
        if feats.shape[1:] != first.shape[1:]:
            raise InputError(f"{path}: {feats.shape[1]} crops x {feats.shape[2]}-d, but the folder's first video has "
                             f"{first.shape[1]} x {first.shape[2]}-d")
        array = encode(model, feats, device)
        with atomic_open(target, "wb") as f:
            np.save(f, array, allow_pickle=False)
        done += 1
    write_bytes(args.out / "videos.list", "".join(f"{p.name}\n" for p in exported.values()).encode())
    lists = [_rewrite_list(lst, args.out, exported, by_path) for lst in args.lists]
    print(f"mgfn export: {len(files)} video(s): {done} exported, {skipped} already there; "
          f"[T, {first.shape[1]}, {info['feature_dim']}] features in {args.out}"
          + (f"; lists: {', '.join(p.name for p in lists)}" if lists else ""))
    if info["random_weights"]:
        print("WARNING: the source I3D features were made with random weights (their extractor.json says so)",
              file=sys.stderr)
    return 0
