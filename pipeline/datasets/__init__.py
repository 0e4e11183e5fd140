"""Dataset adapters: each turns a dataset's own files into `Video` records; `common.write_dataset` writes them
as the lists and ground truth `mgfn train` / `mgfn eval` read.

An adapter module provides `load(Sources) -> list[Video]` and, where its annotation has classes, `stats(Sources)`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from mgfn.errors import InputError
from mgfn.schema import check, read_yaml, setting, settings

DATASETS = {
    "ucf-crime": "pipeline.datasets.ucf_crime",
    "xd-violence": "pipeline.datasets.xd_violence",
    "shanghaitech": "pipeline.datasets.shanghaitech",
    "minidrone": "pipeline.datasets.minidrone",
    "folders": "pipeline.datasets.folders",
}
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "datasets"


@dataclass
class DatasetConfig:
    """A dataset's reference settings (`configs/datasets/<name>.yaml`)."""

    name: str = setting(help="the dataset (ucf-crime, xd-violence, shanghaitech, minidrone, folders) or your own")
    feature_size: int | None = setting(None, min=1)
    crops: int | None = setting(None, min=1)
    metric: str = setting("auc", choices=("auc", "pr_auc", "ap"))
    train_config: str | None = None       # relative to the YAML: the reference training settings
    published: dict[str, float] = field(default_factory=dict)   # metric: value reported in the paper
    adapter: dict = field(default_factory=dict)   # the adapter's settings (its module's SETTINGS dataclass)
    path: Path | None = None              # where it was read from (not a setting)

    @classmethod
    def from_yaml(cls, path, dataset: str | None = None) -> "DatasetConfig":
        """The config held against the schema (mgfn.schema); `adapter:` against the SETTINGS of the adapter of
        `dataset` (default: the config's name) when it is a known one. A bad setting is one line."""
        path = Path(path)
        data = read_yaml(path, "dataset config")
        spec = {k: s for k, s in settings(cls).items() if k != "path"}
        data = check({} if data is None else data, spec, path)
        module = dataset or data["name"]
        if module in DATASETS:
            adapter = getattr(importlib.import_module(DATASETS[module]), "SETTINGS", {})
            data["adapter"] = check(data.get("adapter") or {}, adapter, path, "adapter")
        return cls(**data, path=path)

    def train_config_path(self) -> Path | None:
        return (self.path.parent / self.train_config).resolve() if self.train_config and self.path else None


def dataset_module(name: str):
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return importlib.import_module(DATASETS[name])


def default_config(name: str) -> DatasetConfig:
    """The checked-in `configs/datasets/<name>.yaml`, or an empty config when there is none."""
    path = CONFIG_DIR / f"{name.replace('-', '_')}.yaml"
    return DatasetConfig.from_yaml(path, name) if path.is_file() else DatasetConfig(name=name)
