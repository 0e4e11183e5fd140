"""ShanghaiTech, weakly supervised split (Zhong et al.): 238 train (63 abnormal) / 199 test videos.

Ids like `01_0014`: four digits after the scene number come from the original test set (abnormal), three
from its training set (normal). Ground truth: `test_frame_mask/<id>.npy`, 0/1 per frame. Lists: `SH_Train.txt`,
`SH_Test.txt` (ids) or RTFM's `shanghai-i3d-{train,test}-10crop.list` (abnormal first).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mgfn.errors import InputError
from pipeline.datasets.common import Sources, Video, attach_features, read_id_list


def label_of(vid: str) -> int:
    """1 for an id from the original test set (`01_0014`), 0 for one from the training set (`01_001`)."""
    parts = vid.split("_")
    if len(parts) != 2 or not parts[1].isdigit():
        raise InputError(f"{vid!r}: ShanghaiTech ids look like 01_0014 (scene_number)")
    return int(len(parts[1]) == 4)


def read_masks(folder: Path) -> dict[str, np.ndarray]:
    """`<id>.npy` 0/1 frame masks of a `test_frame_mask` folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: ShanghaiTech --annotation is the test_frame_mask folder of <id>.npy masks")
    out = {}
    for p in sorted(folder.glob("*.npy")):
        mask = np.asarray(np.load(p, allow_pickle=False)).reshape(-1)
        if mask.size and not np.isin(mask, (0, 1)).all():
            raise InputError(f"{p}: a frame mask must hold only 0/1 values")
        out[p.stem] = mask.astype(np.uint8)
    return out


def _default_list(src: Sources, name: str) -> Path | None:
    """SH_Train.txt / SH_Test.txt beside the mask folder, where the public release keeps them."""
    if src.annotation:
        for folder in (Path(src.annotation), Path(src.annotation).parent):
            if (folder / name).is_file():
                return folder / name
    return None


def load(src: Sources) -> list[Video]:
    """Splits from the lists (SH_Train/SH_Test or RTFM lists); test masks from the mask folder."""
    train_list = src.train_list or _default_list(src, "SH_Train.txt")
    test_list = src.test_list or _default_list(src, "SH_Test.txt")
    if not (train_list or test_list):
        raise InputError("shanghaitech: give --train-list SH_Train.txt and --test-list SH_Test.txt (or RTFM lists)")
    masks = read_masks(src.annotation) if src.annotation else {}
    videos = []
    for vid in read_id_list(train_list) if train_list else []:
        videos.append(Video(vid, label_of(vid), "train", ["anomaly"] if label_of(vid) else []))
    for vid in read_id_list(test_list) if test_list else []:
        mask = masks.get(vid)
        label = int(mask.any()) if mask is not None else label_of(vid)
        videos.append(Video(vid, label, "test", ["anomaly"] if label else [], mask=mask))
    attach_features(videos, src.features)
    return videos


def stats(src: Sources) -> list[tuple[str, int, int]]:
    """(split/label, videos, masks found) from the lists."""
    rows = []
    for split in ("train", "test"):
        vids = [v for v in load(Sources(annotation=src.annotation, train_list=src.train_list,
                                        test_list=src.test_list)) if v.split == split]
        for label, name in ((1, "abnormal"), (0, "normal")):
            sel = [v for v in vids if v.label == label]
            rows.append((f"{split} {name}", len(sel), sum(v.mask is not None for v in sel)))
    return rows
