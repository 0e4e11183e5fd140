"""`mgfn extract INPUT --out DIR`: I3D clip features for a folder (or list) of videos into a resumable feature store.

Each video becomes DIR/<extractor-id>/<video-id>.npy `[T, crops, D]`; a re-run skips videos already done
(source unchanged), redoes changed and failed ones, and resumes a long video from its last flushed clip.
Two inputs with the same video id (`a/x.mp4` and `b/x.avi`) are refused before any work, because the store
is flat and keyed by id: rename one, or extract the folders into different --out folders.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from extractors.errors import InputError

EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path,
                        help="folder of videos (recursive: .mp4 .avi .mkv .mov .webm and frame folders), one video, "
                             "or a text file of paths, one per line (relative to the text file's folder)")
    parser.add_argument("--out", type=Path, required=True, help="feature store root; files go to OUT/<extractor-id>/")
    parser.add_argument("--extractor", default="i3d_r50_rtfm",
                        help="i3d_r50_rtfm (RTFM/MGFN features, 2048-d), i3d_r50_ptv (2048-d), i3d_inception (1024-d), "
                             "i3d_lstm (the I3D features of --base; the LSTM is part of the model mgfn train makes)")
    parser.add_argument("--base", help="with --extractor i3d_lstm: the I3D extractor whose features it reads "
                                       "(default i3d_r50_rtfm)")
    parser.add_argument("--weights", default=None,
                        help="weights file, registry name, or 'random' (explicit; every output then says so)")
    parser.add_argument("--crops", type=int, choices=(10, 5, 1), default=10, help="ten-crop, five-crop or centre crop")
    parser.add_argument("--preset", default=None, help="preprocessing preset: rtfm, inception, kinetics (default: the model's)")
    parser.add_argument("--resize", default="short256", help="resize rule before cropping (default short256)")
    parser.add_argument("--tail", choices=("pad", "loop", "drop"), default="pad",
                        help="last partial clip: pad with the last frame (T=ceil(N/16)), loop, or drop (T=floor(N/16))")
    parser.add_argument("--fps", type=float, default=None, help="resample videos to this frame rate first")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="model arithmetic; bfloat16 is autocast (fast on recent CPUs and GPUs)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per forward pass (x crops); default 1 on CPU, 8 on CUDA")
    parser.add_argument("--workers", type=int, default=1,
                        help="threads preparing clips: 1 decodes and transforms; N > 1: one decodes, N-1 resize and crop")
    parser.add_argument("--flush-every", type=int, default=32, help="make a long video resumable every N clips")
    parser.add_argument("--rtfm-names", action="store_true", help="name files <video-id>_i3d.npy, as the RTFM features are")
    parser.add_argument("--file-dtype", choices=("float32", "float16"), default="float32", help="dtype of the saved arrays")
    parser.add_argument("--allow-outside", action="store_true",
                        help="let a text-file list name videos outside the text file's folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def list_inputs(input_path: Path, allow_outside: bool = False) -> list[Path]:
    """Videos named by INPUT: a folder (recursive), one video or frame folder, or a text file of paths."""
    from extractors.decode import VIDEO_EXTENSIONS, list_videos

    if not input_path.exists():
        raise InputError(f"{input_path} does not exist")
    if input_path.is_dir():
        videos = list_videos(input_path)
        if not videos:
            raise InputError(f"no videos ({' '.join(sorted(VIDEO_EXTENSIONS))}) or frame folders under {input_path}")
        return [Path(v) for v in videos]
    if input_path.suffix.lower() in VIDEO_EXTENSIONS:
        return [input_path]
    return _read_list(input_path, allow_outside)


def _read_list(list_path: Path, allow_outside: bool) -> list[Path]:
    """Paths from a text file, one per line ('#' comments and blank lines skipped), resolved against its folder."""
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{list_path} is neither a video ({list_path.suffix or 'no suffix'}) nor a text list of paths") from None
    base = list_path.resolve().parent
    videos: list[Path] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = (base / line).resolve()
        if not allow_outside and not path.is_relative_to(base):
            raise InputError(f"{list_path}:{number}: {line} is outside {base} (use --allow-outside to permit it)")
        videos.append(path)
    if not videos:
        raise InputError(f"{list_path} lists no videos")
    return videos


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, InputError) else f"{type(exc).__name__}: {text}"


def _info_fields(info) -> dict:
    return {"num_frames": int(info.num_frames), "fps": float(info.fps), "width": int(info.width),
            "height": int(info.height), "backend": str(info.backend)}


def _warn_random(extractor_id: str) -> None:
    print(f"WARNING: random weights (--weights random): features in {extractor_id}/ are NOT real I3D features; "
          "the folder name, extractor.json and every manifest record say so.", file=sys.stderr)


def extract_videos(extractor, store, videos: list[Path], show: bool = True):
    """Extract every video not already done into `store`; returns (done ids, skipped ids, [(id, reason)] failed).

    Shared by `mgfn extract`, `mgfn score` and `mgfn run`: one loop, so every caller skips, resumes and records
    failures the same way.
    """
    from tqdm import tqdm

    from pipeline.store import SourceStat, video_id

    provenance = {"random_weights": extractor.random_weights, "weights": extractor.provenance}
    done, skipped, failed = [], [], []
    with tqdm(videos, desc="videos", unit="video", disable=not show, position=0, dynamic_ncols=True) as bar:
        for path in bar:
            vid = video_id(path)
            try:
                source = SourceStat.of(path)
            except OSError as exc:
                failed.append((vid, f"cannot read {path}: {exc.strerror}"))
                store.record(vid, SourceStat(str(path), -1, -1), "failed", error=failed[-1][1], **provenance)
                continue
            if store.is_done(vid, source):
                skipped.append(vid)
                continue
            writer = store.writer(vid, source)
            if writer.recovered is not None:  # finished and renamed, but the run stopped before recording it
                prog = writer.recovered
                store.record(vid, source, "done", file=store.path_for(vid).name, T=prog["clips_done"],
                             shape=[prog["clips_done"], prog["crops"], prog["dim"]], file_dtype=store.file_dtype.name,
                             resumed_from=prog["clips_done"], seconds=0.0, **prog.get("info", {}), **provenance)
                writer.close_done()
                done.append(vid)
                continue
            t0 = time.monotonic()
            try:
                with extractor.extract(path, start_clip=writer.start_clip) as feats:
                    writer.info = _info_fields(feats.info)
                    with tqdm(total=feats.num_clips, initial=writer.start_clip, desc=vid[:40], unit="clip",
                              leave=False, disable=not show, position=1, dynamic_ncols=True) as clip_bar:
                        for block in feats:  # [t, crops, D]
                            writer.add(block)
                            clip_bar.update(len(block))
                final, T = writer.finish()
            except KeyboardInterrupt:
                writer.flush()  # keep whole batches already computed; the next run resumes after them
                raise
            except Exception as exc:  # bad input or a decode error: record it and go on with the next video
                writer.discard()
                failed.append((vid, _one_line(exc)))
                store.record(vid, source, "failed", error=failed[-1][1], **provenance)
                continue
            store.record(vid, source, "done", file=final.name, T=T, shape=[T, extractor.crops, extractor.feature_dim],
                         file_dtype=store.file_dtype.name, resumed_from=writer.start_clip,
                         seconds=round(time.monotonic() - t0, 3), **writer.info, **provenance)
            writer.close_done()
            done.append(vid)
        store.cleanup()

    return done, skipped, failed


def main(args: argparse.Namespace) -> int:
    from extractors.extractor import FeatureExtractor
    from mgfn.lstm import resolve_extractor
    from pipeline.store import FeatureStore, find_duplicate_ids

    name, lstm = resolve_extractor(args.extractor, args.base)
    videos = list_inputs(args.input, args.allow_outside)
    dups = find_duplicate_ids(videos)
    if dups:
        shown = "; ".join(f"{vid}: {' and '.join(paths)}" for vid, paths in list(dups.items())[:3])
        raise InputError(f"{len(dups)} video id(s) used by more than one input ({shown}); "
                         "rename them or extract the folders into different --out folders")

    if lstm:  # the I3D features are the cache; the LSTM is trained with MGFN and lives in its checkpoint
        print(f"mgfn extract: {args.extractor} reads {name} features; its LSTM front end is part of the model "
              f"(mgfn train --extractor {args.extractor})")
    extractor = FeatureExtractor(
        name, weights=args.weights, crops=args.crops, preset=args.preset, resize=args.resize,
        tail=args.tail, fps=args.fps, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        workers=args.workers)
    if extractor.random_weights:
        _warn_random(extractor.extractor_id)
    batch = extractor.batch_size
    flush_every = -(-args.flush_every // batch) * batch if args.flush_every > 0 else args.flush_every
    store = FeatureStore(args.out, extractor.extractor_id, rtfm_names=args.rtfm_names,
                         file_dtype=args.file_dtype, flush_every=flush_every)
    store.write_extractor_info(extractor.config())

    started = time.monotonic()
    with store:
        done, skipped, failed = extract_videos(extractor, store, videos, show=not args.no_progress)

    elapsed = time.monotonic() - started
    print(f"mgfn extract: {len(videos)} video(s) in {elapsed:.1f}s: {len(done)} done, {len(skipped)} skipped "
          f"(already done), {len(failed)} failed")
    for vid, reason in failed:
        print(f"  failed: {vid}: {reason}")
    print(f"features: {store.dir}{os.sep} (manifest: {store.manifest_path.name})")
    if extractor.random_weights:
        _warn_random(extractor.extractor_id)
    return EXIT_FAILED if failed else 0
