"""XD-Violence: the class codes in each name's `label_` suffix; test events in `annotations.txt`.

`Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6`: A = normal, B1 fighting, B2 shooting, B4 riot, B5 abuse,
B6 car accident, G explosion; `0` fills unused slots. Names hold dots, so they are never cut at a dot.
Public features: 1024-d, one file per crop (`<name>__0.npy` … `__4.npy`), lists `XD_Train.list`, `XD_Test.list`.
"""
from __future__ import annotations

from pathlib import Path

from mgfn.errors import InputError
from pipeline.datasets.common import Sources, Video, attach_features, list_entry_id, split_ids

CLASSES = {"A": "normal", "B1": "fighting", "B2": "shooting", "B4": "riot", "B5": "abuse", "B6": "car accident",
           "G": "explosion"}


def classes_of(vid: str) -> list[str]:
    """The class names in the `label_` suffix (empty for normal `label_A`)."""
    if "_label_" not in vid:
        raise InputError(f"{vid!r}: XD-Violence names end in `_label_<classes>` (e.g. _label_B2-0-0)")
    codes = [c for c in vid.rsplit("_label_", 1)[1].split("-") if c and c != "0"]
    unknown = [c for c in codes if c not in CLASSES]
    if unknown:
        raise InputError(f"{vid!r}: unknown class codes {unknown}; known: {sorted(CLASSES)}")
    return [CLASSES[c] for c in codes if c != "A"]


def read_annotation(path: Path) -> dict[str, list[tuple[int, int]]]:
    """Parse annotations.txt: `name s1 e1 [s2 e2 …]`, any number of inclusive events per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found")
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3 or len(parts) % 2 == 0:
            raise InputError(f"{path}:{lineno}: expected `name start end [start end …]`, got {len(parts) - 1} numbers")
        try:
            frames = [int(x) for x in parts[1:]]
        except ValueError:
            raise InputError(f"{path}:{lineno}: frame numbers must be integers") from None
        out[list_entry_id(parts[0])] = list(zip(frames[::2], frames[1::2]))
    return out


def load(src: Sources) -> list[Video]:
    """Test split from the test list (or the annotated videos), train split from the train list, videos or features."""
    annotated = read_annotation(src.annotation) if src.annotation else {}
    test_ids, train_ids = split_ids(src, list(annotated), "xd-violence: give --annotation annotations.txt or --test-list XD_Test.list")
    tested = set(test_ids)
    videos = []
    for vid in test_ids:
        classes = classes_of(vid)
        videos.append(Video(vid, int(bool(classes)), "test", classes, events=annotated.get(vid)))
    for vid in train_ids:
        if vid not in tested:
            classes = classes_of(vid)
            videos.append(Video(vid, int(bool(classes)), "train", classes))
    attach_features(videos, src.features)
    return videos


def stats(src: Sources) -> list[tuple[str, int, int]]:
    """(class, videos, events) per class over the annotated test videos (a video counts once per class it has)."""
    if not src.annotation:
        raise InputError("xd-violence --stats needs --annotation annotations.txt")
    counts: dict[str, list[int]] = {}
    for vid, events in read_annotation(src.annotation).items():
        for cls in classes_of(vid) or ["normal"]:
            c = counts.setdefault(cls, [0, 0])
            c[0] += 1
            c[1] += len(events)
    return sorted(((k, v[0], v[1]) for k, v in counts.items()), key=lambda r: r[0])
