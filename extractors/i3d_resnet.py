"""I3D ResNet-50 in two flavours built from pytorchvideo's builders: the Caffe2 baseline and pytorchvideo's i3d_r50.

Both share the bottleneck pattern and the state-dict layout (pytorchvideo's `blocks.*` names); they differ in the
stem and the head. Weight files are read elsewhere (`extractors.weights`); this module only renames keys.
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

with warnings.catch_warnings():  # pytorchvideo 0.1.5 calls the deprecated torch.jit.script at import time
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from pytorchvideo.models.resnet import create_resnet
    from pytorchvideo.models.stem import create_res_basic_stem

FEATURE_DIM = 2048

# (conv, norm) attribute pairs in pytorchvideo's stem, bottleneck and residual blocks
_CONV_NORM_PAIRS = (("conv", "norm"), ("conv_a", "norm_a"), ("conv_b", "norm_b"), ("conv_c", "norm_c"),
                    ("branch1_conv", "branch1_norm"))

# Temporal kernel of each bottleneck's first 1x1 conv, repeated to the stage depth (3, 4, 6, 3):
# res2 3,3,3; res3 3,1,3,1; res4 3,1,3,1,3,1; res5 1,3,1.
_CONV_A_KERNELS = (
    (3, 1, 1),
    [(3, 1, 1), (1, 1, 1)],
    [(3, 1, 1), (1, 1, 1)],
    [(1, 1, 1), (3, 1, 1)],
)


def _unpadded_pool_stem(**kwargs) -> nn.Module:
    """pytorchvideo's basic stem with an unpadded max-pool (create_resnet always pads the pool by kernel // 2)."""
    kwargs["pool_padding"] = (0, 0, 0)
    return create_res_basic_stem(**kwargs)


class TemporalMaxPool(nn.Module):
    """MaxPool3d((2,1,1), stride (2,1,1)) after res2, as the maximum of even and odd frames: the same numbers,
    3-4x faster on CPU than max_pool3d (which also computes argmax indices)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2] // 2 * 2
        return torch.maximum(x[:, :, 0:t:2], x[:, :, 1:t:2])  # [B, C, T/2, H, W]


class I3DResNet(nn.Module):
    """I3D ResNet-50: `blocks` 0 stem, 1 res2, 2 temporal max-pool, 3-5 res3-res5, 6 classifier head."""

    feature_dim = FEATURE_DIM

    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips [B, 3, T, H, W] -> last-stage map [B, 2048, T', H', W'] (T' = T/8 Caffe2, T/2 ptv)."""
        for block in self.blocks[:-1]:
            x = block(x)
        return x

    def pool_features(self, fmap: torch.Tensor) -> torch.Tensor:
        """Global average of the last-stage map -> [B, 2048] (the RTFM clip feature)."""
        return fmap.mean(dim=(2, 3, 4))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised clips [B, 3, T, H, W] -> clip features [B, 2048]."""
        return self.pool_features(self.forward_features(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        """Last-stage map -> class logits [B, num_classes] (no softmax)."""
        return self.blocks[-1](fmap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def fold_batchnorm(self) -> "I3DResNet":
        """Inference only: fold every BatchNorm into the conv before it (one pass over memory less per conv)."""
        self.eval()
        for module in list(self.modules()):
            for conv_name, norm_name in _CONV_NORM_PAIRS:
                conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
                if isinstance(conv, nn.Conv3d) and isinstance(norm, nn.BatchNorm3d):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                    setattr(module, norm_name, None)  # pytorchvideo blocks skip a norm that is None
        return self


def _build(stem_conv_stride, stem_pool_kernel_size, stem_pool_stride, stem, head_pool, head_pool_kernel_size,
           num_classes: int, dropout: float) -> I3DResNet:
    net = create_resnet(
        input_channel=3,
        model_depth=50,
        model_num_class=num_classes,
        dropout_rate=dropout,
        activation=functools.partial(nn.ReLU, inplace=True),
        stem_dim_out=64,
        stem_conv_kernel_size=(5, 7, 7),
        stem_conv_stride=stem_conv_stride,
        stem_pool=nn.MaxPool3d,
        stem_pool_kernel_size=stem_pool_kernel_size,
        stem_pool_stride=stem_pool_stride,
        stem=stem,
        stage1_pool=nn.MaxPool3d,
        stage1_pool_kernel_size=(2, 1, 1),
        stage_conv_a_kernel_size=_CONV_A_KERNELS,
        head_pool=head_pool,
        head_pool_kernel_size=head_pool_kernel_size,
        head_output_size=(1, 1, 1),
        head_output_with_global_average=True,
    )
    net.blocks[2] = TemporalMaxPool()  # the parameter-free stage-1 pool; state-dict keys are unchanged
    return I3DResNet(net.blocks)


def i3d_r50_caffe2(num_classes: int = 400, dropout: float = 0.5) -> I3DResNet:
    """Caffe2 video-nonlocal-net I3D-R50 baseline (Tushar-N port): the network behind the RTFM/MGFN features.

    Stem conv 5x7x7 stride (2,2,2) pad (2,3,3), max-pool (2,3,3) stride (2,2,2) unpadded; head = global average -> fc.
    """
    # [B,3,16,224,224] -> conv [B,64,8,112,112] -> pool [B,64,4,55,55] -> res2 [B,256,4,55,55]
    # -> pool [B,256,2,55,55] -> res3 [B,512,2,28,28] -> res4 [B,1024,2,14,14] -> res5 [B,2048,2,7,7]
    return _build(stem_conv_stride=(2, 2, 2), stem_pool_kernel_size=(2, 3, 3), stem_pool_stride=(2, 2, 2),
                  stem=_unpadded_pool_stem, head_pool=nn.AdaptiveAvgPool3d, head_pool_kernel_size=(1, 1, 1),
                  num_classes=num_classes, dropout=dropout)


def i3d_r50_ptv(num_classes: int = 400, dropout: float = 0.5) -> I3DResNet:
    """pytorchvideo `i3d_r50` (I3D_8x8_R50.pyth): stem stride (1,2,2), pool (1,3,3) pad (0,1,1).

    Head = AvgPool3d(4,7,7) stride 1 -> fc per position -> mean, exactly as pytorchvideo computes its logits.
    """
    # [B,3,16,224,224] -> stem [B,64,16,56,56] -> res2 [B,256,16,56,56] -> pool [B,256,8,56,56]
    # -> res3 [B,512,8,28,28] -> res4 [B,1024,8,14,14] -> res5 [B,2048,8,7,7]
    return _build(stem_conv_stride=(1, 2, 2), stem_pool_kernel_size=(1, 3, 3), stem_pool_stride=(1, 2, 2),
                  stem=create_res_basic_stem, head_pool=nn.AvgPool3d, head_pool_kernel_size=(4, 7, 7),
                  num_classes=num_classes, dropout=dropout)


# ---- state-dict key names -------------------------------------------------------------------------------------
# Ours are pytorchvideo's names, so pytorchvideo checkpoints load as they are.

def _module_pairs() -> list[tuple[str, str]]:
    """(Tushar-N module name, our module name) for every module of the R50 that holds weights."""
    pairs = [("conv1", "blocks.0.conv"), ("bn1", "blocks.0.norm"), ("fc", "blocks.6.proj")]
    for stage, block, depth in (("1", "1", 3), ("2", "3", 4), ("3", "4", 6), ("4", "5", 3)):
        for i in range(depth):
            ours = f"blocks.{block}.res_blocks.{i}"
            for n, abc in (("1", "a"), ("2", "b"), ("3", "c")):
                pairs += [(f"layer{stage}.{i}.conv{n}", f"{ours}.branch2.conv_{abc}"),
                          (f"layer{stage}.{i}.bn{n}", f"{ours}.branch2.norm_{abc}")]
            pairs += [(f"layer{stage}.{i}.downsample.0", f"{ours}.branch1_conv"),
                      (f"layer{stage}.{i}.downsample.1", f"{ours}.branch1_norm")]
    return pairs


_TUSHAR_TO_OURS = dict(_module_pairs())
_OURS_TO_TUSHAR = {ours: tushar for tushar, ours in _TUSHAR_TO_OURS.items()}


def _rename(key: str, table: dict[str, str]) -> str:
    module, _, leaf = key.rpartition(".")                 # `layer1.0.conv1` + `weight`
    if module not in table:
        raise KeyError(f"no rename rule for state-dict key {key!r}")
    return f"{table[module]}.{leaf}"


def tushar_key_to_ours(key: str) -> str:
    """Tushar-N `I3Res50` key (`layer1.0.conv1.weight`) -> ours (`blocks.1.res_blocks.0.branch2.conv_a.weight`)."""
    return _rename(key, _TUSHAR_TO_OURS)


def ours_key_to_tushar(key: str) -> str:
    """Inverse of `tushar_key_to_ours`."""
    return _rename(key, _OURS_TO_TUSHAR)


def ptv_key_to_ours(key: str) -> str:
    """pytorchvideo `i3d_r50` key -> ours (the same names; kept so callers need not know that)."""
    return key


def ours_key_to_ptv(key: str) -> str:
    """Inverse of `ptv_key_to_ours`."""
    return key


def is_tushar_state_dict(state_dict: dict) -> bool:
    return "conv1.weight" in state_dict and "layer4.2.conv3.weight" in state_dict


def is_ptv_state_dict(state_dict: dict) -> bool:
    return "blocks.0.conv.weight" in state_dict and "blocks.5.res_blocks.2.branch2.conv_c.weight" in state_dict
