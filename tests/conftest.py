"""Shared fixtures: the `../shared` folder (skipped when absent) and small videos written with PyAV
(`video_samples.py`; import from there, not from conftest, which each test folder may shadow)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from video_samples import synthetic_frames, write_video

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (reference vectors and real data live there)")
    return SHARED


@pytest.fixture
def make_video(tmp_path):
    """Factory: make_video(name, n_frames, height=64, width=80, fps=25, **kw) -> Path of an mp4 written with PyAV."""

    def _make(name: str = "clip.mp4", n_frames: int = 20, height: int = 64, width: int = 80, fps: float = 25,
              seed: int = 0, gray: bool = False, directory: Path | None = None, **kw) -> Path:
        frames = synthetic_frames(n_frames, height, width, seed=seed, gray=gray)
        return write_video((directory or tmp_path) / name, frames, fps=fps, **kw)

    return _make


class TinyI3D(nn.Module):
    """Same interface as the real extractors (features([B, 3, T, H, W]) -> [B, D]), a thousand times cheaper."""

    feature_dim = 8
    preset = "rtfm"

    def __init__(self, name: str, weights=None):
        super().__init__()
        self.name = name
        self.conv = nn.Conv3d(3, self.feature_dim, kernel_size=(4, 16, 16), stride=(4, 16, 16))
        self.provenance = {"name": name, "random": weights == "random",
                           "sha256": None if weights == "random" else str(weights)}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4))  # [B, D]


@pytest.fixture
def tiny(monkeypatch):
    """`mgfn extract` and FeatureExtractor build TinyI3D instead of a real I3D."""
    import extractors.extractor as extractor_module

    monkeypatch.setattr(extractor_module, "load_model",
                        lambda name, weights=None, device="cpu": TinyI3D(name, weights).to(device).eval())


@pytest.fixture(scope="module")
def one_thread():
    """An LSTM runs many tiny ops: on a busy machine each OpenMP region waits for descheduled threads (100x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def mixed(make_video, tmp_path) -> Path:
    """Short and long videos of two frame sizes."""
    vids = tmp_path / "videos"
    for i, (n, h, w) in enumerate([(20, 64, 80), (90, 48, 64), (33, 64, 80), (70, 48, 64), (16, 64, 80)]):
        make_video(f"v{i}.mp4", n, height=h, width=w, directory=vids, seed=i)
    return vids
