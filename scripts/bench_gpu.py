"""GPU extraction benchmark: a folder of UCF-like videos end to end, and the network alone, in one JSON line.

1. Writes `--videos` H.264 videos (320x240, 30 fps, lengths spread over --min-frames..--max-frames).
2. End to end, each a fresh `mgfn extract` process (Caffe2 I3D-R50, random weights, --crops, bf16):
   sequential (--decoders 0 --compile no: one decoder thread, one video after another, as before),
   --decoders N, --decoders N --compile yes, and --backend ray when Ray is installed. frames/s is the
   summary line's (model built and warmed up, no process start-up); wall seconds include everything.
3. The network alone on preloaded inputs (bf16 and float32 with TF32 off): eager (cuDNN heuristics),
   autotuned (cudnn.benchmark), compiled (torch.compile); peak GPU memory; compiled-vs-eager agreement.
4. A profile of the fastest bf16 network: GPU time by kernel kind, and how much of the wall time the GPU is busy.

    python scripts/bench_gpu.py --json-out OUT.json                 # on a GPU (bench_gpu.sh sets it up)
    python scripts/bench_gpu.py --device cpu --videos 2 --min-frames 40 --max-frames 60 --size 80x64 \\
        --crops 1 --net-clips 2 --rounds 1                           # the CPU dry run the tests use
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CLIP = 16
SUMMARY = re.compile(r"([\d,]+) frames at ([\d,.]+) frames/s")
PHASES = re.compile(r"time in this process: (.*)$", re.M)  # mgfn extract's second line (pipeline.extract.phases_line)


def log(msg: str) -> None:
    print(f"[bench_gpu] {msg}", file=sys.stderr, flush=True)


def write_video(args: tuple[Path, int, int, int, int]) -> str:
    """A moving gradient with noise (so the encoder has work), H.264, 30 fps."""
    import av

    path, n, width, height, seed = args
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    noise = rng.integers(0, 24, (8, height, width, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=Fraction(30))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(n):
            base = ((xx + 2 * i + seed * 7) % 256).astype(np.uint8)
            img = np.stack([base, ((yy + i) % 256).astype(np.uint8), base[::-1]], -1) + noise[i % 8]
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return str(path)


def make_videos(folder: Path, count: int, lo: int, hi: int, size: tuple[int, int]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.linspace(lo, hi, count).round().astype(int)
    jobs = [(folder / f"video_{i:02d}.mp4", int(n), size[0], size[1], i) for i, n in enumerate(lengths)]
    with ProcessPoolExecutor(max(1, min(count, os.cpu_count() or 1))) as pool:
        list(pool.map(write_video, jobs))
    return int(lengths.sum())


def extract(videos: Path, out: Path, device: str, crops: int, batch: int, extra: list[str],
            timeout: float) -> dict:
    """One `mgfn extract` process; its summary's frames/s and the wall seconds."""
    cmd = [sys.executable, "-m", "pipeline", "extract", str(videos), "--out", str(out), "--weights", "random",
           "--crops", str(crops), "--dtype", "bfloat16", "--device", device, "--batch-size", str(batch),
           "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    m = SUMMARY.search(proc.stdout)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(extra)}: exit {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}")
    res = {"fps": float(m.group(2).replace(",", "")), "frames": int(m.group(1).replace(",", "")),
           "wall_s": round(wall, 1)}
    if (phases := PHASES.search(proc.stdout)) is not None:  # where the extracting process's time went
        res["phases_s"] = {k: float(v.rstrip("s")) for k, v in (p.rsplit(" ", 1) for p in phases.group(1).split(", "))}
    return res


def compare_stores(a: Path, b: Path) -> dict:
    """Byte-identical files, and the lowest feature cosine between two stores of the same videos."""
    (da,), (db,) = [p for p in a.iterdir() if p.is_dir()], [p for p in b.iterdir() if p.is_dir()]
    same, low = 0, 1.0
    names = sorted(p.name for p in da.glob("*.npy"))
    for name in names:
        x, y = (da / name).read_bytes(), (db / name).read_bytes()
        same += x == y
        fa, fb = np.load(da / name), np.load(db / name)
        fa, fb = fa.reshape(-1, fa.shape[-1]), fb.reshape(-1, fa.shape[-1])
        cos = (fa * fb).sum(-1) / (np.linalg.norm(fa, axis=-1) * np.linalg.norm(fb, axis=-1) + 1e-12)
        low = min(low, float(cos.min()))
    return {"files": len(names), "identical": same, "min_cosine": round(low, 6)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_alone(device: torch.device, dtype: str, mode: str, crops: int, batch: int, clips: int,
                  rounds: int, x_u8: torch.Tensor) -> tuple[dict, np.ndarray]:
    """frames/s of the network on preloaded inputs: eager, autotuned or compiled."""
    from extractors.extractor import FeatureExtractor

    ext = FeatureExtractor("i3d_r50_rtfm", weights="random", crops=crops, device=str(device), dtype=dtype,
                           batch_size=batch, compile=mode == "compiled")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = mode != "eager"
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    ext.warmup(log=log)
    compile_s = time.perf_counter() - t0
    x = ext.upload(x_u8) if device.type == "cuda" else ext.prepare(list(x_u8.numpy()))
    ext.run_network(x)
    steps = max(1, clips // batch)
    best, feats = 0.0, None
    for _ in range(rounds):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            feats = ext.run_network(x)
        sync(device)
        best = max(best, steps * batch * CLIP / (time.perf_counter() - t0))
    res = {"fps": round(best, 1), "compiled": ext.compiled}
    if mode == "compiled":
        res["compile_s"] = round(compile_s, 1)
    if device.type == "cuda":
        res["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return res, feats, ext, x


KERNEL_KINDS = {  # substrings of kernel names, first match wins
    "convolution (cuDNN implicit GEMM, cuBLAS)": ("xmma", "convolve", "nvjet", "gemm", "cudnn", "nhwcaddpadding"),
    "max-pool": ("max_pool",),
    "elementwise (bias, ReLU, residual add, casts; fused by Triton when compiled)": ("elementwise", "triton", "add"),
    "memory copies and sets": ("memcpy", "memset"),
}


def profile(ext, x, device: torch.device, steps: int = 4) -> dict:
    """GPU kernel time by kind over a few batches, and the share of wall time the GPU is busy."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sync(device)
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            ext.run_network(x)
        sync(device)
        wall = time.perf_counter() - t0
    by_kind: dict[str, float] = {}
    total = 0.0
    for evt in prof.key_averages():
        gpu_us = evt.self_device_time_total
        if gpu_us <= 0:
            continue
        name = evt.key.lower()
        kind = next((k for k, keys in KERNEL_KINDS.items() if any(s in name for s in keys)), "other")
        by_kind[kind] = by_kind.get(kind, 0.0) + gpu_us
        total += gpu_us
    return {"gpu_busy_share": round(total / 1e6 / wall, 3) if wall else None,
            "kernel_share": {k: round(v / total, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}
            if total else {}, "gpu_ms_per_batch": round(total / 1e3 / steps, 1), "batches": steps}


def network_process(args) -> int:
    """--network DTYPE:MODE in a process of its own (cuDNN caches its algorithm choice per shape for the
    process, so an eager run would leave its choices to a later 'autotuned' one in the same process)."""
    dtype, mode = args.network.split(":")
    device = torch.device(args.device)
    batch = args.batch_size or (32 if device.type == "cuda" else 1)
    width, height = map(int, args.size.split("x"))
    rng = np.random.default_rng(0)
    x_u8 = torch.from_numpy(rng.integers(0, 255, (batch, CLIP, height, width, 3), dtype=np.uint8))
    res, feats, ext, x = network_alone(device, dtype, mode, args.crops, batch, args.net_clips, args.rounds, x_u8)
    if args.profile and device.type == "cuda":
        res["profile"] = profile(ext, x, device)
    if args.features_out:
        np.save(args.features_out, feats)
    print(json.dumps(res))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--min-frames", type=int, default=2000)
    ap.add_argument("--max-frames", type=int, default=8000)
    ap.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    ap.add_argument("--crops", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=None, help="clips per forward (default 32 on CUDA, 1 on CPU)")
    ap.add_argument("--decoders", type=int, default=None, help="default: cores - 1")
    ap.add_argument("--net-clips", type=int, default=128, help="clips per timed network round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", default="decoders,decoders_compiled,net-bfloat16,sequential,net-float32,ray",
                    help="what to measure, in this order: sequential, decoders, decoders_compiled, ray (end to end); "
                         "net-bfloat16, net-float32 (the network alone)")
    ap.add_argument("--no-profile", action="store_true", help="skip the kernel profile")
    ap.add_argument("--timeout", type=float, default=240, help="seconds per end-to-end run")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--network", default=None, help=argparse.SUPPRESS)  # DTYPE:MODE, one network timing
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--features-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.network:
        return network_process(args)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch_size or (32 if cuda else 1)
    decoders = args.decoders if args.decoders is not None else max(1, (os.cpu_count() or 2) - 1)
    width, height = map(int, args.size.split("x"))
    res: dict = {"date": time.strftime("%Y-%m-%d"), "device": torch.cuda.get_device_name(device) if cuda else "cpu",
                 "torch": torch.__version__, "cpus": os.cpu_count(), "crops": args.crops, "batch": batch,
                 "decoders": decoders, "dtype_e2e": "bfloat16", "weights": "random"}

    def save() -> None:
        if args.json_out:
            args.json_out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.json_out.with_name(args.json_out.name + ".tmp")
            tmp.write_text(json.dumps(res) + "\n")
            os.replace(tmp, args.json_out)

    tmpdir = tempfile.TemporaryDirectory(prefix="bench_gpu_")
    tmp = Path(tmpdir.name)
    t0 = time.perf_counter()
    res["frames_total"] = make_videos(tmp / "videos", args.videos, args.min_frames, args.max_frames, (width, height))
    res["videos"] = args.videos
    res["video_gen_s"] = round(time.perf_counter() - t0, 1)
    log(f"{args.videos} videos, {res['frames_total']:,} frames, {width}x{height}, in {res['video_gen_s']} s")
    save()

    e2e_args = {"sequential": ["--decoders", "0", "--compile", "no"],
                "decoders": ["--decoders", str(decoders), "--compile", "no"],
                "decoders_compiled": ["--decoders", str(decoders), "--compile", "yes"],
                "ray": ["--backend", "ray", "--decoders", str(decoders), "--compile", "no"]}

    def e2e(name: str) -> None:
        if name == "decoders_compiled" and not cuda:
            return
        if name == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                res["e2e_ray"] = "not measured: Ray is not installed here"
                return
        try:
            res[f"e2e_{name}"] = extract(tmp / "videos", tmp / f"out_{name}", args.device, args.crops, batch,
                                         e2e_args[name], args.timeout)
        except Exception as exc:  # keep what was measured; say what failed
            res[f"e2e_{name}"] = f"failed: {' '.join(str(exc).split())[:400]}"
        log(f"end to end, {name}: {res[f'e2e_{name}']}")
        if (tmp / "out_sequential").is_dir() and (tmp / "out_decoders").is_dir():
            res["decoders_vs_sequential"] = compare_stores(tmp / "out_sequential", tmp / "out_decoders")

    def network(dtype: str) -> None:
        for mode in ["autotuned", "compiled", "eager"] if cuda else ["autotuned", "eager"]:
            key = f"net_{dtype}_{mode}"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--network", f"{dtype}:{mode}",
                   "--device", args.device, "--size", args.size, "--crops", str(args.crops),
                   "--batch-size", str(batch), "--net-clips", str(args.net_clips), "--rounds", str(args.rounds),
                   "--features-out", str(tmp / f"{key}.npy")]
            if dtype == "bfloat16" and mode == ("compiled" if cuda else "autotuned") and not args.no_profile:
                cmd.append("--profile")
            try:
                proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
                if proc.returncode != 0:
                    raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-600:]}")
                res[key] = json.loads(proc.stdout.strip().splitlines()[-1])
            except Exception as exc:
                res[key] = f"failed: {' '.join(str(exc).split())[:400]}"
            log(f"network alone, {dtype} {mode}: {res[key]}")
            save()
        eager, compiled = tmp / f"net_{dtype}_eager.npy", tmp / f"net_{dtype}_compiled.npy"
        if eager.is_file() and compiled.is_file():
            a, b = np.load(eager), np.load(compiled)
            a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, a.shape[-1])
            cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
            rel = float(np.abs(a - b).max() / np.abs(a).max())
            res[f"compiled_vs_eager_{dtype}"] = {"min_cosine": round(float(cos.min()), 6),
                                                 "max_rel_diff": float(f"{rel:.3g}")}

    for part in filter(None, args.parts.split(",")):
        if part.startswith("net-"):
            network(part.removeprefix("net-"))
        elif part in e2e_args:
            e2e(part)
        else:
            raise SystemExit(f"bench_gpu: unknown part {part!r}")
        save()

    best_net = max((v["fps"] for k, v in res.items() if k.startswith("net_bfloat16_") and isinstance(v, dict)),
                   default=None)
    best_e2e = max((v["fps"] for k, v in res.items() if k.startswith("e2e_") and isinstance(v, dict)), default=None)
    if best_net and best_e2e:
        res["best_network_fps"], res["best_e2e_fps"] = best_net, best_e2e
        res["e2e_over_network"] = round(best_e2e / best_net, 3)
    if best_e2e and isinstance(res.get("e2e_sequential"), dict):
        res["e2e_speedup_over_sequential"] = round(best_e2e / res["e2e_sequential"]["fps"], 2)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    save()
    print(json.dumps(res))
    tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
