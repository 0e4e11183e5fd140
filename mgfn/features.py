"""Input transforms a model applies to its clip features before anything else (`center: median`).

Each video's clips less the video's own median clip: what the camera always sees (its scene) drops out, and what
changes over time stays. With a few tens of training videos a model otherwise tells abnormal from normal videos
by their scenes and fails on new ones (README "Training recipes"). The median rather than the mean, because an
event lifts the mean of every clip of its video, which then all carry a trace of the event; the median is the
scene's clip as long as events fill less than half the video. The magnitude channel is recomputed from the
centred features, so it measures how far a clip is from its video's usual clip.

The centred features are then multiplied by `center_scale`, which training sets from its own videos so that a
typical clip lies `TYPICAL_DEVIATION` per channel (root mean square) from its video's median clip. Deviations of
L2-normalised features are otherwise about thirty times smaller than those of raw ones, too small against the first
layer's biases to survive bfloat16; much larger ones act like a higher learning rate on the first layer. 0.3 is
what the small-data benchmark supports (README "Training recipes": 0.1 and 1 both lose seeds).
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


def center_clips(video, scale: float = 1.0):
    """`[V, crops, T, D+1]` (features + magnitude) -> the same with each video's median clip (per crop, over T)
    subtracted from the features, times `scale`, and the magnitude recomputed; a `ClipSequences` batch: its clips
    likewise, over each video's own length (padding stays zero)."""
    if isinstance(video, ClipSequences):
        clips = video.clips.clone()
        for i, n in enumerate(int(n) for n in video.lengths):
            clips[i, :, :n] = (clips[i, :, :n] - clips[i, :, :n].median(dim=1, keepdim=True).values) * scale
        return video._replace(clips=clips)
    features = video[..., :-1]
    features = (features - features.median(dim=2, keepdim=True).values) * scale
    return torch.cat([features, features.norm(p=2, dim=-1, keepdim=True)], dim=-1)


def deviation_scale(videos) -> float:
    """`center_scale` for `videos` (each `[crops, T, D]`): TYPICAL_DEVIATION / the median over all clips of the root
    mean square over channels of (clip - its video's median clip); 1.0 when no clip deviates at all."""
    rms = []
    for x in videos:
        x = torch.as_tensor(x, dtype=torch.float32)
        rms.append(((x - x.median(dim=1, keepdim=True).values).norm(dim=-1) / math.sqrt(x.shape[-1])).flatten())
    typical = float(torch.cat(rms).median()) if rms else 0.0
    return float(f"{TYPICAL_DEVIATION / typical:.6g}") if typical > 0 else 1.0
