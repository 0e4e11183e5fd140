"""UCF-Crime: 13 anomaly classes + normal; the official temporal annotation of the 290 test videos.

Annotation lines: `Abuse028_x264.mp4  Abuse  165  240  -1  -1` (two inclusive events, -1 where absent).
RTFM lists: `ucf-i3d.list` (810 abnormal first, then 800 normal), `ucf-i3d-test.list` (290, 140 abnormal first).
Features: clip features (`<id>.npy`, one row per 16 frames), or with `layout="sultani32"` Sultani's 32 C3D
segments per video (`<id>.txt` or `.npy`), whose test videos need frame counts for their rows' spans (`segments.py`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mgfn.errors import InputError
from pipeline.datasets.common import Sources, Video, attach_features, split_ids
from pipeline.datasets.segments import attach_spans
from pipeline.store import video_id

CLASSES = ("Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting", "RoadAccidents", "Robbery",
           "Shooting", "Shoplifting", "Stealing", "Vandalism")
_NAME = re.compile(r"^(?P<cls>[A-Za-z_]+?)_?\d+(_x264)?$")


@dataclass
class AnnotatedVideo:
    video_id: str
    anomaly_class: str                  # "Normal" for normal videos
    events: list[tuple[int, int]]


def class_of(vid: str) -> str:
    """`Abuse028_x264` -> Abuse, `Normal_Videos_003_x264` -> Normal (the class is the name before the number)."""
    m = _NAME.match(vid)
    cls = m.group("cls") if m else vid
    return "Normal" if cls.lower().startswith("normal") else cls


def read_annotation(path: Path) -> list[AnnotatedVideo]:
    """Parse Temporal_Anomaly_Annotation.txt: one video per line, `name class s1 e1 s2 e2`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found")
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4 or (len(parts) - 2) % 2:
            raise InputError(f"{path}:{lineno}: expected `name class start end [start end]`, got {line.strip()!r}")
        try:
            frames = [int(x) for x in parts[2:]]
        except ValueError:
            raise InputError(f"{path}:{lineno}: frame numbers must be integers, got {line.strip()!r}") from None
        events = [(s, e) for s, e in zip(frames[::2], frames[1::2]) if s >= 0 and e >= 0]
        if any(e < s for s, e in events):
            raise InputError(f"{path}:{lineno}: an event ends before it starts")
        out.append(AnnotatedVideo(video_id(parts[0]), parts[1], events))
    return out


def load(src: Sources) -> list[Video]:
    """Test split from the annotation (or test list), train split from the train list, videos or features;
    with the sultani32 layout, test videos also get their rows' frame spans from `src.frame_counts`."""
    annotated = {a.video_id: a for a in read_annotation(src.annotation)} if src.annotation else {}
    test_ids, train_ids = split_ids(src, list(annotated),
                                    "ucf-crime: give --annotation Temporal_Anomaly_Annotation.txt or --test-list")
    tested = set(test_ids)
    videos = []
    for vid in test_ids:
        a = annotated.get(vid)
        cls = a.anomaly_class if a else class_of(vid)
        label = int(cls != "Normal")
        videos.append(Video(vid, label, "test", [cls] if label else [],
                            events=a.events if (a and label) else None))
    for vid in train_ids:
        if vid in tested:
            continue
        cls = class_of(vid)
        videos.append(Video(vid, int(cls != "Normal"), "train", [cls] if cls != "Normal" else []))
    attach_features(videos, src.features, src.layout)
    if src.layout == "sultani32":
        attach_spans(videos, src.frame_counts)
    return videos


def stats(src: Sources) -> list[tuple[str, int, int]]:
    """(class, videos, events) per class of the annotation file, Normal last."""
    if not src.annotation:
        raise InputError("ucf-crime --stats needs --annotation Temporal_Anomaly_Annotation.txt")
    counts: dict[str, list[int]] = {}
    for a in read_annotation(src.annotation):
        c = counts.setdefault(a.anomaly_class, [0, 0])
        c[0] += 1
        c[1] += len(a.events)
    return sorted(((k, v[0], v[1]) for k, v in counts.items()), key=lambda r: (r[0] == "Normal", r[0]))
