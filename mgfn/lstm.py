"""I3D-LSTM: a recurrent temporal encoder over cached I3D clip features, in front of MGFN's feature amplification.

The I3D features stay as they are in the store; the LSTM is part of the model (`MGFNConfig.lstm`), trained jointly
with MGFN under the same weak labels, recorded in every checkpoint through `model_config` and used by `mgfn eval`,
`mgfn score` and `mgfn export` with no extra flags. At test time it reads a video's whole clip sequence.

What MGFN sees (`LSTMConfig.skip`, measured on real UCF-Crime features in docs/i3d-lstm.md): each clip's features
(as the model's input settings prepared them) beside the LSTM's output for that clip, so the front end adds what the
order of clips says to what MGFN already had. With the output alone (`skip: false`, the first design) MGFN lost the
clip features it localises events with and scored 0.55-0.60 frame AUC on real features (chance: 0.50).

How training presents videos to it (`LSTMConfig.sequences`, measured in docs/i3d-lstm.md):
- "clips" (default): the clip sequence itself (memory-mapped, at most `max_clips` steps), pooled to the 32 segments
  after the LSTM, so it trains on the same kind of steps it sees at test time. When a segment holds several clips
  (long videos, as in the real datasets), pooling first averages away the order the LSTM is there to read.
- "pooled": the 32 segments every MGFN trains on (each the mean of its clips), pooled once in memory: as good on
  short videos (about two clips per segment) and cheaper.

`VARIANTS` is the one place that says what `i3d_lstm` means where an extractor name is accepted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mgfn.data import FeatureInfo, TrainingSet, VideoEntry, inspect_entries, load_features, pool_segments, segment_bounds
from mgfn.errors import InputError

SEQUENCES = ("pooled", "clips")

# Extractor names that are I3D features from the store plus a front end in the model.
# name -> the I3D extractor whose features it reads by default (any I3D extractor can be its base).
VARIANTS = {"i3d_lstm": {"base": "i3d_r50_rtfm"}}


@dataclass
class LSTMConfig:
    """The front end's architecture, and how training presents videos to it."""

    layers: int = 1
    hidden: int = 64
    bidirectional: bool = False       # False: a clip's encoding depends only on what came before it
    dropout: float = 0.0              # on the LSTM's output (and between layers when layers > 1)
    sequences: str = "clips"          # training input: "clips" (pooled after the LSTM) | "pooled" (32 segments)
    max_clips: int = 256              # "clips": longer videos are first pooled to this many steps (bounded memory)
    skip: bool = True                 # MGFN sees each clip's features beside the LSTM's output, not the output alone

    def __post_init__(self):
        self.layers, self.hidden, self.max_clips = int(self.layers), int(self.hidden), int(self.max_clips)
        self.bidirectional, self.dropout, self.skip = bool(self.bidirectional), float(self.dropout), bool(self.skip)
        if self.layers < 1 or self.hidden < 1 or self.max_clips < 1:
            raise ValueError("lstm layers, hidden and max_clips must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lstm dropout must be in [0, 1), got {self.dropout}")
        if self.sequences not in SEQUENCES:
            raise ValueError(f"lstm sequences must be one of {', '.join(SEQUENCES)}, got {self.sequences!r}")

    @property
    def out_size(self) -> int:
        return self.hidden * (2 if self.bidirectional else 1)

    def to_dict(self) -> dict:
        return asdict(self)


def lstm_config(value) -> LSTMConfig:
    """An LSTMConfig from a mapping (YAML / checkpoint) with one-line errors for unknown keys."""
    if isinstance(value, LSTMConfig):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"lstm settings must be a mapping, got {value!r}")
    unknown = sorted(set(value) - set(LSTMConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown lstm settings {unknown}; known: {sorted(LSTMConfig.__dataclass_fields__)}")
    return LSTMConfig(**value)


def parse_lstm_option(text: str) -> dict:
    """`--lstm hidden=128,layers=2,bidirectional=true,sequences=clips` -> a settings dict ("" or "default": {})."""
    out: dict = {}
    if text.strip() in ("", "default"):
        return out
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in LSTMConfig.__dataclass_fields__:
            raise InputError(f"--lstm: expected KEY=VALUE with KEY in {sorted(LSTMConfig.__dataclass_fields__)}, "
                             f"got {item!r}")
        if key in ("bidirectional", "skip"):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise InputError(f"--lstm: {key} must be true or false, got {value!r}")
            out[key] = value.lower() in ("true", "1", "yes")
        elif key == "sequences":
            out[key] = value
        else:
            try:
                out[key] = float(value) if key == "dropout" else int(value)
            except ValueError:
                raise InputError(f"--lstm: {key} must be a number, got {value!r}") from None
    try:
        LSTMConfig(**out)
    except ValueError as exc:
        raise InputError(f"--lstm: {exc}") from None
    return out


def resolve_extractor(name: str, base: str | None = None) -> tuple[str, bool]:
    """(the I3D extractor whose features are read, whether the model has an LSTM front end) for an extractor name."""
    if name in VARIANTS:
        return base or VARIANTS[name]["base"], True
    if base is not None:
        raise InputError(f"a base extractor ({base}) is only meaningful for {', '.join(VARIANTS)}, not {name}")
    return name, False


def with_frontend(extractor: str | None, model: dict) -> dict:
    """Model settings for training on `extractor`: `i3d_lstm` adds the LSTM front end (default settings) if absent."""
    if extractor is None or extractor not in VARIANTS or model.get("lstm") is not None:
        return model
    return {**model, "lstm": {}}


def check_extractor(extractor: str | None, recorded: dict | None, where) -> None:
    """Refuse training features whose extractor.json names another extractor than the one asked for."""
    if extractor is None or not recorded or "name" not in recorded:
        return
    if extractor in VARIANTS:                   # any I3D features can be the base; not another front end's output
        if recorded.get("front_end"):
            raise InputError(f"{where}: these features are already {recorded['name']} encoder outputs "
                             f"(mgfn export); train on them without --extractor {extractor}")
        return
    if recorded["name"] != extractor:
        raise InputError(f"{where}: the features come from {recorded['name']}, not {extractor}")


# -- the front end ----------------------------------------------------------------------------------------------

class ClipSequences(NamedTuple):
    """A training batch of clip sequences ("clips" mode), padded to the longest; the LSTM pools it to segments.

    `shape` is the shape MGFN sees after the front end has pooled it: `(V, crops, segments, D + 1)`.
    """

    clips: torch.Tensor      # [V, crops, L, D] I3D features, zero past each video's length
    lengths: torch.Tensor    # [V] clips per video (int64, on the CPU)
    segments: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        v, crops, _, d = self.clips.shape
        return v, crops, self.segments, d + 1

    def to(self, device, non_blocking: bool = False) -> "ClipSequences":
        return ClipSequences(self.clips.to(device, non_blocking=non_blocking), self.lengths, self.segments)


def segment_matrix(lengths, segments: int, max_len: int) -> torch.Tensor:
    """`[V, segments, max_len]` averaging weights: row s of video i is mean of its clips in segment s, exactly the
    reference's boundaries (`mgfn.data.pool_segments`; an empty segment takes clip r_s)."""
    out = torch.zeros(len(lengths), segments, max_len)
    for i, t in enumerate(int(n) for n in lengths):
        r = segment_bounds(t, segments)
        for s in range(segments):
            a, b = int(r[s]), int(r[s + 1])
            if b > a:
                out[i, s, a:b] = 1.0 / (b - a)
            else:
                out[i, s, a] = 1.0
    return out


class TemporalEncoder(nn.Module):
    """LayerNorm over the I3D channels, then an LSTM along the clips of each crop: `[N, T, D]` -> `[N, T, H]`."""

    def __init__(self, feature_size: int, cfg: LSTMConfig, magnitude_size: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.magnitude_size = magnitude_size or feature_size   # leading channels the magnitude is measured on
        # I3D features are post-ReLU with norms in the tens: normalised, the gates do not start saturated. Their
        # magnitude is not lost: it reaches MGFN through the magnitude channel (see forward).
        self.norm = nn.LayerNorm(feature_size)
        self.lstm = nn.LSTM(feature_size, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.feature_size = feature_size

    @property
    def out_size(self) -> int:
        """Channels MGFN sees per clip (without the magnitude): the LSTM's outputs, after the clip with `skip`."""
        return self.cfg.out_size + (self.feature_size if self.cfg.skip else 0)

    def encode(self, features, lengths=None):
        """`[N, T, D]` -> `[N, T, H]`; with `lengths` `[N]` the steps past each length are padding."""
        x = self.norm(features)
        if lengths is None:
            h, _ = self.lstm(x)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        return self.dropout(h)

    def forward(self, video):
        """`[V, crops, T, D+1]` (or a ClipSequences batch) -> `[V*crops, T (or segments), H+1]`.

        The magnitude channel after the LSTM stays the I3D feature magnitude, passed through: MGFN's feature
        amplification rests on I3D magnitudes rising with what happens in a clip, while the norm of tanh-bounded
        LSTM outputs carries no such meaning (and is a function of the features FAM already sees). In "clips"
        training it is the magnitude of the pooled I3D features, exactly what plain MGFN trains on.
        """
        if isinstance(video, ClipSequences):
            return self._pooled(video)
        v, crops, t, c = video.shape
        x = video.reshape(v * crops, t, c)
        clips = [x[..., :-1]] if self.cfg.skip else []
        return torch.cat([*clips, self.encode(x[..., :-1]), x[..., -1:]], dim=-1)

    def _pooled(self, batch: ClipSequences):
        v, crops, length, d = batch.clips.shape
        x = batch.clips.reshape(v * crops, length, d)                                 # [V*crops, L, D]
        lengths = batch.lengths.repeat_interleave(crops)                               # crop-major within a video
        h = self.encode(x, lengths)                                                    # [V*crops, L, H]
        pool = segment_matrix(batch.lengths, batch.segments, length).to(x)             # [V, S, L]
        pool = pool.repeat_interleave(crops, dim=0)                                    # [V*crops, S, L]
        pooled = torch.bmm(pool, x)                                                    # [V*crops, S, D]
        magnitude = pooled[..., :self.magnitude_size].norm(dim=-1, keepdim=True)      # [V*crops, S, 1]
        clips = [pooled] if self.cfg.skip else []
        return torch.cat([*clips, torch.bmm(pool, h), magnitude], dim=-1)             # [V*crops, S, (D+)H+1]


# -- training data ----------------------------------------------------------------------------------------------

class ClipSequenceSet:
    """Training videos as clip sequences: same interface as `mgfn.data.TrainingSet` (`data[idx]` is a batch).

    Files are memory-mapped and read per batch, or kept in memory when they fit `cache_bytes`. A video longer than
    `max_clips` is pooled to `max_clips` steps first (reference boundaries), so memory per batch is bounded.
    """

    prepared = False    # clip sequences are read per batch: the model transforms each batch itself

    def __init__(self, entries: list[VideoEntry], segments: int = 32, max_clips: int = 256,
                 cache_bytes: int = 2 << 30):
        self.entries, self.segments, self.max_clips = entries, segments, max_clips
        self.info: FeatureInfo = inspect_entries(entries, "training")
        self.labels = np.array([e.label for e in entries])
        self.lengths = np.array([min(e.load().shape[0], max_clips) for e in entries])
        size = int(self.lengths.sum()) * self.info.crops * self.info.feature_size * 4
        self._cache: list | None = [None] * len(entries) if size <= cache_bytes else None
        self.data = _Batches(self)

    def prepare(self, transform) -> None:
        """Nothing to do once: batches are read per iteration (TrainingSet.prepare transforms its fixed data)."""

    def indices(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)

    def clips(self, i: int) -> np.ndarray:
        """Video i as `[T', crops, D]` float32, T' = min(T, max_clips)."""
        if self._cache is not None and self._cache[i] is not None:
            return self._cache[i]
        feats = self.entries[i].load()
        if feats.shape[0] > self.max_clips:
            feats = pool_segments(feats, self.max_clips)
        feats = np.array(feats, dtype=np.float32)                # a copy: never a read-only memory map
        if self._cache is not None:
            self._cache[i] = feats
        return feats

    def videos(self):
        """Each video's clip sequence `[crops, T', D]`, as `TrainingSet.videos` gives its segments."""
        for i in range(len(self.entries)):
            yield torch.from_numpy(self.clips(i)).transpose(0, 1)

    def batch(self, idx) -> ClipSequences:
        idx = np.asarray(idx).reshape(-1)
        lengths = self.lengths[idx]
        out = torch.zeros(len(idx), self.info.crops, int(lengths.max()), self.info.feature_size)
        for row, i in enumerate(idx):
            out[row, :, : lengths[row]] = torch.from_numpy(self.clips(int(i))).transpose(0, 1)
        return ClipSequences(out, torch.from_numpy(lengths.astype(np.int64)), self.segments)


class _Batches:
    """`data.data[idx]` of a ClipSequenceSet, as `TrainingSet.data[idx]` is a tensor."""

    def __init__(self, owner: ClipSequenceSet):
        self.owner = owner

    def __getitem__(self, idx) -> ClipSequences:
        return self.owner.batch(idx)


def training_set(entries: list[VideoEntry], segments: int, model: dict):
    """The training data the model needs: pooled once (plain MGFN, LSTM "pooled"), or clip sequences (LSTM "clips")."""
    lstm = model.get("lstm")
    if lstm is not None:
        cfg = lstm_config(lstm)
        if cfg.sequences == "clips":
            return ClipSequenceSet(entries, segments, cfg.max_clips)
    return TrainingSet(entries, segments)
