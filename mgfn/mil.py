"""The MIL ranking baseline (Sultani et al., CVPR 2018): the floor every MGFN recipe must beat.

A per-segment MLP D-512-32-1 with sigmoid; the loss ranks the top-scoring segment of each abnormal bag above
the top-scoring segment of its paired normal bag (hinge, margin 1), plus smoothness and sparsity on the
abnormal scores. Crops are scored separately and averaged, like MGFN's scores.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mgfn.features import center_clips, check_center, input_size, normalize_clips


@dataclass
class MILConfig:
    feature_size: int = 2048
    hidden: tuple[int, ...] = (512, 32)
    dropout: float = 0.6
    center: str = "none"           # "median": each clip less its video's usual clip (mgfn.features)
    center_scale: float = 1.0      # centred features times this; training sets it from its videos
    normalize: str = "none"        # "l2": each clip divided by its norm first
    type: str = "mil"

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        check_center(self.center, self.normalize)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class MILOutput(NamedTuple):
    score_normal: torch.Tensor     # [B, 1] max segment score of each normal video
    score_abnormal: torch.Tensor   # [B, 1]
    scores: torch.Tensor           # [2B, T, 1] crop-averaged segment scores


class MILRanking(nn.Module):
    """Segment scorer; `forward(video [2B, crops, T, D+1])`, first B videos normal. The magnitude channel is unused."""

    def __init__(self, config: MILConfig | None = None, **overrides):
        super().__init__()
        self.config = cfg = config or MILConfig(**overrides)
        layers, width = [], input_size(cfg.feature_size, cfg.center)
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = h
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def prepare_inputs(self, video):
        """The per-video input transforms (mgfn.features), as MGFN.prepare_inputs."""
        if self.config.normalize == "l2":
            video = normalize_clips(video)
        if self.config.center != "none":
            video = center_clips(video, self.config.center_scale, context=self.config.center == "context")
        return video

    def predict(self, video, prepared: bool = False):
        """Crop-averaged segment scores `[V, T]`."""
        video = video if prepared else self.prepare_inputs(video)
        return torch.sigmoid(self.mlp(video[..., :-1])).squeeze(-1).mean(1)

    def forward(self, video, n_normal: int | None = None, prepared: bool = False) -> MILOutput:
        scores = self.predict(video, prepared)                        # [V, T]
        n = video.shape[0] // 2 if n_normal is None else n_normal
        return MILOutput(scores[:n].max(1, keepdim=True).values, scores[n:].max(1, keepdim=True).values,
                         scores.unsqueeze(-1))


def mil_loss(out: MILOutput, w_smooth: float = 8e-5, w_sparse: float = 8e-5) -> dict[str, torch.Tensor]:
    """Hinge ranking of max scores (normal i paired with abnormal i) + smoothness + sparsity of abnormal scores."""
    n = out.score_normal.shape[0]
    abnormal = out.scores[n:, :, 0]                                    # [B, T]
    rank = F.relu(1.0 - out.score_abnormal + out.score_normal).mean()
    smooth = (abnormal[:, 1:] - abnormal[:, :-1]).pow(2).sum(1).mean()
    sparse = abnormal.sum(1).mean()
    return {"total": rank + w_smooth * smooth + w_sparse * sparse, "rank": rank, "smooth": smooth, "sparse": sparse}
