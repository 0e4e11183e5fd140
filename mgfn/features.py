"""Input transforms a model applies to its clip features before anything else (`center: median`).

Each video's clips less the video's own usual clip: what the camera always sees (its scene) drops out, and what
changes over time stays. With a few tens of training videos a model otherwise tells abnormal from normal videos
by their scenes and fails on new ones (README "Training recipes"). Not the mean clip: an event lifts the mean, and
every clip of its video then carries a negative trace of the event, which a model learns as the sign of an
abnormal video (seen with mean-centred features: scores inverted inside abnormal videos). The usual clip starts
at the per-channel median and is refined twice as the mean of the half of the clips nearest to it, so it stays on
the scene even where a video's events together fill more than half of it but spread out (the planted set: one
seed in ten inverted with the median alone, none with the refinement). It cannot tell a scene from an event that
fills most of a video unchanged; for such data keep `center: none`. The magnitude channel is recomputed from the
centred features, so it measures how far a clip is from its video's usual clip.

The centred features are then multiplied by `center_scale`, which training sets from its own videos so that a
typical clip lies `TYPICAL_DEVIATION` per channel (root mean square) from its video's usual clip. Deviations of
L2-normalised features are otherwise about thirty times smaller than those of raw ones, too small against the first
layer's biases to survive bfloat16. 0.3 is what the small-data benchmark supports (README "Training recipes": 0.1
loses seeds; 1 lost seeds with the plain median and does as well as 0.3 with the refined usual clip).
"""
from __future__ import annotations

import math

import torch

from mgfn.lstm import ClipSequences

CENTERS = ("none", "median")
TYPICAL_DEVIATION = 0.3


def check_center(center: str) -> None:
    if center not in CENTERS:
        raise ValueError(f"center must be one of {', '.join(CENTERS)}, got {center!r}")


def usual_clip(x, dim: int):
    """The video's usual clip along `dim` (time): the median clip, then twice the mean of the half of the clips
    nearest to the current estimate."""
    m = x.median(dim=dim, keepdim=True).values
    for _ in range(2):
        d = (x - m).norm(dim=-1, keepdim=True)
        keep = (d <= d.median(dim=dim, keepdim=True).values).to(x.dtype)
        m = (x * keep).sum(dim, keepdim=True) / keep.sum(dim, keepdim=True)
    return m


def center_clips(video, scale: float = 1.0):
    """`[V, crops, T, D+1]` (features + magnitude) -> the same with each video's usual clip (per crop, over T)
    subtracted from the features, times `scale`, and the magnitude recomputed; a `ClipSequences` batch: its clips
    likewise, over each video's own length (padding stays zero)."""
    if isinstance(video, ClipSequences):
        clips = video.clips.clone()
        for i, n in enumerate(int(n) for n in video.lengths):
            clips[i, :, :n] = (clips[i, :, :n] - usual_clip(clips[i, :, :n], 1)) * scale
        return video._replace(clips=clips)
    features = video[..., :-1]
    features = (features - usual_clip(features, 2)) * scale
    return torch.cat([features, features.norm(p=2, dim=-1, keepdim=True)], dim=-1)


def deviation_scale(videos) -> float:
    """`center_scale` for `videos` (each `[crops, T, D]`): TYPICAL_DEVIATION / the median over all clips of the root
    mean square over channels of (clip - its video's usual clip); 1.0 when no clip deviates at all."""
    rms = []
    for x in videos:
        x = torch.as_tensor(x, dtype=torch.float32)
        rms.append(((x - usual_clip(x, 1)).norm(dim=-1) / math.sqrt(x.shape[-1])).flatten())
    typical = float(torch.cat(rms).median()) if rms else 0.0
    return float(f"{TYPICAL_DEVIATION / typical:.6g}") if typical > 0 else 1.0
