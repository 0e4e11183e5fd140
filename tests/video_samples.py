"""Small deterministic videos for tests: frames with a moving square, written with PyAV."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def synthetic_frames(n: int, height: int = 64, width: int = 80, seed: int = 0, gray: bool = False) -> np.ndarray:
    """Deterministic frames with a moving square, uint8 [n, H, W, 3] (smooth enough to survive H.264)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(3,), dtype=np.int64)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        img = np.empty((height, width, 3), dtype=np.int64)
        for c in range(3):
            img[..., c] = base[c] + ((xx + yy + 3 * i * (c + 1)) % 64)
        y0, x0 = (5 + 2 * i) % max(1, height - 16), (7 + 3 * i) % max(1, width - 16)
        img[y0:y0 + 16, x0:x0 + 16] = 250
        if gray:
            img[..., :] = img.mean(axis=-1, keepdims=True).astype(np.int64)
        frames[i] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float = 25, codec: str = "libx264",
                pix_fmt: str = "yuv420p", pts: list[int] | None = None, time_base: Fraction | None = None) -> Path:
    """Write uint8 RGB frames [N, H, W, 3] to a video with PyAV; `pts` gives variable frame timing."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    """An mp4 holding one AAC audio stream and no video."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
