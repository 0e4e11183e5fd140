"""Clips to model input: resize, 10/5/1 crops in torchvision's order, and pixel normalisation, batched in torch.

Everything stays uint8 until the crops are taken (resize included, on CPU torchvision has a native uint8 kernel),
then one copy converts to the output dtype and layout [B, crops, 3, T, S, S]. Runs on whatever device the input
tensor is on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

RESIZE_PRESETS = ("short256", "256x256", "340x256")  # also accepted: "shortN", "WxH", "none"
CROP_COUNTS = (1, 5, 10)


@dataclass(frozen=True)
class Normalization:
    """Pixel scaling of RGB values x in 0-255: x / scale, then (x - mean) / std per channel."""

    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: torch.Tensor, channel_dim: int = -4) -> torch.Tensor:
        """Normalise a float tensor in place (its channel axis at `channel_dim`) and return it."""
        mean = [m * self.scale for m in self.mean]  # in 0-255 units: one subtraction, one division
        std = [s * self.scale for s in self.std]
        if len(set(mean)) == 1 and len(set(std)) == 1:
            return x.sub_(mean[0]).div_(std[0])
        shape = [1] * x.dim()
        shape[channel_dim] = 3
        return x.sub_(torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)).div_(
            torch.tensor(std, dtype=x.dtype, device=x.device).view(shape))


PRESETS: dict[str, Normalization] = {
    # RTFM authors' I3D-R50 features: 0-255 scale, mean 114.75, std 57.375 on all channels.
    "rtfm": Normalization(1.0, (114.75,) * 3, (57.375,) * 3),
    # Inception-v1 I3D (piergiaj, video_features): [-1, 1], i.e. x / 127.5 - 1.
    "inception": Normalization(1.0, (127.5,) * 3, (127.5,) * 3),
    # pytorchvideo Kinetics models: x / 255, mean 0.45, std 0.225 (the same numbers as rtfm).
    "kinetics": Normalization(255.0, (0.45,) * 3, (0.225,) * 3),
}


def parse_resize(resize: str) -> tuple[str, int, int]:
    """"short256" -> ("short", 256, 256); "340x256" -> ("fixed", 340, 256) as width x height; "none"."""
    if resize == "none":
        return "none", 0, 0
    if m := re.fullmatch(r"short(\d+)", resize):
        return "short", int(m[1]), int(m[1])
    if m := re.fullmatch(r"(\d+)x(\d+)", resize):
        return "fixed", int(m[1]), int(m[2])
    raise ValueError(f"resize must be one of {', '.join(RESIZE_PRESETS)} (or shortN, WxH, none), got {resize!r}")


def resize_frames(frames: torch.Tensor, resize: str = "short256", min_size: int = 0) -> torch.Tensor:
    """Resize [..., C, H, W] frames (bilinear, antialiased); never below `min_size` on either side."""
    kind, width, height = parse_resize(resize)
    h, w = frames.shape[-2:]
    if kind == "short":
        return F.resize(frames, [max(width, min_size)], antialias=True)
    if kind == "fixed":
        return F.resize(frames, [max(height, min_size), max(width, min_size)], antialias=True)
    if min(h, w) < min_size:  # "none", but too small to crop: upscale the short side just enough
        return F.resize(frames, [min_size], antialias=True)
    return frames


def _center_anchor(height: int, width: int, size: int) -> tuple[int, int]:
    # torchvision's rounding (Python round, halves to even), so crops match CenterCrop exactly.
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def _check(frames: torch.Tensor, size: int) -> tuple[int, int]:
    h, w = frames.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"crop {size} is larger than the frames ({w}x{h}); resize first")
    return h, w


def crop_windows(height: int, width: int, size: int, crops: int) -> list[tuple[int, int, bool]]:
    """(top, left, flipped) of each crop in torchvision's order: TL, TR, BL, BR, centre, then on the flipped frame."""
    centre = _center_anchor(height, width, size)
    five = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size), centre]
    if crops == 1:
        return [(*centre, False)]
    return [(t, l, False) for t, l in five] + ([(t, l, True) for t, l in five] if crops == 10 else [])


def _crop_views(frames: torch.Tensor, size: int, crops: int) -> list[torch.Tensor]:
    """Views [..., size, size] of each crop; the flipped ones come from one flipped copy of the frames."""
    h, w = _check(frames, size)
    flipped = frames.flip(-1) if crops == 10 else None
    return [(flipped if flip else frames)[..., t:t + size, l:l + size]
            for t, l, flip in crop_windows(h, w, size, crops)]


def five_crop(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Top-left, top-right, bottom-left, bottom-right, centre crops of [..., H, W]: [5, ..., size, size]."""
    return torch.stack(_crop_views(frames, size, 5))


def ten_crop(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """five_crop, then five_crop of the horizontally flipped frames (torchvision TenCrop): [10, ..., size, size]."""
    return torch.stack(_crop_views(frames, size, 10))


def center_crop(frames: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Centre crop of [..., H, W] (torchvision CenterCrop on frames at least `size`): [..., size, size]."""
    return _crop_views(frames, size, 1)[0]


def _is_channels_last_input(out: torch.Tensor) -> bool:
    """Whether `out` [B, crops, 3, T, S, S] is a view of a channels_last_3d [B*crops, 3, T, S, S] tensor."""
    b, crops, c, t, h, w = out.shape
    expected = (crops * c * t * h * w, c * t * h * w, 1, c * h * w, c * w, c)
    return all(n == 1 or got == want for n, got, want in zip(out.shape, out.stride(), expected))


class ClipTransform:
    """uint8 clips [B, T, H, W, 3] (or [T, H, W, 3]) -> model input [B, crops, 3, T, S, S] (or [crops, 3, T, S, S]).

    resize: "short256" (default), "256x256", "340x256" (width x height); crops: 10, 5 or 1; preset: a PRESETS name.
    """

    def __init__(self, resize: str = "short256", crops: int = 10, crop_size: int = 224, preset: str = "rtfm",
                 dtype: torch.dtype = torch.float32):
        parse_resize(resize)
        if crops not in CROP_COUNTS:
            raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        self.resize, self.crops, self.crop_size, self.preset, self.dtype = resize, crops, crop_size, preset, dtype
        self.normalization = PRESETS[preset]

    def describe(self) -> dict:
        """Everything that changes the output numbers (for the extractor id hash)."""
        return {"resize": self.resize, "crops": self.crops, "crop_size": self.crop_size, "preset": self.preset,
                "normalization": {"scale": self.normalization.scale, "mean": list(self.normalization.mean),
                                  "std": list(self.normalization.std)},
                "interpolation": "bilinear-antialias", "dtype": str(self.dtype).removeprefix("torch.")}

    def __repr__(self) -> str:
        return (f"ClipTransform(resize={self.resize!r}, crops={self.crops}, crop_size={self.crop_size}, "
                f"preset={self.preset!r}, dtype={self.dtype})")

    def model_input(self, clips: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 clips [B, T, H, W, 3] (or [T, H, W, 3]) -> the network's input [B*crops, 3, T, S, S] in
        channels_last_3d, written in that layout directly: the same numbers as this transform's output made
        channels_last_3d, without a second full-size copy (96 MB per 10-crop float32 clip) to change the layout."""
        clips = torch.from_numpy(clips) if isinstance(clips, np.ndarray) else clips
        b, t = (1, *clips.shape[:1]) if clips.dim() == 4 else clips.shape[:2]
        size = self.crop_size
        x = torch.empty((b * self.crops, 3, t, size, size), dtype=self.dtype, device=clips.device,
                        memory_format=torch.channels_last_3d)
        self(clips if clips.dim() == 5 else clips[None], out=x.view(b, self.crops, 3, t, size, size))
        return x

    def __call__(self, clips: torch.Tensor | np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        """Transform a batch; `out` (same shape, dtype, device as the result) is reused instead of allocating.

        `out` is contiguous, or a view [B, crops, 3, T, S, S] of a channels_last_3d [B*crops, 3, T, S, S] tensor
        (what `model_input` passes): the frames are then kept channels-last, so each crop row is one plain copy."""
        if isinstance(clips, np.ndarray):
            clips = torch.from_numpy(clips)
        if clips.dtype != torch.uint8 or clips.dim() not in (4, 5) or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 clips [B, T, H, W, 3] or [T, H, W, 3], got {clips.dtype} "
                             f"{list(clips.shape)}")
        single = clips.dim() == 4
        if single:
            clips = clips[None]
        b, t = clips.shape[:2]
        size = self.crop_size
        frames = clips.permute(0, 1, 4, 2, 3)  # [B, T, 3, H, W], a channels-last view (the fast uint8 resize)
        frames = resize_frames(frames.reshape(b * t, *frames.shape[2:]), self.resize, min_size=size)
        shape = (b, self.crops, 3, t, size, size)
        channels_last = False
        if out is None:
            out = torch.empty(shape, dtype=self.dtype, device=frames.device)
        else:
            ok = out.shape == (shape[1:] if single else shape) and out.dtype == self.dtype
            out = out[None] if single else out
            channels_last = ok and not out.is_contiguous() and _is_channels_last_input(out)
            if not ok or not (out.is_contiguous() or channels_last):
                raise ValueError(f"out must be a contiguous {self.dtype} tensor of shape {list(shape)}")
        # [B*T, 3, h, w] in the output's layout: crops then copy as plain strided blocks (5x faster)
        frames = frames.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        for k, crop in enumerate(_crop_views(frames, size, self.crops)):
            crop = crop.reshape(b, t, 3, size, size).transpose(1, 2)  # [B, 3, T, S, S] uint8 view
            if self.dtype == torch.float32:
                out[:, k].copy_(crop)  # the uint8 -> float conversion happens in this one copy
            else:  # normalise in float32, round once into the narrower type
                out[:, k].copy_(self.normalization(crop.to(torch.float32)))
        if self.dtype == torch.float32:
            self.normalization(out)
        return out[0] if single else out
