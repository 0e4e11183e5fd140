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
from pathlib import Path

from extractors.errors import InputError

EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from extractors.decode import VIDEO_EXTENSIONS
    from pipeline.cli import add_device_argument, add_dtype_argument, add_quiet_argument

    parser.add_argument("input", type=Path,
                        help=f"folder of videos (recursive: {' '.join(VIDEO_EXTENSIONS)} and frame folders), one "
                             "video, or a text file of paths, one per line (relative to the text file's folder)")
    parser.add_argument("--out", type=Path, required=True, help="feature store root; files go to OUT/<extractor-id>/")
    parser.add_argument("--extractor", default="i3d_r50_rtfm",
                        help="i3d_r50_rtfm (RTFM/MGFN features, 2048-d), i3d_r50_ptv (2048-d), i3d_inception (1024-d), "
                             "i3d_lstm (the I3D features of --base; the LSTM is part of the model mgfn train makes)")
    parser.add_argument("--base", help="with --extractor i3d_lstm: the I3D extractor whose features it reads "
                                       "(default: i3d_r50_rtfm)")
    parser.add_argument("--weights", default=None,
                        help="weights file, registry name, or 'random' (explicit; every output then says so) "
                             "(default: the extractor's Kinetics weights)")
    parser.add_argument("--crops", type=int, choices=(10, 5, 1), default=10, help="ten-crop, five-crop or centre crop")
    parser.add_argument("--preset", default=None, help="preprocessing preset: rtfm, inception, kinetics (default: the model's)")
    parser.add_argument("--resize", default="short256",
                        help="resize rule before cropping: shortN (shorter side to N), WxH or none")
    parser.add_argument("--crop-size", type=int, default=224, help="side of the square crops the network sees")
    parser.add_argument("--tail", choices=("pad", "loop", "drop"), default="pad",
                        help="last partial clip: pad with the last frame (T=ceil(N/16)), loop, or drop (T=floor(N/16))")
    parser.add_argument("--fps", type=float, default=None,
                        help="resample videos to this frame rate first (default: each video's own)")
    add_device_argument(parser)
    add_dtype_argument(parser)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="clips per forward pass (x crops) (default: 1 on CPU, 8 on CUDA)")
    parser.add_argument("--workers", type=int, default=1,
                        help="threads preparing clips: 1 decodes and transforms; N > 1: one decodes, N-1 resize and crop")
    parser.add_argument("--flush-every", type=int, default=None,
                        help="make a long video resumable every N clips (default: 32 on CPU, 256 on CUDA, where "
                             "each flush's fsyncs would otherwise hold up the GPU)")
    parser.add_argument("--rtfm-names", action="store_true", help="name files <video-id>_i3d.npy, as the RTFM features are")
    parser.add_argument("--file-dtype", choices=("float32", "float16"), default="float32", help="dtype of the saved arrays")
    parser.add_argument("--allow-outside", action="store_true",
                        help="let a text-file list name videos outside the text file's folder")
    parser.add_argument("--decoders", type=int, default=None,
                        help="decoder processes feeding the model, several videos at once (default: cores - 1 on "
                             "CUDA; 0 on CPU, one decoder thread, as the model needs every core)")
    parser.add_argument("--compile", choices=("auto", "yes", "no"), default="auto",
                        help="torch.compile the network on CUDA (auto: when the videos hold enough frames for the "
                             "~1 min compile to pay back); ignored on CPU")
    parser.add_argument("--strict", action="store_true",
                        help="count a truncated video (fewer frames decode than its header declares) as failed")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: this process; ray: one extractor actor per GPU of a Ray cluster (without GPUs: "
                             "one, or --workers-ray N), all writing OUT")
    parser.add_argument("--address", default=None,
                        help="with --backend ray: the cluster to join (auto: a running `ray start` cluster; "
                             "default: start a local one)")
    parser.add_argument("--gpus-per-worker", type=float, default=1.0,
                        help="with --backend ray: GPUs per extractor actor")
    parser.add_argument("--workers-ray", dest="ray_workers", type=int, default=None,
                        help="with --backend ray: number of extractor actors (default: one per GPU, else 1)")
    add_quiet_argument(parser)


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


def _warn_random(extractor_id: str) -> None:
    print(f"WARNING: random weights (--weights random): features in {extractor_id}/ are NOT real I3D features; "
          "the folder name, extractor.json and every manifest record say so.", file=sys.stderr)


def extract_videos(extractor, store, videos: list[Path], show: bool = True, decoders: int | None = None,
                   strict: bool = False):
    """Extract every video not already done into `store`; returns an ExtractResult, which unpacks as
    (done ids, skipped ids, [(id, reason)] failed).

    Shared by `mgfn extract`, `mgfn score` and `mgfn run`: one loop (pipeline.engine), so every caller skips,
    resumes, batches across videos, shares the store with other processes and records failures the same way.
    """
    from pipeline.engine import Extraction

    return Extraction(extractor, store, videos, show=show, decoders=decoders, strict=strict).run()


def main(args: argparse.Namespace) -> int:
    from extractors.extractor import FeatureExtractor
    from mgfn.lstm import resolve_extractor
    from pipeline.store import find_duplicate_ids

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
    if args.decoders is not None and args.decoders < 0:
        raise InputError(f"--decoders must be 0 or more, not {args.decoders}")
    if args.backend == "ray":
        from pipeline.ray_backend import extract_with_ray

        result, store_dir, extractor_id, random_weights = extract_with_ray(args, videos)
    else:
        from extractors.extractor import resolve_device
        from pipeline.engine import resolve_compile

        compile_network = resolve_compile(args.compile, resolve_device(args.device).type, videos)
        extractor = FeatureExtractor(
            name, weights=args.weights, crops=args.crops, preset=args.preset, resize=args.resize,
            tail=args.tail, fps=args.fps, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
            workers=args.workers, crop_size=args.crop_size, compile=compile_network)
        if extractor.random_weights:
            _warn_random(extractor.extractor_id)
        store = open_store(args, extractor)
        extractor.warmup(log=lambda msg: print(f"mgfn extract: {msg}", file=sys.stderr))
        with store:
            result = extract_videos(extractor, store, videos, show=not args.quiet, decoders=args.decoders,
                                    strict=args.strict)
        store_dir, extractor_id, random_weights = store.dir, extractor.extractor_id, extractor.random_weights
    print(summary_line(len(videos), result))
    if result.phases:
        print(phases_line(result))
    for vid, reason in result.failed:
        print(f"  failed: {vid}: {reason}")
    for vid, decoded, declared in result.truncated:
        print(f"  truncated: {vid}: {decoded} of {declared} declared frames decoded (kept; --strict fails it)")
    print(f"features: {store_dir}{os.sep} (manifest: manifest.jsonl)")
    if random_weights:
        _warn_random(extractor_id)
    return EXIT_FAILED if result.failed else 0


def open_store(args: argparse.Namespace, extractor):
    """The feature store for `extractor` under --out, with extractor.json written."""
    from pipeline.store import FeatureStore

    batch = extractor.batch_size
    flush_every = args.flush_every if args.flush_every is not None else (256 if extractor.device.type == "cuda" else 32)
    flush_every = -(-flush_every // batch) * batch if flush_every > 0 else flush_every
    store = FeatureStore(args.out, extractor.extractor_id, rtfm_names=args.rtfm_names,
                         file_dtype=args.file_dtype, flush_every=flush_every)
    store.write_extractor_info(extractor.config())
    return store


def phases_line(result) -> str:
    """Where the extracting process's time went (pipeline.engine.PHASES), the rest as "other": a run that mostly
    waits for decoders wants more `--decoders`; one that mostly runs or waits for the network is as fast as it is."""
    spent = {**result.phases, "other": max(0.0, result.seconds - sum(result.phases.values()))}
    return "  time in this process: " + ", ".join(f"{k} {v:.1f}s" for k, v in spent.items())


def summary_line(total: int, result) -> str:
    """`mgfn extract: N video(s) in Ts: ... done, ... failed, ... frames/s` (the same for every backend)."""
    parts = [f"{len(result.done)} done", f"{len(result.skipped)} skipped (already done)"]
    if result.by_others:
        parts.append(f"{len(result.by_others)} done by another process")
    if result.truncated:
        parts.append(f"{len(result.truncated)} truncated")
    parts.append(f"{len(result.failed)} failed")
    return (f"mgfn extract: {total} video(s) in {result.seconds:.1f}s: {', '.join(parts)}; "
            f"{result.frames:,} frames at {result.frames_per_second:,.0f} frames/s")
