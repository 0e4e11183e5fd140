"""Shared fixtures: the `../shared` folder (skipped when absent) and small videos written with PyAV
(`video_samples.py`; import from there, not from conftest, which each test folder may shadow)."""
from __future__ import annotations

from pathlib import Path

import pytest

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
