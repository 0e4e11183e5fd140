"""Checkpoints: our format (a plain dict) and the official MGFN state dict (`mgfn_ucf.pkl`).

Ours: {"format": "mgfn-vad/1", "model": state_dict, "model_config": {...}, "optimizer": ..., "epoch": int,
"train_config": {...}, "provenance": {...}, ...}. Everything loads with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from mgfn.atomic import atomic_open
from mgfn.errors import InputError
from mgfn.model import MGFN, MGFNConfig

FORMAT = "mgfn-vad/1"

# (reference key prefix, our key prefix); {s} is a stage index, {l} a layer index. Keys load after a leading
# `module.` is stripped.
_KEY_PREFIXES = [
    ("to_tokens.", "fam.to_tokens."),
    ("to_mag.", "fam.to_mag."),
    ("stages.{s}.0.layers.{l}.0.", "stages.{s}.layers.{l}.conv."),
    ("stages.{s}.0.layers.{l}.1.", "stages.{s}.layers.{l}.block."),
    ("stages.{s}.0.layers.{l}.2.0.", "stages.{s}.layers.{l}.ff.norm."),
    ("stages.{s}.0.layers.{l}.2.1.", "stages.{s}.layers.{l}.ff.expand."),
    ("stages.{s}.0.layers.{l}.2.4.", "stages.{s}.layers.{l}.ff.project."),
    ("stages.{s}.1.0.", "stages.{s}.transition.norm."),
    ("stages.{s}.1.1.", "stages.{s}.transition.proj."),
    ("to_logits.0.", "head.norm."),
    ("fc.", "head.fc."),
]


def _pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{s\}", r"(?P<s>\d+)").replace(r"\{l\}", r"(?P<l>\d+)"))


def _rename(state: dict, to_ours: bool) -> dict:
    rules = [(_pattern(ref if to_ours else ours), ours if to_ours else ref) for ref, ours in _KEY_PREFIXES]
    out = {}
    for key, value in state.items():
        name = key[len("module."):] if to_ours and key.startswith("module.") else key
        for pattern, target in rules:
            m = pattern.match(name)
            if m:
                out[target.format(**m.groupdict()) + name[m.end():]] = value
                break
        else:
            raise InputError(f"unexpected key {key!r} in MGFN state dict")
    return out


def reference_to_ours(state: dict) -> dict:
    """Rename official MGFN state-dict keys (optionally `module.`-prefixed) to ours."""
    return _rename(state, to_ours=True)


def ours_to_reference(state: dict) -> dict:
    """Our keys to the reference's, so our weights load into the original code."""
    if any(key.startswith("frontend.") for key in state):
        raise InputError("an I3D-LSTM checkpoint cannot be exported to the reference format: "
                         "the reference MGFN has no LSTM front end")
    return _rename(state, to_ours=False)


def infer_config(state: dict, **overrides) -> MGFNConfig:
    """Recover the architecture from our state-dict keys and shapes."""
    try:
        feature_size = state["fam.to_tokens.weight"].shape[1]
        n_stages = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("stages."))
        dims, depths, types = [], [], []
        for s in range(n_stages):
            layers = {int(k.split(".")[3]) for k in state if k.startswith(f"stages.{s}.layers.")}
            dims.append(state[f"stages.{s}.layers.0.conv.weight"].shape[0])
            depths.append(len(layers))
            types.append("glance" if f"stages.{s}.layers.0.block.to_qkv.weight" in state else "focus")
        ff_mult = state["stages.0.layers.0.ff.expand.weight"].shape[0] // dims[0]
        focus = next((k for k in state if k.endswith("block.rel_pos.weight")), None)
        kernel = state[focus].shape[-1] if focus else 5
        # heads = width / dim_head; only a Focus block's per-head kernels reveal it
        dim_head = dims[int(focus.split(".")[1])] // state[focus].shape[0] if focus else 64
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(f"not an MGFN state dict (missing {exc})") from None
    cfg = dict(feature_size=feature_size, dims=tuple(dims), depths=tuple(depths), block_types=tuple(types),
               ff_mult=ff_mult, focus_kernel=kernel, dim_head=dim_head)
    cfg.update(overrides)
    return MGFNConfig(**cfg)


def _atomic_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:
            # torch's zip writer hides a write that failed (a full disk) behind its own "unexpected pos" error
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


def save_checkpoint(path, model, **extra) -> None:
    """Write our checkpoint atomically (temporary file, then rename)."""
    obj = {"format": FORMAT, "model": model.state_dict(), "model_config": model.config.to_dict()}
    obj.update(extra)
    _atomic_save(obj, Path(path))


def _unpickler_reason(message: str) -> str:
    """The reason inside torch's "Weights only load failed" message (e.g. "Unsupported operand 110"), else its kind."""
    after = message.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in message else ""
    lines = [line.strip() for line in after.splitlines() if line.strip()]
    return lines[0] if lines and not lines[0].startswith("Check the documentation") else "not a pickle it accepts"


def read_checkpoint(path) -> dict:
    """Load our checkpoint or an official state dict, returning our dict format."""
    path = Path(path)
    if path.is_dir():
        inside = sorted((p.name for p in path.glob("*.pt")), key=lambda n: (n != "best.pt", n != "model.pt", n))
        hint = f": did you mean {path / inside[0]}?" if inside else ""
        raise InputError(f"{path}: is a folder; a checkpoint is a .pt file{hint}")
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        code = re.search(r"GLOBAL (\S+)", str(exc)) if "Weights only load failed" in str(exc) else None
        if code:  # torch's first line would advise weights_only=False: the one thing not to do with this file
            raise InputError(f"{path}: refused: it holds pickled code or objects ({code.group(1)}), not only "
                             "weights; checkpoints are loaded with weights_only, which never runs code") from None
        if "Weights only load failed" in str(exc):  # likewise: not torch's advice, what the file is
            raise InputError(f"{path}: not a PyTorch checkpoint (torch.load cannot read it: "
                             f"{_unpickler_reason(str(exc))})") from None
        raise InputError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = reference_to_ours(obj)
        return {"format": FORMAT, "model": state, "model_config": infer_config(state).to_dict(),
                "provenance": {"source": f"official MGFN state dict {path.name}"}}
    raise InputError(f"{path}: neither an mgfn-vad checkpoint nor an MGFN state dict")


def load_model(path, device="cpu", expect_feature_size: int | None = None, **config_overrides):
    """Build the model (MGFN or the MIL baseline) from a checkpoint; returns (model in eval mode, checkpoint dict)."""
    from mgfn.mil import MILConfig, MILRanking

    ckpt = read_checkpoint(path)
    cfg_dict = dict(ckpt["model_config"])
    if isinstance(cfg_dict.get("lstm"), dict) and "skip" not in cfg_dict["lstm"]:
        cfg_dict["lstm"] = {**cfg_dict["lstm"], "skip": False}     # written before the front end had `skip`
    cfg_dict.update(config_overrides)
    is_mil = cfg_dict.get("type") == "mil"
    cfg = MILConfig(**cfg_dict) if is_mil else MGFNConfig(**cfg_dict)
    if expect_feature_size is not None and cfg.feature_size != expect_feature_size:
        raise InputError(f"{path}: checkpoint expects {cfg.feature_size}-d features, the data has {expect_feature_size}-d")
    model = MILRanking(cfg) if is_mil else MGFN(cfg)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise InputError(f"{path}: state dict does not match the architecture "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), ckpt


def add_arguments(parser) -> None:
    parser.add_argument("file", help="official MGFN state dict (e.g. mgfn_ucf.pkl; `module.` prefixes allowed)")
    parser.add_argument("--out", required=True, help="where to write our checkpoint (e.g. model.pt)")


def main(args) -> int:
    ckpt = read_checkpoint(args.file)
    model, _ = load_model(args.file)
    save_checkpoint(args.out, model, provenance=ckpt.get("provenance", {}), epoch=ckpt.get("epoch"))
    cfg = model.config
    print(f"wrote {args.out}: MGFN {cfg.feature_size}-d, dims {list(cfg.dims)}, depths {list(cfg.depths)}, "
          f"blocks {list(cfg.block_types)}")
    return 0
