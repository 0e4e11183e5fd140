"""Dataset adapters: each turns a dataset's own files into `Video` records; `common.write_dataset` writes them
as the lists and ground truth `mgfn train` / `mgfn eval` read.

An adapter module provides `load(Sources) -> list[Video]` and, where its annotation has classes, `stats(Sources)`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from mgfn.errors import InputError

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

    name: str
    feature_size: int | None = None
    crops: int | None = None
    metric: str = "auc"
    train_config: str | None = None       # relative to the YAML: the reference training settings
    published: dict = field(default_factory=dict)
    adapter: dict = field(default_factory=dict)   # adapter-specific settings (Mini-drone's descriptor names)
    path: Path | None = None

    @classmethod
    def from_yaml(cls, path) -> "DatasetConfig":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: dataset config not found")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a mapping of dataset settings")
        known = {f.name for f in fields(cls)} - {"path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{path}: unknown settings {unknown}; known: {sorted(known)}")
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
    return DatasetConfig.from_yaml(path) if path.is_file() else DatasetConfig(name=name)
