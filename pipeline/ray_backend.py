"""`mgfn extract --backend ray`: one extractor actor per GPU of a Ray cluster, all writing one feature store.

Why actors and not Ray Data: decoded frames are large (a 320x240 clip of 16 frames is 3.7 MB as uint8, ten
crops of it as model input 96 MB), so they should never cross the network; each actor decodes on its own node,
with its own decoder processes (`--decoders`), next to its GPU, exactly as the local backend does. The actors
share nothing but the store folder: each runs the whole video list, and the store's per-video claims decide
who extracts what (pipeline.store). An actor that dies is restarted by Ray and its call retried; its claim
expires (at once on the same node, after the claim timeout on another) and the video resumes from its last
flushed clip, so it ends with the same bytes. The store must sit on a folder every node sees at the same
path, and so must the videos.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from extractors.errors import InputError

ACTOR_RESTARTS = 3  # a killed actor is restarted (and its call retried) this many times


def _extractor_kwargs(args: argparse.Namespace) -> dict:
    from mgfn.lstm import resolve_extractor

    name, _ = resolve_extractor(args.extractor, args.base)
    return dict(name=name, weights=args.weights, crops=args.crops, preset=args.preset, resize=args.resize,
                tail=args.tail, fps=args.fps, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                workers=args.workers, crop_size=args.crop_size)


class ExtractorActor:
    """One extractor (one GPU, or some CPUs) of the cluster: builds the model once, then extracts the list."""

    def __init__(self, kwargs: dict, compile_choice: str, store_args: dict):
        from extractors.extractor import FeatureExtractor, resolve_device
        from pipeline.engine import resolve_compile

        self.videos: list[Path] = [Path(p) for p in store_args.pop("videos")]
        compile_network = resolve_compile(compile_choice, resolve_device(kwargs["device"]).type, self.videos)
        self.extractor = FeatureExtractor(**kwargs, compile=compile_network)
        self.store_args = store_args
        self.extractor.warmup(log=lambda msg: None)

    def pid(self) -> int:
        return os.getpid()

    def run(self, decoders: int | None, strict: bool):
        from pipeline.engine import Extraction
        from pipeline.extract import open_store

        store = open_store(argparse.Namespace(**self.store_args), self.extractor)
        with store:
            return Extraction(self.extractor, store, self.videos, show=False, decoders=decoders,
                              strict=strict, log=lambda msg: None).run()


def extract_with_ray(args: argparse.Namespace, videos: list[Path]):
    """Run the extraction on Ray; returns (ExtractResult, store folder, extractor id, random weights)."""
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray: pip install -e '.[ray]'") from None
    from extractors.extractor import FeatureExtractor
    from pipeline.engine import ExtractResult
    from pipeline.extract import open_store
    from pipeline.store import SourceStat, video_id

    kwargs = _extractor_kwargs(args)
    # The store is opened here first: settings are checked, extractor.json written, and what is done already
    # (the summary's "skipped") read, before any actor starts. The model is built on the CPU just for its id.
    probe = FeatureExtractor(**{**kwargs, "device": "cpu", "dtype": args.dtype})
    store = open_store(args, probe)
    skipped = []
    for p in videos:
        try:
            if store.is_done(video_id(p), SourceStat.of(p)):
                skipped.append(video_id(p))
        except OSError:
            pass
    store.close()
    store_dir, extractor_id, random_weights = store.dir, probe.extractor_id, probe.random_weights
    del probe

    started = time.monotonic()
    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    on_gpu = gpus > 0 and args.device in ("auto", "cuda") or str(args.device).startswith("cuda")
    per_actor = args.gpus_per_worker if on_gpu else 0
    n = args.ray_workers or (max(1, int(gpus // per_actor)) if on_gpu else 1)
    actor_cls = ray.remote(num_gpus=per_actor, num_cpus=1, max_restarts=ACTOR_RESTARTS,
                           max_task_retries=ACTOR_RESTARTS)(ExtractorActor)
    store_args = {"out": str(Path(args.out).resolve()), "rtfm_names": args.rtfm_names, "file_dtype": args.file_dtype,
                  "flush_every": args.flush_every, "videos": [str(Path(v).resolve()) for v in videos]}
    actors = [actor_cls.remote({**kwargs, "device": "cuda" if on_gpu else "cpu"}, args.compile, dict(store_args))
              for _ in range(n)]
    print(f"mgfn extract: {n} Ray extractor actor(s) ({per_actor:g} GPU each) on "
          f"{len(ray.nodes())} node(s) writing {store_dir}")
    calls = [a.run.remote(args.decoders, args.strict) for a in actors]
    try:
        results: list[ExtractResult] = ray.get(calls)
    except Exception as exc:
        from mgfn.atomic import is_disk_error

        cause = getattr(exc, "cause", None)            # a RayTaskError: the actor's own exception
        if is_disk_error(cause):                        # a full disk on a worker: one line, as for a local run
            raise cause from None
        raise

    merged = ExtractResult(skipped=skipped)
    done = {vid for r in results for vid in r.done}
    merged.done = [video_id(p) for p in videos if video_id(p) in done]
    merged.failed = sorted({f for r in results for f in r.failed if f[0] not in done})
    merged.truncated = sorted({t for r in results for t in r.truncated})
    merged.frames = sum(r.frames for r in results)
    merged.seconds = time.monotonic() - started
    return merged, store_dir, extractor_id, random_weights
