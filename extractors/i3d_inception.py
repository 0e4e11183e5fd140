"""Inception-v1 I3D (Carreira & Zisserman), as in piergiaj/pytorch-i3d: TensorFlow "SAME" padding from the actual
input size, BatchNorm eps 1e-3. State-dict names are piergiaj's (the TF end-point names)."""
from __future__ import annotations

import re

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

FEATURE_DIM = 1024


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one axis for an input of `size`; the smaller half goes first."""
    if size % stride == 0:
        pad = max(kernel - stride, 0)
    else:
        pad = max(kernel - size % stride, 0)
    return pad // 2, pad - pad // 2


def _as_f_pad(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    # F.pad wants the last axis first: (w_before, w_after, h_before, h_after, t_before, t_after)
    return tuple(p for pair in reversed(pads) for p in pair)


@torch.fx.wrap  # a leaf when traced: the padding depends on the actual input size
def pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """Zero-pad [B, C, T, H, W] so that a (kernel, stride) conv or pool gives TF "SAME" output, ceil(size / stride)."""
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]
    if not any(p for pair in pads for p in pair):
        return x
    return F.pad(x, _as_f_pad(pads))  # [B, C, T + pad_t, H + pad_h, W + pad_w]


class Unit3D(nn.Module):
    """Conv3d (SAME padding) -> BatchNorm3d -> ReLU; the logits unit has a bias and neither BN nor ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 batch_norm: bool = True, activation: bool = True, bias: bool = False, bn_eps: float = 1e-3):
        super().__init__()
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=0, bias=bias)
        if batch_norm:
            self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=0.01)
        else:
            self.bn = None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.conv3d.kernel_size, self.conv3d.stride))
        if self.bn is not None:
            x = self.bn(x)
        if self.activation:
            x = F.relu(x, inplace=True)
        return x


class MaxPool3dSame(nn.MaxPool3d):
    """Max-pool with TF "SAME" padding, padding with zeros as piergiaj does (its inputs are ReLU outputs anyway)."""

    def __init__(self, kernel, stride):
        super().__init__(kernel_size=kernel, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size, self.stride)
        # torch's CPU max_pool3d is 10-25x slower on NCDHW than on channels_last input; the numbers are the same
        return super().forward(x.contiguous(memory_format=torch.channels_last_3d))


class InceptionModule(nn.Module):
    """Four branches (1x1; 1x1->3x3x3; 1x1->3x3x3; max-pool->1x1) concatenated on channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int], bn_eps: float = 1e-3):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, w1a, bn_eps=bn_eps)
        self.b1b = Unit3D(w1a, w1b, kernel=(3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, w2a, bn_eps=bn_eps)
        self.b2b = Unit3D(w2a, w2b, kernel=(3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b, bn_eps=bn_eps)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D; `features` is piergiaj's `extract_features` averaged over time -> [B, 1024]."""

    feature_dim = FEATURE_DIM
    # [B,3,T,224,224] -> Conv3d_1a [B,64,T/2,112,112] -> MaxPool3d_2a [B,64,T/2,56,56] -> Conv3d_2c [B,192,T/2,56,56]
    # -> MaxPool3d_3a [B,192,T/2,28,28] -> Mixed_3c [B,480,T/2,28,28] -> MaxPool3d_4a [B,480,T/4,14,14]
    # -> Mixed_4f [B,832,T/4,14,14] -> MaxPool3d_5a [B,832,T/8,7,7] -> Mixed_5c [B,1024,T/8,7,7]
    END_POINTS = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                  "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
                  "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")

    def __init__(self, num_classes: int = 400, bn_eps: float = 1e-3, dropout: float = 0.5):
        super().__init__()
        e = bn_eps
        self.Conv3d_1a_7x7 = Unit3D(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2), bn_eps=e)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64, bn_eps=e)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3), bn_eps=e)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32), e)
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64), e)
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64), e)
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64), e)
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64), e)
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64), e)
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128), e)
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128), e)
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128), e)
        self.avg_pool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=(1, 1, 1))
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, activation=False, bias=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips scaled to [-1, 1], [B, 3, T, H, W] -> Mixed_5c map [B, 1024, T/8, H/32, W/32]."""
        for name in self.END_POINTS:
            x = getattr(self, name)(x)
        return x

    def pool_features(self, fmap: torch.Tensor) -> torch.Tensor:
        """AvgPool3d((2,7,7), stride 1) [B, 1024, T', 1, 1], then the mean over (T', 1, 1) -> [B, 1024]."""
        return self.avg_pool(fmap).mean(dim=(2, 3, 4))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Clips [B, 3, T, H, W] -> clip features [B, 1024] (the 7x7 pool needs T >= 9 and H, W >= 193)."""
        return self.pool_features(self.forward_features(x))

    def forward_head(self, fmap: torch.Tensor, per_time: bool = False) -> torch.Tensor:
        """Mixed_5c map -> logits [B, num_classes], or piergiaj's per-time logits [B, num_classes, T'] if per_time."""
        x = self.logits(self.dropout(self.avg_pool(fmap)))  # [B, classes, T', 1, 1]
        x = x.flatten(2)  # [B, classes, T']
        return x if per_time else x.mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def fold_batchnorm(self) -> "InceptionI3d":
        """Inference only: fold every BatchNorm into the conv before it (one pass over memory less per conv)."""
        self.eval()
        for module in list(self.modules()):
            if isinstance(module, Unit3D) and module.bn is not None:
                module.conv3d = fuse_conv_bn_eval(module.conv3d, module.bn)
                module.bn = None
        return self


# ---- state-dict key names -------------------------------------------------------------------------------------
# Ours are piergiaj's. v-iashin/video_features (hassony2 port) lower-cases the end points and renames the units.

_VF_BRANCH = {"branch_0": "b0", "branch_1.0": "b1a", "branch_1.1": "b1b", "branch_2.0": "b2a", "branch_2.1": "b2b",
              "branch_3.1": "b3b"}
_PJ_BRANCH = {v: k for k, v in _VF_BRANCH.items()}
_VF_RE = re.compile(r"^(conv3d_\w+|mixed_\w+?)\.(?:(branch_\d(?:\.\d)?)\.)?(conv3d|batch3d)\.(.+)$")
_PJ_RE = re.compile(r"^(Conv3d_\w+|Mixed_\w+?)\.(?:(b\d\w?)\.)?(conv3d|bn)\.(.+)$")


def video_features_key_to_ours(key: str) -> str:
    """v-iashin/video_features I3D key (`mixed_3b.branch_1.0.batch3d.weight`) -> ours (`Mixed_3b.b1a.bn.weight`)."""
    if key.startswith("conv3d_0c_1x1.conv3d."):
        return "logits.conv3d." + key.split(".")[-1]
    m = _VF_RE.match(key)
    if not m:
        raise KeyError(f"no rename rule for video_features key {key!r}")
    end_point, branch, unit, rest = m.groups()
    end_point = end_point[0].upper() + end_point[1:] if end_point.startswith("mixed") else "Conv3d" + end_point[6:]
    unit = "bn" if unit == "batch3d" else unit
    return ".".join(p for p in (end_point, _VF_BRANCH[branch] if branch else None, unit, rest) if p)


def ours_key_to_video_features(key: str) -> str:
    """Inverse of `video_features_key_to_ours`."""
    if key.startswith("logits.conv3d."):
        return "conv3d_0c_1x1.conv3d." + key.split(".")[-1]
    m = _PJ_RE.match(key)
    if not m:
        raise KeyError(f"no rename rule for state-dict key {key!r}")
    end_point, branch, unit, rest = m.groups()
    unit = "batch3d" if unit == "bn" else unit
    return ".".join(p for p in (end_point.lower(), _PJ_BRANCH[branch] if branch else None, unit, rest) if p)


def piergiaj_key_to_ours(key: str) -> str:
    """piergiaj `InceptionI3d` key -> ours (the same names)."""
    return key


def ours_key_to_piergiaj(key: str) -> str:
    """Inverse of `piergiaj_key_to_ours`."""
    return key


def is_piergiaj_state_dict(state_dict: dict) -> bool:
    return "Conv3d_1a_7x7.conv3d.weight" in state_dict and "Mixed_5c.b3b.conv3d.weight" in state_dict


def is_video_features_state_dict(state_dict: dict) -> bool:
    return "conv3d_1a_7x7.conv3d.weight" in state_dict and "mixed_5c.branch_3.1.conv3d.weight" in state_dict
