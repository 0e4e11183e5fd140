"""A synthetic benchmark where context decides: every clip looks normal on its own; order makes it anomalous.

Each video is a scene going through a cycle of K states (S0 -> S1 -> ... -> S(K-1) -> S0 ...), each state a run
of a few clips, runs separated by a few background clips, like a process seen by a fixed camera (approach, pay,
take). After a run the next one is the same state again or its successor. A clip's feature depends only on its
state (plus the video's scene and noise), and every state is equally common in normal and abnormal videos, with
the same norms: no single clip, and no bag of clips, tells an abnormal video from a normal one.

Abnormal videos hold 1-2 violations: 1-3 runs in a row each reached by a wrong step, a state reached without its
precursor (S0 -> S2: taken without paying) or, the same with 3 states, the cycle running backwards (S2 -> S1 -> S0).
The ground truth of a wrong run is the run and the background after it, until the next run starts, so anomalous
frames are background and state clips in the same proportion as normal frames are: even a clip-level classifier
trained with frame labels is at chance. The state before a run is several background clips back, so a model must
remember it across the gap.

Same files as `mgfn.synthetic`: `features/<id>.npy` [T, crops, D], `train.csv`, `test.csv`, `gt/<id>.npy`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgfn.synthetic import SYNTH_HELP, config_arguments, write_splits


@dataclass
class ContextConfig:
    train_normal: int = 128
    train_abnormal: int = 128
    test_normal: int = 24
    test_abnormal: int = 24
    feature_size: int = 64
    crops: int = 1
    states: int = 3                # length of the cycle every normal video follows
    advance: float = 0.7           # probability that the next run is the successor state (else the same state)
    min_clips: int = 40
    max_clips: int = 96
    min_run: int = 2               # clips per state run
    max_run: int = 5
    min_gap: int = 1               # background clips between runs
    max_gap: int = 5
    noise: float = 0.3             # clip-to-clip noise, relative to the distance between state prototypes
    scene: float = 0.0             # weight of a per-video scene vector (0.5: 256 videos are memorised, see docs/i3d-lstm.md)
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self):
        if self.states < 3:
            raise ValueError("states must be at least 3 (with 2, every step is a normal one)")
        if not 0.0 < self.advance <= 1.0:
            raise ValueError("advance must be in (0, 1]")
        if not (1 <= self.min_run <= self.max_run and 0 <= self.min_gap <= self.max_gap):
            raise ValueError("need 1 <= min_run <= max_run and 0 <= min_gap <= max_gap")
        if self.min_clips < 3 * (self.max_run + self.max_gap) or self.max_clips < self.min_clips:
            raise ValueError(f"min_clips must hold at least three runs and gaps ({3 * (self.max_run + self.max_gap)})")


def _layout(rng, cfg: ContextConfig, t: int) -> list[tuple[int, int]]:
    """(start, length) of every state run in a video of t clips; background before, between and after."""
    runs, pos = [], int(rng.integers(0, cfg.max_gap + 1))
    while True:
        length = int(rng.integers(cfg.min_run, cfg.max_run + 1))
        if pos + length > t:
            return runs
        runs.append((pos, length))
        pos += length + int(rng.integers(cfg.min_gap, cfg.max_gap + 1))


def _states(rng, cfg: ContextConfig, n_runs: int, abnormal: bool) -> tuple[list[int], list[bool]]:
    """The state of every run and whether it breaks the cycle; an abnormal video breaks it once or twice.

    Normal steps: stay (the same state again after the gap) or advance to the successor. A wrong step is any other
    one; with 3 states it is both a skip (S0 -> S2, S1 never came) and a step back (S2 -> S1), and a run of 1-3 of
    them is the cycle running backwards. With 3 states, sums of two or more steps take every value in normal videos
    too, so nothing but the wrong step itself marks an abnormal video.
    """
    k = cfg.states
    wrong = [False] * n_runs
    if abnormal:
        for s in rng.permutation(np.arange(1, n_runs))[: int(rng.integers(1, 3))]:
            for j in range(s, min(n_runs, s + int(rng.integers(1, 4)))):       # 1-3 wrong steps in a row
                wrong[j] = True
    states = [int(rng.integers(k))]
    for i in range(1, n_runs):
        step = int(rng.integers(2, k)) if wrong[i] else int(rng.random() < cfg.advance)
        states.append((states[-1] + step) % k)
    return states, wrong


def _video(rng, cfg: ContextConfig, prototypes: np.ndarray, abnormal: bool):
    d = cfg.feature_size
    while True:
        t = int(rng.integers(cfg.min_clips, cfg.max_clips + 1))
        runs = _layout(rng, cfg, t)
        if len(runs) >= 3:
            break
    states, wrong = _states(rng, cfg, len(runs), abnormal)
    label = np.full(t, cfg.states)                                           # background = the last prototype
    mask = np.zeros(t, dtype=bool)
    ends = [start for start, _ in runs[1:]] + [t]
    for (start, length), state, bad, end in zip(runs, states, wrong, ends):
        label[start:start + length] = state
        mask[start:end] = bad                    # the wrong run and the background after it, until the next run
    scene = cfg.scene * rng.gamma(2.0, 0.5, size=d)
    drift, clips = np.zeros(d), np.empty((t, d))
    for i in range(t):                                                       # AR(1) drift: neighbours look alike
        drift = 0.8 * drift + 0.2 * rng.normal(0, 1.0, size=d)
        clips[i] = scene + prototypes[label[i]] + cfg.noise * drift
    clips = np.maximum(clips, 0.0)
    crops = clips[:, None, :] * (1.0 + 0.05 * rng.normal(size=(t, cfg.crops, 1))) \
        + 0.05 * rng.normal(size=(t, cfg.crops, d))
    return np.maximum(crops, 0.0).astype(cfg.dtype), mask


def prototypes_for(rng, cfg: ContextConfig) -> np.ndarray:
    """K state prototypes and a background one: sparse, non-negative, all of the same norm (sqrt(D))."""
    p = rng.gamma(2.0, 0.5, size=(cfg.states + 1, cfg.feature_size))
    p *= rng.random(p.shape) < 0.3
    return p / np.linalg.norm(p, axis=1, keepdims=True) * np.sqrt(cfg.feature_size) * 0.5


def make_dataset(out_dir, cfg: ContextConfig | None = None) -> dict[str, Path]:
    """Write `features/<id>.npy` [T, crops, D], `train.csv`, `test.csv` and `gt/<id>.npy` frame masks (16 per clip)."""
    cfg = cfg or ContextConfig()
    rng = np.random.default_rng(cfg.seed)
    prototypes = prototypes_for(rng, cfg)
    return write_splits(out_dir, cfg, lambda abnormal: _video(rng, cfg, prototypes, abnormal=abnormal))


CONTEXT_HELP = {
    **SYNTH_HELP,
    "states": "length of the cycle every normal video follows",
    "advance": "probability that the next run is the successor state (else the same state)",
    "min_run": "fewest clips in a state run", "max_run": "most clips in a state run",
    "min_gap": "fewest background clips between runs", "max_gap": "most background clips between runs",
    "noise": "clip-to-clip noise, relative to the distance between state prototypes",
    "scene": "weight of a per-video scene vector (0.5: 256 videos are memorised, see docs/i3d-lstm.md)",
}


def add_arguments(parser) -> None:
    config_arguments(parser, ContextConfig(), CONTEXT_HELP)


def main(args) -> int:
    from mgfn.errors import InputError

    try:
        cfg = ContextConfig(**{k: getattr(args, k) for k in vars(ContextConfig())})
    except ValueError as exc:
        raise InputError(str(exc)) from None
    paths = make_dataset(args.out, cfg)
    print(f"wrote {cfg.train_normal + cfg.train_abnormal} training and {cfg.test_normal + cfg.test_abnormal} test "
          f"videos ({cfg.crops} crops x {cfg.feature_size}-d, a cycle of {cfg.states} states) to {paths['root']}")
    return 0
