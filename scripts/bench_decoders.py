"""Benchmark the hand-over from decoder processes to the process that feeds the network.

On a GPU the consumer (`mgfn extract`'s main process) receives every clip as uint8 frames and copies them into a
pinned staging buffer; whatever time that takes its thread a clip is time the GPU can wait for. This measures
the CPU time of that thread per clip (and of the whole process, decoders excluded) and its frames/s, for payloads sent as
their own tensors (a fresh shared-memory segment and file descriptor per message, the way before) and through
each decoder's reused shared slots (now), in the same process, on the same videos, alternating rounds.

No network runs: the consumer copies each payload into a reused buffer (what `FeatureExtractor.upload` does on
CUDA before the copy to the GPU), or, with --transformed, clones each CPU-transformed clip (the CPU path).
Usage: .venv/bin/python scripts/bench_decoders.py [--videos 4] [--frames 960] [--decoders 1] [--rounds 3]
Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import torch  # noqa: E402

from extractors import decoders  # noqa: E402


def consume(spec: decoders.DecodeSpec, videos: list[Path], n: int, slots: int) -> dict:
    """Every clip of `videos` through `n` decoder processes; the consumer thread's and process's CPU seconds,
    and wall seconds."""
    buf = torch.empty(0, dtype=torch.uint8)
    with decoders.DecoderPool(spec, n, shared_slots=slots) as pool:
        assert pool.lends == (slots > 0), "shared slots asked for but not used (too little room in /dev/shm?)"
        pool.submit(-1, videos[0], 0)  # warm-up: processes started, codecs loaded
        while (msg := pool.get(timeout=60)) is not None and msg[0] not in ("end", "error"):
            pass
        for i, v in enumerate(videos):
            pool.submit(i, v, 0)
        thread0, cpu0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
        clips, left = 0, len(videos)
        while left:
            msg = pool.get(timeout=60)
            if msg is None:
                raise RuntimeError("the decoders went quiet")
            if msg[0] == "error":
                raise RuntimeError(msg[2])
            if msg[0] == "end":
                left -= 1
            elif msg[0] == "clips":
                x = msg[3]
                if spec.on_cpu:
                    x = x.clone()  # FeatureExtractor.upload(borrowed=True) on CPU
                else:
                    if buf.numel() < x.numel():
                        buf = torch.empty(x.numel(), dtype=torch.uint8)
                    buf[:x.numel()].view(x.shape).copy_(x)  # the pinned staging copy on CUDA
                clips += x.shape[0] // (spec.crops if spec.on_cpu else 1)
                del x, msg
        return {"thread_s": time.thread_time() - thread0, "cpu_s": time.process_time() - cpu0,
                "wall_s": time.perf_counter() - wall0, "clips": clips}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=960, help="frames a video (320x240, 30 fps)")
    ap.add_argument("--decoders", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--transformed", action="store_true",
                    help="the CPU path: decoders send transformed 10-crop float32 clips (batch 1)")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    from video_samples import synthetic_frames, write_video

    spec = decoders.DecodeSpec(clip_len=16, stride=16, tail="pad", fps=None, resize="short256",
                               crops=10 if args.transformed else 1, crop_size=224, preset="rtfm", dtype="float32",
                               on_cpu=args.transformed, batch_size=1 if args.transformed else 32)
    with tempfile.TemporaryDirectory() as tmp:
        frames = synthetic_frames(args.frames, height=240, width=320)
        videos = [write_video(Path(tmp) / f"v{i}.mp4", frames, fps=30) for i in range(args.videos)]
        runs: dict[str, list[dict]] = {"own_tensors": [], "shared_slots": []}
        for r in range(args.rounds):
            for name, slots in (("own_tensors", 0), ("shared_slots", decoders.SLOTS_PER_DECODER)):
                runs[name].append(consume(spec, videos, args.decoders, slots))
                print(f"round {r} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    res: dict = {"decoders": args.decoders, "payload": "transformed-10crop-float32" if args.transformed else
                 "uint8-frames", "videos": args.videos, "frames_per_video": args.frames}
    for name, rs in runs.items():
        best = min(rs, key=lambda x: x["thread_s"])
        res[name] = {"thread_cpu_ms_per_clip": round(1e3 * best["thread_s"] / best["clips"], 3),
                     "process_cpu_ms_per_clip": round(1e3 * min(x["cpu_s"] for x in rs) / best["clips"], 3),
                     "frames_per_s": round(best["clips"] * 16 / min(x["wall_s"] for x in rs), 1)}
    own, shared = res["own_tensors"], res["shared_slots"]
    res["thread_cpu_own_over_shared"] = round(own["thread_cpu_ms_per_clip"] / shared["thread_cpu_ms_per_clip"], 2)
    res["frames_per_s_shared_over_own"] = round(shared["frames_per_s"] / own["frames_per_s"], 2)
    print(f"consumer thread's CPU a clip: {own['thread_cpu_ms_per_clip']} ms as own tensors, "
          f"{shared['thread_cpu_ms_per_clip']} ms through shared slots ({res['thread_cpu_own_over_shared']}x less); "
          f"whole process {own['process_cpu_ms_per_clip']} / {shared['process_cpu_ms_per_clip']} ms")
    print(json.dumps(res))
    if args.json_out:
        args.json_out.write_text(json.dumps(res) + "\n")
    return res


if __name__ == "__main__":
    main()
