"""Mini-drone Video Dataset (EPFL): ViPER-GT XML per clip; categories normal / suspicious / illicit.

The clip's category is its video label (suspicious and illicit are abnormal); the frame labels are the framespans
of the objects whose action or category attribute is suspicious or illicit. Which descriptor and attribute names
carry these is configuration (`adapter:` in configs/datasets/minidrone.yaml); a file whose config section holds
none of them fails with the list of descriptors and attributes it does hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from mgfn.errors import InputError
from pipeline.datasets.common import Sources, Video, attach_features, read_id_list
from pipeline.datasets.viper import SourceFile, ViperFile, read_viper
from pipeline.store import video_id


@dataclass
class MiniDroneConfig:
    """Which ViPER names mean what; matched case-insensitively."""

    category_attributes: list[str] = field(default_factory=lambda: ["Category", "Behaviour", "Behavior"])
    label_attributes: list[str] = field(default_factory=lambda: ["Action", "Category", "Behaviour", "Behavior"])
    objects: list[str] = field(default_factory=list)          # OBJECT/CONTENT descriptors to read; empty = all
    num_frames_attribute: str = "NUMFRAMES"
    categories: list[str] = field(default_factory=lambda: ["normal", "suspicious", "illicit"])  # mildest first
    abnormal: list[str] = field(default_factory=lambda: ["suspicious", "illicit"])
    first_frame: int = 1                                      # ViPER numbers frames from 1
    test_fraction: float = 0.5                                # per category, without --test-list

    @classmethod
    def from_dict(cls, data: dict) -> "MiniDroneConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"minidrone settings: unknown {unknown}; known: {sorted(known)}")
        return cls(**data)


SETTINGS = MiniDroneConfig     # what DatasetConfig checks `adapter:` against


@dataclass
class Clip:
    video_id: str
    category: str
    num_frames: int
    events: list[tuple[int, int]]       # 0-based inclusive frame ranges of suspicious / illicit objects
    mask: np.ndarray


def _matches(name: str, wanted: list[str]) -> bool:
    return name.lower() in {w.lower() for w in wanted}


def _strings(values) -> list[str]:
    return [str(v.value).strip().lower() for v in values if isinstance(v.value, (str, bool))]


def _layout_error(viper: ViperFile, what: str, cfg: MiniDroneConfig) -> InputError:
    return InputError(f"{viper.path}: {what}; the file declares {viper.describe()}. Set the names under `adapter:` "
                      f"in configs/datasets/minidrone.yaml (category_attributes {cfg.category_attributes}, "
                      f"label_attributes {cfg.label_attributes}, objects {cfg.objects or 'all'})")


def read_clip(viper: ViperFile, source: SourceFile, cfg: MiniDroneConfig) -> Clip:
    """One source file's category, frame count and frame labels."""
    vid = video_id(source.filename) if source.filename else viper.path.stem
    label_descs = [d for d in viper.descriptors.values() if d.type in ("OBJECT", "CONTENT")
                   and (not cfg.objects or _matches(d.name, cfg.objects))
                   and any(_matches(a, cfg.label_attributes) for a in d.attributes)]
    if not label_descs:
        raise _layout_error(viper, "no object descriptor has an action/category attribute", cfg)
    spans, severities = [], []
    for inst in source.instances:
        if inst.descriptor not in {d.name for d in label_descs}:
            continue
        for attr, values in inst.attributes.items():
            if not _matches(attr, cfg.label_attributes):
                continue
            for v in values:
                value = str(v.value).strip().lower()
                if value in cfg.categories:
                    severities.append(cfg.categories.index(value))
                if value in [a.lower() for a in cfg.abnormal]:
                    spans += v.framespan or inst.framespan or []
    category = None
    for inst in source.instances:
        if inst.type in ("FILE", "CONTENT"):
            for attr, values in inst.attributes.items():
                found = [s for s in _strings(values) if s in cfg.categories]
                if _matches(attr, cfg.category_attributes) and found:
                    category = max(found, key=cfg.categories.index)
    if category is None:        # the clip's name says it, as the dataset's files are named
        named = [c for c in cfg.categories if c in Path(source.filename or viper.path.stem).stem.lower()]
        category = named[-1] if named else None
    if category is None and severities:
        category = cfg.categories[max(severities)]
    if category is None:
        category = cfg.categories[0] if not spans else None
    if category is None:
        raise _layout_error(viper, f"no clip category ({'/'.join(cfg.categories)}) found for {source.filename!r}", cfg)
    num_frames = None
    for inst in source.of_type("FILE"):
        for attr, values in inst.attributes.items():
            if attr.upper() == cfg.num_frames_attribute.upper() and values:
                num_frames = int(values[0].value)
    all_spans = [s for i in source.instances for s in (i.framespan or [])]
    if num_frames is None:
        num_frames = max((e for _, e in all_spans), default=cfg.first_frame - 1) - cfg.first_frame + 1
    events = sorted((a - cfg.first_frame, b - cfg.first_frame) for a, b in spans)
    mask = np.zeros(num_frames, dtype=np.uint8)
    for a, b in events:
        mask[max(0, a):max(0, min(num_frames, b + 1))] = 1
    return Clip(vid, category, num_frames, events, mask)


def read_clips(annotation: Path, cfg: MiniDroneConfig) -> list[Clip]:
    """Every clip of an XML file or of a folder of XML files."""
    annotation = Path(annotation)
    files = sorted(annotation.glob("*.xml")) if annotation.is_dir() else [annotation]
    if not files or not files[0].exists():
        raise InputError(f"{annotation}: no ViPER XML files found")
    clips = []
    for f in files:
        viper = read_viper(f)
        if not viper.sourcefiles:
            raise _layout_error(viper, "no <sourcefile> in the data section", cfg)
        clips += [read_clip(viper, s, cfg) for s in viper.sourcefiles]
    return clips


def _split(clips: list[Clip], cfg: MiniDroneConfig) -> dict[str, str]:
    """Per category, sorted by id, a `test_fraction` share of the clips goes to test (spread evenly)."""
    out = {}
    for cat in cfg.categories:
        ids = sorted(c.video_id for c in clips if c.category == cat)
        for i, vid in enumerate(ids):
            out[vid] = "test" if int((i + 1) * cfg.test_fraction + 0.5) > int(i * cfg.test_fraction + 0.5) else "train"
    return out


def load(src: Sources) -> list[Video]:
    """Clips from the XML annotation; splits from --train-list/--test-list or a per-category share."""
    if not src.annotation:
        raise InputError("minidrone: give --annotation (a ViPER XML file or a folder of them)")
    cfg = MiniDroneConfig.from_dict(src.config or {})
    clips = read_clips(src.annotation, cfg)
    split = _split(clips, cfg)
    if src.test_list or src.train_list:
        test = set(read_id_list(src.test_list)) if src.test_list else None
        train = set(read_id_list(src.train_list)) if src.train_list else None
        split = {c.video_id: "test" if (test is not None and c.video_id in test) or
                 (test is None and c.video_id not in train) else "train" for c in clips}
    abnormal = [a.lower() for a in cfg.abnormal]
    videos = []
    for c in clips:
        label = int(c.category in abnormal)
        s = split[c.video_id]
        videos.append(Video(c.video_id, label, s, [c.category] if label else [],
                            mask=c.mask if s == "test" else None, num_frames=c.num_frames))
    attach_features(videos, src.features)
    return videos


def stats(src: Sources) -> list[tuple[str, int, int]]:
    """(category, clips, abnormal object spans) over the annotation."""
    cfg = MiniDroneConfig.from_dict(src.config or {})
    clips = read_clips(src.annotation, cfg)
    return [(cat, sum(c.category == cat for c in clips), sum(len(c.events) for c in clips if c.category == cat))
            for cat in cfg.categories]
