"""The feature extractors by name: `load_model(name, weights)` builds the architecture, loads weights from the
registry, a local file or "random", and records where they came from."""
from __future__ import annotations

import os

import torch
from torch import nn

from extractors import i3d_inception, i3d_resnet
from extractors.errors import InputError
from extractors.weights import ARCH_FAMILY, read_weights, resolve_weights

ARCHITECTURES = {
    "i3d_r50_caffe2": i3d_resnet.i3d_r50_caffe2,
    "i3d_r50_ptv": i3d_resnet.i3d_r50_ptv,
    "i3d_inception": i3d_inception.InceptionI3d,
}

EXTRACTORS: dict[str, dict] = {
    "i3d_r50_rtfm": {"arch": "i3d_r50_caffe2", "preset": "rtfm", "feature_dim": i3d_resnet.FEATURE_DIM,
                     "default_weights": "i3d_r50_kinetics_caffe2"},
    "i3d_r50_ptv": {"arch": "i3d_r50_ptv", "preset": "kinetics", "feature_dim": i3d_resnet.FEATURE_DIM,
                    "default_weights": "i3d_r50_kinetics_ptv"},
    "i3d_inception": {"arch": "i3d_inception", "preset": "inception", "feature_dim": i3d_inception.FEATURE_DIM,
                      "default_weights": "i3d_inception_rgb_imagenet"},
}

# state-dict key of the classifier weight, whose first dimension is the number of classes
_CLASSIFIER_KEY = {"i3d_r50_caffe2": "blocks.6.proj.weight", "i3d_r50_ptv": "blocks.6.proj.weight",
                   "i3d_inception": "logits.conv3d.weight"}


def load_model(name: str, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               channels_last: bool = True, fold_batchnorm: bool = True) -> nn.Module:
    """Extractor `name` in eval mode on `device`, with `.name`, `.preset`, `.feature_dim` and `.provenance`.

    `weights`: a registry name (default: the extractor's), a local checkpoint in any supported format, or "random".
    The model is for inference: BatchNorms folded into the convs and channels_last_3d weights unless asked otherwise.
    """
    if name not in EXTRACTORS:
        raise InputError(f"unknown extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")
    spec = EXTRACTORS[name]
    arch = spec["arch"]
    resolved = resolve_weights(weights if weights is not None else spec["default_weights"], arch)

    if resolved.random:
        model, loaded = ARCHITECTURES[arch](), None
    else:
        loaded = read_weights(resolved.path, resolved.entry.format if resolved.entry else None)
        if loaded.family != ARCH_FAMILY[arch]:
            raise InputError(f"{resolved.path} holds {loaded.family} weights ({loaded.format}); "
                             f"extractor {name!r} needs {ARCH_FAMILY[arch]} weights")
        classifier = loaded.state_dict.get(_CLASSIFIER_KEY[arch])  # fine-tuned heads keep their class count
        num_classes = classifier.shape[0] if classifier is not None else 400
        model = ARCHITECTURES[arch](num_classes=num_classes, **loaded.model_kwargs)
        _load_state_dict(model, loaded.state_dict, resolved.path)

    model.eval()
    if fold_batchnorm:
        model.fold_batchnorm()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    model.name = name
    model.preset = spec["preset"]
    model.provenance = {
        "extractor": name,
        "arch": arch,
        "weights": str(resolved.spec),
        "weights_name": resolved.entry.name if resolved.entry else None,
        "weights_path": str(resolved.path) if resolved.path else None,
        "weights_format": loaded.format if loaded else None,
        "sha256": resolved.sha256 if not resolved.random else "random",
        "random": resolved.random,
        "batchnorm_folded": fold_batchnorm,
        **(loaded.model_kwargs if loaded else {}),
    }
    return model


def _load_state_dict(model: nn.Module, state_dict: dict, path) -> None:
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
        raise InputError(f"{path}: weights do not fit the model: {detail}") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise InputError(f"{path}: weights do not fit the model: {len(missing)} missing keys {missing[:3]}, "
                         f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:3]}")
