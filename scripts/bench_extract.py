"""Benchmark I3D feature extraction (Caffe2 I3D-R50, `i3d_r50_rtfm`, 10 crops) end to end against the model alone.

Prints (a) end-to-end frames/s, (b) model-only frames/s on the same clips preloaded, (c) float32 matmul GMAC/s,
model GMAC/s and their ratio; a naive baseline (per-frame PIL transforms, one crop-clip per forward, float32,
contiguous memory, BatchNorm unfolded); bf16 against float32 (speed, feature cosine); and peak RSS of
`mgfn extract` on a video 10x longer than the base one. Ends with one JSON line.

Weights are random (speed does not depend on them; `--weights` takes a real file). Numbers on a machine
shared with other jobs are noisy: each timed step runs `--rounds` times and the best round counts.
Usage: .venv/bin/python scripts/bench_extract.py [--device cpu|cuda] [--clips 4] [--json-out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from extractors.decode import open_video  # noqa: E402
from extractors.extractor import FeatureExtractor  # noqa: E402
from extractors.models import load_model  # noqa: E402

SHARED_VIDEO = REPO.parent / "shared" / "data" / "videos" / "RoadAccidents002_x264.mp4"
GMAC_PER_CROP_CLIP = 16.4  # Caffe2 I3D-R50 convolutions, 16 x 224 x 224 (i3d-reference.md)
CLIP = 16
DTYPES = ("float32", "bfloat16")
THREADS = torch.get_num_threads()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_video(path: Path, frames: np.ndarray, fps: float = 30, repeat: int = 1) -> Path:
    """uint8 RGB frames [N, H, W, 3], `repeat` times over -> H.264 mp4."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for img in (f for _ in range(repeat) for f in frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def base_video(tmp: Path) -> Path:
    if SHARED_VIDEO.is_file():
        return SHARED_VIDEO
    log(f"{SHARED_VIDEO} not found: generating a 320x240 test video")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:240, 0:320]
    frames = np.empty((352, 240, 320, 3), np.uint8)
    for i in range(len(frames)):
        for c in range(3):
            frames[i, ..., c] = (xx + yy + 3 * i * (c + 1)) % 256
        frames[i] = np.clip(frames[i].astype(np.int16) + rng.integers(-8, 8, frames[i].shape), 0, 255)
    return write_video(tmp / "generated.mp4", frames)


def read_frames(path: Path, limit: int | None = None) -> np.ndarray:
    with open_video(path) as reader:
        fps = reader.info.fps
        chunks = []
        for chunk in reader.chunks(64):
            chunks.append(chunk)
            if limit and sum(len(c) for c in chunks) >= limit:
                break
    frames = np.concatenate(chunks)
    return frames[:limit] if limit else frames, fps


def matmul_gmacs(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 2.0) -> float:
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        sync(device)
        reps += 1
    return reps * n ** 3 / (time.perf_counter() - t0) / 1e9


def clips_of(frames: np.ndarray, k: int) -> list[np.ndarray]:
    return [frames[i * CLIP:(i + 1) * CLIP] for i in range(k)]


def batches_of(clips: list, size: int) -> list[list]:
    return [clips[i:i + size] for i in range(0, len(clips), size)]


def time_e2e(ext: FeatureExtractor, video: Path, tmp: Path) -> tuple[float, float]:
    """Frames per wall second and per CPU second (all threads / cores used) of `mgfn extract`'s loop
    (pipeline.engine, default decoders: one thread on CPU) on a video of k clips, into a fresh feature store."""
    import uuid

    from pipeline.engine import Extraction
    from pipeline.store import FeatureStore

    t0, c0 = time.perf_counter(), time.process_time()
    with FeatureStore(tmp / f"e2e-{uuid.uuid4().hex[:8]}", ext.extractor_id) as store:
        result = Extraction(ext, store, [video], show=False).run()
    frames = result.frames
    return frames / (time.perf_counter() - t0), frames / ((time.process_time() - c0) / THREADS)


def time_model(ext: FeatureExtractor, inputs: list[torch.Tensor]) -> tuple[float, float, np.ndarray]:
    """Frames per wall second and per CPU second of the network alone on preloaded device inputs, and the features."""
    sync(ext.device)
    t0, c0 = time.perf_counter(), time.process_time()
    feats = [ext.run_network(x) for x in inputs]  # .cpu() inside synchronises
    n = sum(len(f) for f in feats) * CLIP
    return n / (time.perf_counter() - t0), n / ((time.process_time() - c0) / THREADS), np.concatenate(feats)


def naive_fps(frames: np.ndarray, video: Path, k: int, device: torch.device, weights: str, rounds: int) -> float:
    """Per-frame PIL resize + TenCrop, one crop-clip per forward, float32, contiguous memory, BatchNorm unfolded."""
    from PIL import Image
    import torchvision.transforms.functional as TF

    model = load_model("i3d_r50_rtfm", weights=weights, device=str(device), channels_last=False, fold_batchnorm=False)

    def run(clip_frames: np.ndarray) -> None:
        pil = [TF.resize(Image.fromarray(f), 256) for f in clip_frames]  # PIL bilinear, short side 256
        crops = [TF.ten_crop(img, 224) for img in pil]  # per frame: 10 PIL crops
        for c in range(10):
            x = torch.stack([torch.from_numpy(np.asarray(fr[c], dtype=np.float32)) for fr in crops])  # [T, S, S, 3]
            x = ((x - 114.75) / 57.375).permute(3, 0, 1, 2)[None].contiguous().to(device)  # [1, 3, T, S, S]
            with torch.inference_mode():
                model.features(x).cpu()

    with open_video(video) as reader:  # warm-up on one clip, then time k clips including decode
        run(next(reader.chunks(CLIP)))
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        done = 0
        with open_video(video) as reader:
            for chunk in reader.chunks(CLIP):
                run(chunk)
                done += 1
                if done >= k:
                    break
        best = max(best, done * CLIP / (time.perf_counter() - t0))
    return best


_RSS_CHILD = """
import sys
from pipeline.cli import main
rc = main(sys.argv[2:])
status = open("/proc/self/status").read()
peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
open(sys.argv[1], "w").write(str(peak_kib))
sys.exit(rc)
"""


def peak_rss_mib(video: Path, out: Path, device: str, dtype: str) -> tuple[float, float]:
    """Peak RSS (MiB) and wall seconds of `mgfn extract` on one video, in a fresh process.

    The child reads its own VmHWM: a forked child's ru_maxrss would include the parent's RSS at fork time.
    """
    report = out.with_suffix(".rss")
    argv = ["extract", str(video), "--out", str(out), "--weights", "random", "--crops", "1", "--device", device,
            "--dtype", dtype, "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(report), *argv], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"mgfn {' '.join(argv)} failed: {proc.stderr[-2000:]}")
    return int(report.read_text()) / 1024, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--video", type=Path, default=None, help=f"base video (default {SHARED_VIDEO.name} if present)")
    ap.add_argument("--clips", type=int, default=None, help="clips per timed step (default 4 on CPU, 64 on CUDA)")
    ap.add_argument("--naive-clips", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="repeat each timed step, keep the best")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--weights", default="random")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()

    started, load_start = time.perf_counter(), os.getloadavg()[0]
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    if cuda:  # float32 means float32 (FeatureExtractor does the same)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
    k = args.clips or (64 if cuda else 4)
    log(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, weights {args.weights} "
        f"(random weights: speed only, the features mean nothing)")

    tmpdir = tempfile.TemporaryDirectory(prefix="bench_extract_")
    tmp = Path(tmpdir.name)
    source = args.video or base_video(tmp)
    frames, fps = read_frames(source)
    long_video = write_video(tmp / "long_10x.mp4", frames, fps, repeat=10)  # 10N frames

    if len(frames) < k * CLIP:
        frames_k, _ = read_frames(long_video, k * CLIP)
    else:
        frames_k = frames[:k * CLIP]
    clips = clips_of(frames_k, k)  # the same first k clips the end-to-end run sees (re-encoded)
    video_k = write_video(tmp / "k_clips.mp4", frames_k, fps)
    log(f"base video {source.name}: {len(frames)} frames {frames.shape[2]}x{frames.shape[1]} @ {fps:g} fps; "
        f"timing {k} clips x 10 crops")

    res: dict = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "weights": args.weights, "clips_timed": k, "crops": 10, "video": source.name}

    # Both dtypes, interleaved round by round, so that they and the two measurements see the same machine load.
    exts, inputs, timings = {}, {}, {}
    for dtype in DTYPES:
        ext = exts[dtype] = FeatureExtractor("i3d_r50_rtfm", weights=args.weights, crops=10, device=str(device),
                                             dtype=dtype, batch_size=args.batch_size)
        inputs[dtype] = [ext.device_input(ext.prepare(b)) for b in batches_of(clips, ext.batch_size)]
        ext.run_network(inputs[dtype][0])  # warm-up: oneDNN / cuDNN primitive creation
        time_e2e(ext, video_k, tmp)
        timings[dtype] = {"e2e": [], "model": [], "e2e_cpu": [], "model_cpu": []}
    feats = {}
    for r in range(args.rounds):
        for dtype in DTYPES:
            t = timings[dtype]
            wall, cpu = time_e2e(exts[dtype], video_k, tmp)
            t["e2e"].append(wall), t["e2e_cpu"].append(cpu)
            wall, cpu, feats[dtype] = time_model(exts[dtype], inputs[dtype])
            t["model"].append(wall), t["model_cpu"].append(cpu)
            log(f"round {r + 1} {dtype}: end-to-end {t['e2e'][-1]:.2f} frames/s, model only {t['model'][-1]:.2f} "
                f"frames/s (per CPU-second/{THREADS}: {t['e2e_cpu'][-1]:.2f} / {t['model_cpu'][-1]:.2f})")
    for dtype in DTYPES:
        for key, values in timings[dtype].items():
            res[f"{dtype}_{key}_fps"] = max(values)
    del inputs

    matmul = max(matmul_gmacs(device) for _ in range(args.rounds))
    matmul_bf16 = max(matmul_gmacs(device, torch.bfloat16) for _ in range(args.rounds))
    f32, bf = feats["float32"], feats["bfloat16"]
    f32, bf = f32.reshape(-1, f32.shape[-1]), bf.reshape(-1, bf.shape[-1])
    cos = (f32 * bf).sum(-1) / (np.linalg.norm(f32, axis=-1) * np.linalg.norm(bf, axis=-1))
    model_gmacs = res["float32_model_fps"] / CLIP * 10 * GMAC_PER_CROP_CLIP
    model_gmacs_bf16 = res["bfloat16_model_fps"] / CLIP * 10 * GMAC_PER_CROP_CLIP

    log("naive baseline ...")
    naive = naive_fps(frames, source, args.naive_clips, device, args.weights, args.rounds)

    rss_ratio = None
    if not args.skip_rss:
        dev = "cuda" if cuda else "cpu"
        base_rss, base_s = peak_rss_mib(source, tmp / "rss_base", dev, "bfloat16")
        long_rss, long_s = peak_rss_mib(long_video, tmp / "rss_long", dev, "bfloat16")
        rss_ratio = long_rss / base_rss
        res.update(rss_base_mib=round(base_rss, 1), rss_10x_mib=round(long_rss, 1),
                   rss_base_s=round(base_s, 1), rss_10x_s=round(long_s, 1))
        log(f"peak RSS: base {base_rss:.0f} MiB ({len(frames)} frames, {base_s:.0f}s), "
            f"10x {long_rss:.0f} MiB ({10 * len(frames)} frames, {long_s:.0f}s)")

    res.update({
        "e2e_fps": round(res["float32_e2e_fps"], 3),
        "model_fps": round(res["float32_model_fps"], 3),
        "overhead_ratio": round(res["float32_e2e_fps"] / res["float32_model_fps"], 3),
        "matmul_gmacs": round(matmul, 1),
        "model_gmacs": round(model_gmacs, 1),
        "efficiency": round(model_gmacs / matmul, 3),
        "naive_fps": round(naive, 3),
        "speedup_vs_naive": round(res["float32_e2e_fps"] / naive, 2),
        "speedup_vs_naive_bf16": round(res["bfloat16_e2e_fps"] / naive, 2),
        "bf16_speedup": round(res["bfloat16_model_fps"] / res["float32_model_fps"], 2),
        "bf16_e2e_speedup": round(res["bfloat16_e2e_fps"] / res["float32_e2e_fps"], 2),
        "bf16_cosine": round(float(cos.min()), 5),
        "bf16_cosine_mean": round(float(cos.mean()), 6),
        "matmul_bf16_gmacs": round(matmul_bf16, 1),
        "bf16_efficiency": round(model_gmacs_bf16 / matmul_bf16, 3),
        "overhead_ratio_bf16": round(res["bfloat16_e2e_fps"] / res["bfloat16_model_fps"], 3),
        "rss_ratio_10x": None if rss_ratio is None else round(rss_ratio, 3),
        "seconds": round(time.perf_counter() - started, 1),
        "loadavg_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    })
    if not cuda:  # frames per CPU-second: what other jobs on a shared machine disturb least
        res["overhead_ratio_cpu"] = round(res["float32_e2e_cpu_fps"] / res["float32_model_cpu_fps"], 3)
        res["bf16_speedup_cpu"] = round(res["bfloat16_model_cpu_fps"] / res["float32_model_cpu_fps"], 2)
    for key in [k for k in res if k.endswith("_fps") and k.startswith(DTYPES)]:
        if cuda and "_cpu_" in key:
            del res[key]
        else:
            res[key] = round(res[key], 3)
    line = json.dumps(res)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    print(line)
    tmpdir.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
