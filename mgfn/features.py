"""Input transforms a model applies to its clip features before anything else (`normalize`, `center`).

Each video's clips less the video's own usual clip: what the camera always sees (its scene) drops out, and what
changes over time stays. With a few tens of training videos a model otherwise tells abnormal from normal videos
by their scenes and fails on new ones (docs/training.md). Not the mean clip: an event lifts the mean, and
every clip of its video then carries a negative trace of the event, which a model learns as the sign of an
abnormal video (seen with mean-centred features: scores inverted inside abnormal videos). The usual clip starts
at the per-channel median and is refined twice as the mean of the half of the clips nearest to it, so it stays on
the scene even where a video's events together fill more than half of it but spread out (the planted set: one
seed in ten inverted with the median alone, none with the refinement). It cannot tell a scene from an event that
fills most of a video unchanged; for such data keep `center: none`. The magnitude channel is recomputed from the
centred features, so it measures how far a clip is from its video's usual clip.

Centring also removes what kind of video it is, and on real UCF-Crime features that carries most of the signal
(docs/training.md: centred alone, frame AUC 0.66-0.73). `center: context` therefore puts the usual clip beside each
centred clip; `normalize: l2` divides every clip by its norm first (C3D and I3D clip norms differ between videos).

The centred features are then multiplied by `center_scale`, which training sets from its own videos so that a
typical clip lies `TYPICAL_DEVIATION` per channel (root mean square) from its video's usual clip. Deviations of
L2-normalised features are otherwise about thirty times smaller than those of raw ones, too small against the first
layer's biases to survive bfloat16. 0.3 is what the small-data benchmark supports (docs/training.md: 0.1
loses seeds; 1 lost seeds with the plain median and does as well as 0.3 with the refined usual clip).
"""
from __future__ import annotations

import math

import torch

from mgfn.lstm import ClipSequences

CENTERS = ("none", "median", "context")
NORMALIZATIONS = ("none", "l2")
TYPICAL_DEVIATION = 0.3


def check_center(center: str, normalize: str = "none") -> None:
    if center not in CENTERS:
        raise ValueError(f"center must be one of {', '.join(CENTERS)}, got {center!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")


def input_size(feature_size: int, center: str) -> int:
    """Channels the first layer sees (without the magnitude): `center: context` puts the usual clip beside each clip."""
    return 2 * feature_size if center == "context" else feature_size


def l2_normalize(features):
    """Each clip `[..., D]` divided by its L2 norm (a clip of zeros stays zeros)."""
    return features / features.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-12)


def normalize_clips(video):
    """`[V, crops, T, D+1]` -> each clip L2-normalised, the magnitude channel recomputed; a `ClipSequences` batch: its
    clips likewise (padding stays zero)."""
    if isinstance(video, ClipSequences):
        return video._replace(clips=l2_normalize(video.clips))
    features = l2_normalize(video[..., :-1])
    return torch.cat([features, features.norm(p=2, dim=-1, keepdim=True)], dim=-1)


def usual_clip(x, dim: int):
    """The video's usual clip along `dim` (time): the median clip, then twice the mean of the half of the clips
    nearest to the current estimate."""
    m = x.median(dim=dim, keepdim=True).values
    for _ in range(2):
        d = (x - m).norm(dim=-1, keepdim=True)
        keep = (d <= d.median(dim=dim, keepdim=True).values).to(x.dtype)
        m = (x * keep).sum(dim, keepdim=True) / keep.sum(dim, keepdim=True)
    return m


def center_clips(video, scale: float = 1.0, context: bool = False):
    """`[V, crops, T, D+1]` (features + magnitude) -> the same with each video's usual clip (per crop, over T)
    subtracted from the features, times `scale`, and the magnitude recomputed from them; with `context`, the usual
    clip (times `scale`) beside every clip: `[V, crops, T, 2D+1]`. A `ClipSequences` batch: its clips likewise, over
    each video's own length (padding stays zero)."""
    if isinstance(video, ClipSequences):
        v, crops, length, d = video.clips.shape
        clips = video.clips.new_zeros((v, crops, length, input_size(d, "context" if context else "median")))
        for i, n in enumerate(int(n) for n in video.lengths):
            x = video.clips[i, :, :n]
            u = usual_clip(x, 1)
            clips[i, :, :n, :d] = (x - u) * scale
            if context:
                clips[i, :, :n, d:] = u.expand_as(x) * scale
        return video._replace(clips=clips)
    features = video[..., :-1]
    usual = usual_clip(features, 2)
    centred = (features - usual) * scale
    parts = [centred, usual.expand_as(features) * scale] if context else [centred]
    return torch.cat([*parts, centred.norm(p=2, dim=-1, keepdim=True)], dim=-1)


def deviation_scale(videos, normalize: str = "none") -> float:
    """`center_scale` for `videos` (each `[crops, T, D]`, normalised first as the model will): TYPICAL_DEVIATION /
    the median over all clips of the root mean square over channels of (clip - its video's usual clip); 1.0 when
    no clip deviates at all."""
    rms = []
    for x in videos:
        x = torch.as_tensor(x, dtype=torch.float32)
        if normalize == "l2":
            x = l2_normalize(x)
        rms.append(((x - usual_clip(x, 1)).norm(dim=-1) / math.sqrt(x.shape[-1])).flatten())
    typical = float(torch.cat(rms).median()) if rms else 0.0
    return float(f"{TYPICAL_DEVIATION / typical:.6g}") if typical > 0 else 1.0
