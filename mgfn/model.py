"""MGFN: Magnitude-Contrastive Glance-and-Focus Network (Chen et al., AAAI 2023), as the reference code computes it.

Input per video: `[crops, T, D + 1]` clip features whose last channel is the feature magnitude (L2 norm).
Read top to bottom: FeatureAmplification -> three stages of (Glance | Focus) layers -> Head -> top-k
magnitude selection. Parameter names differ from the reference; `mgfn.checkpoint` maps them.
With `MGFNConfig.lstm` set (I3D-LSTM), an LSTM over the clip sequence (`mgfn.lstm`) comes before FeatureAmplification.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mgfn.features import center_clips, check_center, input_size, normalize_clips
from mgfn.lstm import LSTMConfig, TemporalEncoder, lstm_config
from mgfn.schema import setting


# How temporal convolutions see past a video's first and last clip. The reference pads with zeros, so a clip near
# either end sees zeros where its neighbours would be, unlike any clip inside: scores then depend on where a clip
# sits (the demo's clips rose from the first clip to the sixth in normal videos too). "edge" repeats the end clip,
# so a video whose clips are all alike gets one score at every position.
PADDINGS = ("zeros", "edge")


@dataclass
class MGFNConfig:
    """Architecture of one MGFN; defaults are the reference's."""

    feature_size: int = 2048            # D, without the magnitude channel
    dims: tuple[int, ...] = (64, 128, 1024)
    depths: tuple[int, ...] = (3, 3, 2)
    block_types: tuple[str, ...] = ("glance", "focus", "focus")
    dim_head: int = 64
    ff_mult: int = 4
    focus_kernel: int = 5
    mag_ratio: float = 0.1
    k: int = 3                          # top-k snippets by magnitude
    dropout_rate: float = 0.7           # dropout on the selection mask (training only)
    select_by: str = "magnitude"        # rank snippets by feature "magnitude" (reference) or by "score" (plain MIL)
    ff_dropout: float = 0.0
    input_dropout: float = 0.0          # dropout on what feature amplification sees (not the magnitude channel)
    center: str = "none"                # "median": each clip less its video's usual clip (mgfn.features)
    center_scale: float = 1.0           # centred features times this; training sets it from its videos
    normalize: str = "none"             # "l2": each clip divided by its norm first (mgfn.features)
    lstm: dict | None = setting(None, schema=LSTMConfig)   # I3D-LSTM front end (mgfn.lstm); None = plain MGFN
    padding: str = "zeros"              # temporal convs past a video's ends: "zeros" (reference) | "edge" (repeat it)

    def __post_init__(self):
        self.dims, self.depths = tuple(int(d) for d in self.dims), tuple(int(d) for d in self.depths)
        aliases = {"gb": "glance", "fb": "focus"}
        self.block_types = tuple(aliases.get(t.lower(), t.lower()) for t in self.block_types)
        if not (len(self.dims) == len(self.depths) == len(self.block_types)):
            raise ValueError("dims, depths and block_types must have the same length")
        if any(t not in ("glance", "focus") for t in self.block_types):
            raise ValueError(f"block types must be glance/focus (gb/fb), got {self.block_types}")
        if self.select_by not in ("magnitude", "score"):
            raise ValueError(f"select_by must be magnitude or score, got {self.select_by!r}")
        check_center(self.center, self.normalize)
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {self.padding!r}")
        if any(d % self.dim_head for d in self.dims):
            raise ValueError(f"every width in {self.dims} must be a multiple of dim_head={self.dim_head}")
        if self.lstm is not None:
            self.lstm = lstm_config(self.lstm).to_dict()

    def to_dict(self) -> dict:
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if out["lstm"] is None:                 # plain MGFN: the same model_config as before the front end existed
            del out["lstm"]
        if out["center"] == "none":             # likewise for a model that takes its features as they come
            del out["center"], out["center_scale"]
        if out["padding"] == "zeros":
            del out["padding"]
        if out["normalize"] == "none":
            del out["normalize"]
        if not out["input_dropout"]:
            del out["input_dropout"]
        return out


# The reference runs channels-first 1-D convolutions on `[N, C, T]`. We keep its parameters (Conv1d weights,
# so checkpoints map one to one) but compute on `[N, T, C]`: every 1x1 conv is one GEMM, a k-tap temporal
# conv is one GEMM on k stacked kernels plus shifted adds. Same maths; on CPU the backward pass is ~2x faster
# than mkldnn's conv1d backward, and no layout copies are needed between blocks.

def pointwise(conv: nn.Conv1d, x):
    """A 1x1 Conv1d applied to `[N, T, C_in]` -> `[N, T, C_out]`."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


def edge_index(t: int, before: int, after: int, device=None):
    """Time indices `[-before, t + after)` clamped to `[0, t)`: the end clips repeated (edge padding)."""
    return torch.arange(-before, t + after, device=device).clamp(0, t - 1)


def temporal(conv: nn.Conv1d, x, padding: str = "zeros"):
    """A k-tap Conv1d (padding k//2, zeros or the end clips repeated) applied to `[N, T, C_in]` -> `[N, T, C_out]`."""
    k, pad, out = conv.kernel_size[0], conv.padding[0], conv.out_channels
    n, t, _ = x.shape
    z = F.linear(x, conv.weight.permute(2, 0, 1).reshape(k * out, -1)).view(n, t, k, out)   # tap j of x[t]
    if padding == "edge":                      # y[t] = sum_j z[clamp(t + j - pad), j]
        taps = torch.arange(k, device=x.device)
        rows = (torch.arange(t, device=x.device)[:, None] + taps - pad).clamp(0, t - 1)      # [T, k]
        y = z[:, rows, taps].sum(2)                                                           # [N, T, C_out]
        return y + conv.bias if conv.bias is not None else y
    y = z[:, :, pad]
    for j in range(k):                         # y[t] = sum_j w_j x[t + j - pad] = sum_j z[t + j - pad, j]
        shift = j - pad
        if shift < 0:
            y = y + F.pad(z[:, : t + shift, j], (0, 0, -shift, 0))
        elif shift > 0:
            y = y + F.pad(z[:, shift:, j], (0, 0, 0, shift))
    return y + conv.bias if conv.bias is not None else y


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels; eps is added to the standard deviation, as in the reference."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1))     # reference shapes, for checkpoint compatibility
        self.b = nn.Parameter(torch.zeros(1, dim, 1))

    def forward(self, x):                                # [N, T, C]
        var, mean = torch.var_mean(x, dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / (var.sqrt() + self.eps) * self.g.view(-1) + self.b.view(-1)


class FeedForward(nn.Module):
    """Channel LayerNorm -> 1x1 conv to ff_mult*d -> GELU -> 1x1 conv back to d."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.expand = nn.Conv1d(dim, dim * mult, 1)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Conv1d(dim * mult, dim, 1)

    def forward(self, x):                                # [N, T, d]
        return pointwise(self.project, self.dropout(F.gelu(pointwise(self.expand, self.norm(x)))))


class GlanceBlock(nn.Module):
    """Global self-attention over time (the video-level 'glance'), heads of width dim_head."""

    def __init__(self, dim: int, heads: int, dim_head: int = 64):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = ChannelLayerNorm(dim)
        self.to_qkv = nn.Conv1d(dim, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Conv1d(heads * dim_head, dim, 1)

    def forward(self, x):                                           # [N, T, d]
        n, t, _ = x.shape
        qkv = pointwise(self.to_qkv, self.norm(x))                  # [N, T, 3*h*dh]
        q, k, v = qkv.view(n, t, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4).unbind(0)  # [N, h, T, dh]
        out = F.scaled_dot_product_attention(q, k, v)               # softmax(q k^T / sqrt(dh)) v
        return pointwise(self.to_out, out.transpose(1, 2).reshape(n, t, -1))


class FocusBlock(nn.Module):
    """Local aggregation: one learned 5-tap temporal kernel per head (the snippet-level 'focus').

    The reference splits channels as (slot, head) with the head index fastest and runs a grouped conv
    per slot; that equals one depthwise conv whose kernel for channel j is the kernel of head j mod h.
    """

    def __init__(self, dim: int, heads: int, dim_head: int = 64, kernel: int = 5, padding: str = "zeros"):
        super().__init__()
        self.heads, self.dim_head, self.padding = heads, dim_head, padding
        self.norm = nn.BatchNorm1d(dim)
        self.to_v = nn.Conv1d(dim, heads * dim_head, 1, bias=False)
        self.rel_pos = nn.Conv1d(heads, heads, kernel, padding=kernel // 2, groups=heads)
        self.to_out = nn.Conv1d(heads * dim_head, dim, 1)

    def forward(self, x):                                           # [N, T, d]
        n, t, d = x.shape
        v = pointwise(self.to_v, self.norm(x.reshape(n * t, d)).view(n, t, d))   # [N, T, h*dh]
        weight = self.rel_pos.weight[:, 0].repeat(self.dim_head, 1)  # [dh*h, k]: channel j -> head j % h
        k, pad = weight.shape[1], self.rel_pos.padding[0]
        if self.padding == "edge":
            padded = v[:, edge_index(t, pad, k - 1 - pad, v.device)]  # [N, T + k - 1, h*dh]
        else:
            padded = F.pad(v, (0, 0, pad, k - 1 - pad))
        out = self.rel_pos.bias.repeat(self.dim_head) + sum(padded[:, j:j + t] * weight[:, j] for j in range(k))
        return pointwise(self.to_out, out)


class MGFNLayer(nn.Module):
    """Three residual steps: full temporal conv, the stage's block, feed-forward."""

    def __init__(self, dim: int, block: nn.Module, ff_mult: int, ff_dropout: float, padding: str = "zeros"):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        self.block = block
        self.ff = FeedForward(dim, ff_mult, ff_dropout)

    def forward(self, x):                                           # [N, T, d]
        x = temporal(self.conv, x, self.padding) + x
        x = self.block(x) + x
        return self.ff(x) + x


class Transition(nn.Module):
    """Between stages: channel LayerNorm then a 1x1 conv to the next width."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = ChannelLayerNorm(dim_in)
        self.proj = nn.Conv1d(dim_in, dim_out, 1)

    def forward(self, x):                                           # [N, T, d_in] -> [N, T, d_out]
        return pointwise(self.proj, self.norm(x))


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, block_type: str, next_dim: int | None, cfg: MGFNConfig):
        super().__init__()
        heads = dim // cfg.dim_head

        def block():
            if block_type == "glance":
                return GlanceBlock(dim, heads, cfg.dim_head)
            return FocusBlock(dim, heads, cfg.dim_head, cfg.focus_kernel, cfg.padding)

        self.layers = nn.ModuleList(MGFNLayer(dim, block(), cfg.ff_mult, cfg.ff_dropout, cfg.padding)
                                    for _ in range(depth))
        self.transition = Transition(dim, next_dim) if next_dim is not None else None

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.transition(x) if self.transition is not None else x


class FeatureAmplification(nn.Module):
    """FAM: features and their magnitude embedded by two temporal convs, summed with the magnitude scaled."""

    def __init__(self, feature_size: int, dim: int, mag_ratio: float, padding: str = "zeros"):
        super().__init__()
        self.feature_size, self.mag_ratio, self.padding = feature_size, mag_ratio, padding
        self.to_tokens = nn.Conv1d(feature_size, dim, 3, padding=1)
        self.to_mag = nn.Conv1d(1, dim, 3, padding=1)

    def forward(self, x):                                           # [N, T, D+1] -> [N, T, d0]
        features, magnitude = x[..., : self.feature_size], x[..., self.feature_size:]
        return (temporal(self.to_tokens, features, self.padding)
                + self.mag_ratio * temporal(self.to_mag, magnitude, self.padding))


class Head(nn.Module):
    """LayerNorm over the last width, then a linear score and a sigmoid."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 1)

    def forward(self, x):                                           # [N, T, d]
        features = self.norm(x)
        return features, torch.sigmoid(self.fc(features))           # [N, T, d], [N, T, 1]


class MGFNOutput(NamedTuple):
    score_abnormal: torch.Tensor   # [B, 1] mean score of the top-k snippets of each abnormal video
    score_normal: torch.Tensor     # [B, 1]
    abn_feat: torch.Tensor         # [crops*B, k, d] selected features, crop-major rows
    nor_feat: torch.Tensor         # [crops*B, k, d]
    scores: torch.Tensor           # [2B, T, 1] crop-averaged snippet scores (the prediction at test time)
    magnitudes: torch.Tensor       # [2B, T] crop-averaged feature magnitudes
    crop_scores: torch.Tensor      # [2B*crops, T] per-crop snippet scores


class MGFN(nn.Module):
    """The whole network. `forward(video [2B, crops, T, D+1])`: first B videos normal, last B abnormal."""

    def __init__(self, config: MGFNConfig | None = None, **overrides):
        super().__init__()
        cfg = config or MGFNConfig(**overrides)
        self.config = cfg
        clip_size = input_size(cfg.feature_size, cfg.center)         # what a clip is after centring (mgfn.features)
        self.frontend = TemporalEncoder(clip_size, lstm_config(cfg.lstm), cfg.feature_size) if cfg.lstm else None
        fam_in = self.frontend.out_size if self.frontend is not None else clip_size
        self.fam = FeatureAmplification(fam_in, cfg.dims[0], cfg.mag_ratio, cfg.padding)
        next_dims = list(cfg.dims[1:]) + [None]
        self.stages = nn.ModuleList(
            Stage(d, depth, t, nd, cfg) for d, depth, t, nd in zip(cfg.dims, cfg.depths, cfg.block_types, next_dims)
        )
        self.head = Head(cfg.dims[-1])
        self.selection_dropout = nn.Dropout(cfg.dropout_rate)
        self.input_dropout = nn.Dropout(cfg.input_dropout)

    def forward_features(self, video, prepared: bool = False):
        """`[V, crops, T, D+1]` -> (features `[V*crops, T, d]`, scores `[V*crops, T, 1]`).

        With the LSTM front end `video` may also be a `mgfn.lstm.ClipSequences` training batch (pooled after the LSTM).
        `prepared`: `video` already went through `prepare_inputs` (training prepares its fixed videos once).
        """
        x = self.encode_clips(video, prepared)                     # [V*crops, T, C+1]
        if self.config.input_dropout and self.training:
            x = torch.cat([self.input_dropout(x[..., :-1]), x[..., -1:]], dim=-1)
        x = self.fam(x)                                            # [V*crops, T, d0]
        for stage in self.stages:
            x = stage(x)                                           # [V*crops, T, d_last]
        return self.head(x)

    def prepare_inputs(self, video):
        """The per-video input transforms (mgfn.features): `[V, crops, T, D+1]` -> `[V, crops, T, C+1]`, the clips
        L2-normalised and centred as configured (C = 2D with `center: context`); a ClipSequences batch likewise."""
        c = video.shape[-1]
        if c != self.config.feature_size + 1:
            raise ValueError(f"expected {self.config.feature_size + 1} channels (features + magnitude), got {c}")
        if self.config.normalize == "l2":
            video = normalize_clips(video)
        if self.config.center != "none":
            video = center_clips(video, self.config.center_scale, context=self.config.center == "context")
        return video

    def encode_clips(self, video, prepared: bool = False):
        """What feature amplification sees: `[V, crops, T, D+1]` -> `[V*crops, T, C+1]`: the clips normalised and
        centred as configured (mgfn.features; C = 2D with `center: context`) and, with the LSTM front end, its
        outputs (C = its width) beside the magnitude."""
        if not prepared:
            video = self.prepare_inputs(video)
        v, crops, t, _ = video.shape
        if self.frontend is not None:
            return self.frontend(video)                            # LSTM outputs + the (centred) I3D magnitude
        return video.reshape(v * crops, t, video.shape[-1])

    def predict(self, video, prepared: bool = False):
        """Crop-averaged snippet scores `[V, T]` without top-k selection (scoring any number of videos)."""
        _, scores = self.forward_features(video, prepared)
        return scores.view(video.shape[0], video.shape[1], -1).mean(1)

    def forward(self, video, n_normal: int | None = None, prepared: bool = False) -> MGFNOutput:
        v, crops, t, _ = video.shape
        features, crop_scores = self.forward_features(video, prepared)
        return select_topk(features, crop_scores, v, crops, self.config.k, self.selection_dropout, n_normal,
                           by_score=self.config.select_by == "score")


def select_topk(features, crop_scores, videos: int, crops: int, k: int, dropout: nn.Module,
                n_normal: int | None = None, by_score: bool = False) -> MGFNOutput:
    """Magnitude-based top-k snippet selection (MSNSD in the reference).

    features `[V*crops, T, d]`, crop_scores `[V*crops, T, 1]`. With one video (test) the same video
    serves as both halves, as in the reference.
    """
    _, t, d = features.shape
    k = min(k, t)
    scores = crop_scores.view(videos, crops, t).mean(1).unsqueeze(2)          # [V, T, 1]
    magnitudes = features.norm(p=2, dim=2).view(videos, crops, t).mean(1)     # [V, T]
    per_video = features.view(videos, crops, t, d)
    if videos == 1:
        halves = {"normal": slice(0, 1), "abnormal": slice(0, 1)}
    else:
        n = videos // 2 if n_normal is None else n_normal
        halves = {"normal": slice(0, n), "abnormal": slice(n, videos)}

    def select(half: slice):
        mag = scores[half, :, 0].detach() if by_score else magnitudes[half]
        mask = dropout(torch.ones_like(mag))
        idx = torch.topk(mag * mask, k, dim=1).indices                        # [B, k]
        b = idx.shape[0]
        feats = per_video[half].permute(1, 0, 2, 3)                            # [crops, B, T, d]
        gathered = torch.gather(feats, 2, idx.view(1, b, k, 1).expand(crops, b, k, d))
        video_score = torch.gather(scores[half], 1, idx.unsqueeze(2)).mean(1)  # [B, 1]
        return video_score, gathered.reshape(crops * b, k, d)                  # crop-major rows

    # The reference draws the abnormal mask first, then the normal one.
    score_abnormal, abn_feat = select(halves["abnormal"])
    score_normal, nor_feat = select(halves["normal"])
    return MGFNOutput(score_abnormal, score_normal, abn_feat, nor_feat, scores, magnitudes, crop_scores.squeeze(2))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
