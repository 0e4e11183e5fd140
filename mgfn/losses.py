"""MGFN training loss: top-k BCE + magnitude contrastive loss + smoothness + sparsity.

Two recorded forms of the smoothness/sparsity terms (see mgfn-reference.md):
- "rtfm" (default; what produced the published numbers): both on the abnormal scores flattened across videos.
- "head" (reference HEAD after PR #18): smoothness per video over all videos, sparsity on the normal scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mgfn.model import MGFNOutput


@dataclass
class LossConfig:
    form: str = "rtfm"            # "rtfm" | "head"
    pairing: str = "crop"         # "crop" (reference: crop c+crops/2 vs crop c) | "video" (different videos)
    margin: float = 200.0
    w_contrastive: float = 1e-3   # weight of the whole contrastive bracket
    w_con_ab: float = 1e-3        # weight of the abnormal-vs-normal term inside the bracket
    w_same: float = 1.0           # weight of the two same-class (normal-normal, abnormal-abnormal) terms inside it
    w_smooth: float = 8e-4
    w_sparse: float = 8e-3
    w_bottom: float = 0.0         # BCE towards 0 on the mean of each abnormal video's k lowest scores (not in the reference)

    def __post_init__(self):
        if self.form not in ("rtfm", "head"):
            raise ValueError(f"loss form must be rtfm or head, got {self.form!r}")
        if self.pairing not in ("crop", "video"):
            raise ValueError(f"pairing must be crop or video, got {self.pairing!r}")


def contrastive(u, v, y: int, margin: float = 200.0):
    """mean((1-y) d^2 + y max(margin - d, 0)^2), d = pairwise_distance (eps 1e-6 on the difference)."""
    d = F.pairwise_distance(u, v, keepdim=True)
    return torch.mean((1 - y) * d.pow(2) + y * torch.clamp(margin - d, min=0.0).pow(2))


def same_class_pairs(feat_l1, crops: int, pairing: str):
    """Rows to compare within one class. feat_l1: `[crops*B, k]`, crop-major (row = crop*B + video).

    "crop": the reference's split of the rows in halves; with 10 crops it pairs crop c+5 with crop c of
    the same video. "video": each row against the same crop of the next video in the batch.
    """
    rows = feat_l1.shape[0]
    if pairing == "crop":
        half = rows // 2
        return feat_l1[half:2 * half], feat_l1[:half]
    b = rows // crops
    if b < 2:
        raise ValueError("video pairing needs at least 2 videos per class in a batch")
    per_crop = feat_l1.view(crops, b, -1)
    return per_crop.roll(-1, dims=1).reshape(rows, -1), feat_l1


def smooth_sparse(scores, n_normal: int, form: str):
    """Unweighted (smoothness, sparsity) on the crop-averaged scores `[2B, T, 1]`."""
    s = scores.squeeze(-1)                                            # [2B, T]
    if form == "head":
        smooth = (s[:, 1:] - s[:, :-1]).pow(2).sum()
        sparse = s[:n_normal].reshape(-1).norm(p=2)
        return smooth, sparse
    abnormal = s[n_normal:].reshape(-1)                               # flattened across videos
    smooth = (abnormal[1:] - abnormal[:-1]).pow(2).sum()              # last element repeated: +0
    sparse = abnormal.norm(p=2)
    return smooth, sparse


def mgfn_loss(out: MGFNOutput, crops: int, cfg: LossConfig | None = None) -> dict[str, torch.Tensor]:
    """All loss terms of one iteration and their weighted total (key "total")."""
    cfg = cfg or LossConfig()
    n_normal = out.score_normal.shape[0]
    score = torch.cat([out.score_normal, out.score_abnormal]).squeeze(1)
    label = torch.cat([torch.zeros(n_normal), torch.ones(out.score_abnormal.shape[0])]).to(score)
    bce = F.binary_cross_entropy(score, label)

    abn = out.abn_feat.norm(p=1, dim=2)                               # [crops*B, k]
    nor = out.nor_feat.norm(p=1, dim=2)
    con = contrastive(abn, nor, 1, cfg.margin)
    con_n = contrastive(*same_class_pairs(nor, crops, cfg.pairing), 0, cfg.margin)
    con_a = contrastive(*same_class_pairs(abn, crops, cfg.pairing), 0, cfg.margin)
    smooth, sparse = smooth_sparse(out.scores, n_normal, cfg.form)
    bottom = bottom_k(out.scores[n_normal:, :, 0], out.abn_feat.shape[1])
    total = (bce + cfg.w_contrastive * (cfg.w_con_ab * con + cfg.w_same * (con_a + con_n))
             + cfg.w_smooth * smooth + cfg.w_sparse * sparse + cfg.w_bottom * bottom)
    return {"total": total, "bce": bce, "con": con, "con_n": con_n, "con_a": con_a,
            "smooth": smooth, "sparse": sparse, "bottom": bottom}


def bottom_k(abnormal_scores, k: int):
    """BCE towards 0 of the mean of each abnormal video's k lowest snippet scores (`[B, T]`).

    An abnormal training video is untrimmed: its event fills part of it, and its least suspicious snippets are
    normal. The top-k BCE alone is met by raising every snippet of an abnormal video, which a model that sees what
    kind of video it is (`center: context`) can do without telling snippets apart; this term asks the same video's
    quietest snippets to stay low. Measured on real UCF-Crime features it hurts (docs/training.md: the model
    memorises which rows of its training videos are low), so it is off (`w_bottom: 0`) in every recipe."""
    k = min(k, abnormal_scores.shape[1])
    low = -torch.topk(-abnormal_scores, k, dim=1).values.mean(1)
    return F.binary_cross_entropy(low, torch.zeros_like(low))
