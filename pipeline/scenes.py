"""Synthetic surveillance videos with exact frame ground truth, made offline with numpy and PyAV.

A fixed camera looks at a tiled plaza (a building wall, a bench, a lamp post, a bin) where people walk,
stroll and pause. Abnormal videos add one event: a person running, two people fighting, a fall, a
flash/explosion, or a vehicle crossing the walkway. Every video, normal or not, draws its background,
walkers and lighting from the same distribution, so what gives an anomaly away is motion, not the scene.

Each scene is planned up front (all random choices, per-frame tracks) and then rendered as a pure function
of the plan, once as it happens and once with the event replaced by normal behaviour (nobody there, or the
actors standing still): the two renderings differ exactly in the ground-truth frames.
"""
from __future__ import annotations

import csv
import json
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from mgfn.atomic import atomic_open, atomic_path, write_text

ANOMALIES = ("running", "fighting", "falling", "explosion", "vehicle")

PERSON_M = 1.7          # a person's height in metres: sets the pixels-per-metre scale at each depth
WALK_MPS = (0.9, 1.6)   # normal walking speeds, metres per second
RUN_MPS = (4.5, 7.0)
VEHICLE_MPS = (8.0, 13.0)


@dataclass
class Person:
    """Per-frame track of one figure (arrays of length N); angles in radians, 0 = limb hanging down."""
    x: np.ndarray            # feet position, pixels
    y: np.ndarray
    phase: np.ndarray        # gait phase
    stride: np.ndarray       # leg swing amplitude
    arm_swing: np.ndarray
    lean: np.ndarray         # torso lean forward, in person heights
    tilt: np.ndarray         # 0 upright .. pi/2 lying, rotating about the feet towards `facing`
    facing: np.ndarray       # +1 right, -1 left
    visible: np.ndarray      # bool
    colors: dict
    arms: np.ndarray | None = None   # [N, 2] explicit arm angles (NaN: swing with the gait)
    legs: np.ndarray | None = None   # [N, 2] explicit leg angles

    def copy(self) -> "Person":
        arrays = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        return Person(**arrays)


@dataclass
class Vehicle:
    x: np.ndarray            # rear-to-front centre, pixels, per frame
    y: float                 # ground line
    direction: int
    length_m: float
    colors: dict


@dataclass
class Flash:
    cx: float
    cy: float
    start: int
    intensity: np.ndarray    # [N] 0 outside the event
    radius: np.ndarray       # [N]


@dataclass
class Scene:
    """Everything needed to render one video; `anomaly_actors`/`flash`/`vehicle` hold the event."""
    size: tuple[int, int]
    fps: float
    num_frames: int
    kind: str                                   # "normal" or one of ANOMALIES
    background: np.ndarray                      # [H, W, 3] uint8
    gain: np.ndarray                            # [N, 3] lighting per frame and channel
    noise_seed: int
    walkers: list[Person] = field(default_factory=list)
    anomaly_actors: list[Person] = field(default_factory=list)   # drawn last, on top
    normal_actors: list[Person] = field(default_factory=list)    # what they do instead (None: absent)
    vehicle: Vehicle | None = None
    flash: Flash | None = None
    events: list[list[int]] = field(default_factory=list)

    def scale(self, y) -> np.ndarray:
        """Person height in pixels at ground line y (a simple perspective: nearer is lower and bigger)."""
        h = self.size[1]
        return 0.16 * (np.asarray(y, dtype=np.float64) + 0.6 * h)


# ----------------------------------------------------------------------------------------- drawing

def _capsule(img: np.ndarray, x0, y0, x1, y1, r: float, color) -> int:
    """Fill a thick segment (pixel centres within r of it); return how many pixels it covered."""
    height, width = img.shape[:2]
    xa, xb = max(int(np.floor(min(x0, x1) - r)), 0), min(int(np.ceil(max(x0, x1) + r)) + 1, width)
    ya, yb = max(int(np.floor(min(y0, y1) - r)), 0), min(int(np.ceil(max(y0, y1) + r)) + 1, height)
    if xa >= xb or ya >= yb:
        return 0
    yy, xx = np.ogrid[ya:yb, xa:xb]
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else np.clip(((xx - x0) * dx + (yy - y0) * dy) / length2, 0.0, 1.0)
    mask = (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2 <= r * r
    img[ya:yb, xa:xb][mask] = color
    return int(np.count_nonzero(mask))


def _rect(img: np.ndarray, x0, y0, x1, y1, color) -> int:
    height, width = img.shape[:2]
    xa, xb = max(int(round(min(x0, x1))), 0), min(int(round(max(x0, x1))), width)
    ya, yb = max(int(round(min(y0, y1))), 0), min(int(round(max(y0, y1))), height)
    if xa >= xb or ya >= yb:
        return 0
    img[ya:yb, xa:xb] = color
    return (xb - xa) * (yb - ya)


def draw_person(img: np.ndarray, p: Person, t: int, h: float) -> int:
    """Draw figure `p` at frame t with height h pixels (body, head, swinging legs and arms); return pixels drawn."""
    if not p.visible[t]:
        return 0
    phase, s = p.phase[t], p.stride[t]
    legs = (s * np.sin(phase), -s * np.sin(phase))
    arms = (-p.arm_swing[t] * np.sin(phase), p.arm_swing[t] * np.sin(phase))
    if p.legs is not None and not np.isnan(p.legs[t, 0]):
        legs = tuple(p.legs[t])
    if p.arms is not None and not np.isnan(p.arms[t, 0]):
        arms = tuple(p.arms[t])
    bob = 0.02 * abs(np.cos(phase)) * (s > 0.5)          # runners bounce
    hip = np.array([0.0, 0.48 + bob])
    neck = np.array([p.lean[t], 0.84 + bob])
    # local points (forward, up) in person heights
    points = {"hip": hip, "neck": neck, "head": neck + np.array([0.02, 0.09]),
              "shoulder": neck - np.array([0.0, 0.04])}
    for i, a in enumerate(legs):
        points[f"foot{i}"] = hip + 0.48 * np.array([np.sin(a), -np.cos(a)])
    for i, a in enumerate(arms):
        points[f"hand{i}"] = points["shoulder"] + 0.36 * np.array([np.sin(a), -np.cos(a)])
    c, sn = np.cos(p.tilt[t]), np.sin(p.tilt[t])
    f = p.facing[t]

    def to_img(q):  # rotate forward-down about the feet, then to pixels
        u, v = q[0] * c + q[1] * sn, -q[0] * sn + q[1] * c
        return p.x[t] + f * u * h, p.y[t] - v * h

    pt = {k: to_img(q) for k, q in points.items()}
    limb = max(0.8, 0.035 * h)
    col = p.colors
    n = 0
    n += _capsule(img, *pt["hip"], *pt["foot1"], limb, col["legs_far"])
    n += _capsule(img, *pt["shoulder"], *pt["hand1"], limb, col["arms_far"])
    n += _capsule(img, *pt["hip"], *pt["neck"], max(1.2, 0.085 * h), col["shirt"])
    n += _capsule(img, *pt["hip"], *pt["foot0"], limb, col["legs"])
    n += _capsule(img, *pt["shoulder"], *pt["hand0"], limb, col["arms"])
    n += _capsule(img, *pt["head"], *pt["head"], max(1.0, 0.075 * h), col["skin"])
    return n


def draw_vehicle(img: np.ndarray, v: Vehicle, t: int, h: float) -> int:
    """A car seen from the side: body, cabin with windows, turning wheels and a headlight; return pixels drawn."""
    m = h / PERSON_M                                     # pixels per metre
    length, x, y, d = v.length_m * m, v.x[t], v.y, v.direction
    rear, front = x - d * length / 2, x + d * length / 2
    col = v.colors
    n = _rect(img, rear, y - 1.0 * m, front, y - 0.3 * m, col["body"])
    cab0, cab1 = rear + d * 0.18 * length, rear + d * 0.78 * length
    n += _rect(img, cab0, y - 1.5 * m, cab1, y - 0.95 * m, col["body"])
    n += _rect(img, cab0 + d * 0.1 * m, y - 1.42 * m, cab1 - d * 0.1 * m, y - 1.02 * m, col["window"])
    n += _rect(img, front - d * 0.15 * m, y - 0.85 * m, front, y - 0.65 * m, (250, 240, 170))
    angle = (x / (0.33 * m)) * d                         # wheels roll without slipping
    for wx in (rear + d * 0.2 * length, rear + d * 0.8 * length):
        wy = y - 0.33 * m
        n += _capsule(img, wx, wy, wx, wy, 0.33 * m, (25, 25, 28))
        n += _capsule(img, wx - 0.2 * m * np.cos(angle), wy - 0.2 * m * np.sin(angle),
                      wx + 0.2 * m * np.cos(angle), wy + 0.2 * m * np.sin(angle), max(0.7, 0.05 * m), (150, 150, 155))
    return n


def _lit(color, rng, spread=0.1) -> tuple[int, ...]:
    return tuple(int(np.clip(c * (1 + rng.uniform(-spread, spread)), 0, 255)) for c in color)


def make_background(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A plaza seen from above-front: building wall with windows, perspective ground tiles, bench, lamp, bin."""
    width, height = size
    wall_y = int(height * rng.uniform(0.18, 0.28))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.empty((height, width, 3), dtype=np.float64)
    # ground: tiles in perspective, depth ~ 1 / (y - horizon)
    horizon = -0.6 * height
    depth = 1.0 / (yy - horizon)
    gx, gz = (xx - width / 2) * depth * 12.0, depth * 12.0 * 0.6 * height * rng.uniform(3.0, 4.5)
    tile = rng.uniform(0.6, 1.0)
    ix, iz = np.floor(gx / tile), np.floor(gz / tile)
    fx, fz = gx / tile - ix, gz / tile - iz
    base = np.array(_lit(rng.choice([(150, 145, 135), (130, 132, 138), (165, 150, 125), (120, 118, 110)]), rng))
    checker = ((ix + iz) % 2)[..., None] * rng.uniform(-14, 14, size=3)
    img[:] = base + checker
    grout = (np.minimum(fx, 1 - fx) < 0.05) | (np.minimum(fz, 1 - fz) < 0.05)
    img[grout] *= 0.7
    # building wall with a row of windows
    wall = np.array(_lit(rng.choice([(170, 120, 95), (190, 185, 170), (110, 115, 125)]), rng))
    img[:wall_y] = wall
    img[wall_y - 1:wall_y + 1] = wall * 0.5
    win_w, gap = rng.integers(8, 14), rng.integers(6, 12)
    for x0 in range(int(rng.integers(0, gap)), width, int(win_w + gap)):
        img[max(1, wall_y // 5):max(2, wall_y - wall_y // 4), x0:x0 + win_w] = (60, 75, 95)
    img += rng.normal(0.0, 5.0, size=img.shape)     # surface texture (static)
    out = np.clip(img, 0, 255).astype(np.uint8)
    scale = lambda y: 0.16 * (y + 0.6 * height)      # noqa: E731 (same perspective as Scene.scale)
    # bench
    by = rng.uniform(0.35, 0.6) * height
    bx, m = rng.uniform(0.1, 0.9) * width, scale(by) / PERSON_M
    wood, metal = _lit((120, 80, 45), rng), (50, 50, 55)
    _rect(out, bx - 0.9 * m, by - 0.45 * m, bx + 0.9 * m, by - 0.35 * m, wood)
    _rect(out, bx - 0.9 * m, by - 0.9 * m, bx + 0.9 * m, by - 0.75 * m, wood)
    for lx in (bx - 0.75 * m, bx + 0.7 * m):
        _rect(out, lx, by - 0.45 * m, lx + max(1, 0.08 * m), by, metal)
    # lamp post
    ly = rng.uniform(0.3, 0.55) * height
    lx, m = rng.uniform(0.05, 0.95) * width, scale(ly) / PERSON_M
    _rect(out, lx, ly - 3.5 * m, lx + max(1.0, 0.12 * m), ly, (45, 48, 52))
    _rect(out, lx - 0.25 * m, ly - 3.8 * m, lx + 0.35 * m, ly - 3.5 * m, (230, 225, 190))
    # bin
    ty = rng.uniform(0.5, 0.9) * height
    tx, m = rng.uniform(0.05, 0.95) * width, scale(ty) / PERSON_M
    _rect(out, tx, ty - 0.8 * m, tx + 0.5 * m, ty, _lit((40, 80, 50), rng))
    return out


# ----------------------------------------------------------------------------------------- planning

def _colors(rng: np.random.Generator) -> dict:
    shirt = tuple(int(c) for c in rng.integers(20, 235, size=3))
    legs = tuple(int(c) for c in rng.choice([(40, 45, 70), (30, 30, 35), (90, 80, 60), (60, 60, 65), (120, 110, 95)]))
    skin = tuple(int(c) for c in rng.choice([(235, 200, 170), (200, 150, 110), (140, 95, 65), (95, 65, 45)]))
    dark = lambda c: tuple(int(v * 0.75) for v in c)  # noqa: E731 (far limbs a little darker)
    return {"shirt": shirt, "arms": shirt, "arms_far": dark(shirt), "legs": legs, "legs_far": dark(legs), "skin": skin}


def _person(n: int, rng: np.random.Generator) -> Person:
    zeros = np.zeros(n)
    return Person(x=zeros.copy(), y=zeros.copy(), phase=zeros.copy(), stride=zeros.copy(), arm_swing=zeros.copy(),
                  lean=zeros.copy(), tilt=zeros.copy(), facing=np.ones(n), visible=np.ones(n, dtype=bool),
                  colors=_colors(rng))


def _walk(p: Person, scene: Scene, frames: slice, x0: float, y0: float, mps: float, heading: float,
          rng: np.random.Generator, phase0: float = 0.0, stride: float = 0.35) -> tuple[float, float]:
    """Fill frames of p's track walking from (x0, y0) along `heading` (radians, 0 = right); return the end point."""
    idx = np.arange(frames.start, frames.stop)
    x, y = x0, y0
    cadence = mps / 0.75 / 2                       # gait cycles per second for a 0.75 m step
    for k, t in enumerate(idx):
        m = scene.scale(y) / PERSON_M
        p.x[t], p.y[t] = x, y
        p.phase[t] = phase0 + 2 * np.pi * cadence * k / scene.fps
        side = max(0.3, abs(np.cos(heading)))      # walking towards the camera shows less leg swing
        p.stride[t], p.arm_swing[t] = stride * side, 0.8 * stride * side
        p.facing[t] = 1.0 if np.cos(heading) >= 0 else -1.0
        x += np.cos(heading) * mps * m / scene.fps
        y += np.sin(heading) * mps * m / scene.fps * 0.5   # depth moves look slower on screen
    return x, y


def _stand(p: Person, frames: slice, x: float, y: float, facing: float, phase: float = 0.0) -> None:
    p.x[frames], p.y[frames], p.facing[frames], p.phase[frames] = x, y, facing, phase
    p.stride[frames] = p.arm_swing[frames] = 0.0


def _ground_y(rng, height, lo=0.0, hi=1.0) -> float:
    top = 0.3 * height + 8
    return float(top + rng.uniform(lo, hi) * (0.97 * height - top))


def _walker(scene: Scene, rng: np.random.Generator) -> Person:
    """A normal passer-by: walks across in any direction, sometimes pausing, sometimes already in view."""
    n, (width, height) = scene.num_frames, scene.size
    p = _person(n, rng)
    heading = rng.choice([0.0, np.pi]) + rng.uniform(-0.5, 0.5)
    y = _ground_y(rng, height)
    x = rng.uniform(-0.1, 1.1) * width
    mps = rng.uniform(*WALK_MPS)
    if rng.random() < 0.3:                         # pause for a while (waiting, looking around)
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(scene.fps, 4 * scene.fps)))
        x, y = _walk(p, scene, slice(0, a), x, y, mps, heading, rng)
        _stand(p, slice(a, b), x, y, 1.0 if np.cos(heading) >= 0 else -1.0)
        _walk(p, scene, slice(b, n), x, y, mps, heading, rng)
    else:
        _walk(p, scene, slice(0, n), x, y, mps, heading, rng, phase0=rng.uniform(0, 2 * np.pi))
    p.y[:] = np.clip(p.y, 0.3 * height + 4, height + 10)
    return p


def _event_window(rng, n: int, length: int) -> tuple[int, int]:
    """A start frame and length for an event of about `length` frames, leaving normal frames around it."""
    length = max(4, min(length, n - max(2, n // 5)))
    lo, hi = max(1, int(0.15 * n)), max(2, n - length - max(1, int(0.1 * n)))
    start = int(rng.integers(lo, max(lo + 1, hi)))
    return start, min(length, n - 1 - start)


def _visible_frames(scene: Scene, draw) -> list[int]:
    """Frames in which `draw(canvas, t)` puts at least one pixel inside the picture."""
    width, height = scene.size
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    return [t for t in range(scene.num_frames) if draw(canvas, t) > 0]


def _runs(frames: list[int]) -> list[list[int]]:
    """Consecutive frame numbers as inclusive [start, end] pairs."""
    runs: list[list[int]] = []
    for t in frames:
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return runs


def _plan_anomaly(scene: Scene, rng: np.random.Generator) -> None:
    n, (width, height), fps = scene.num_frames, scene.size, scene.fps
    kind = scene.kind
    if kind in ("running", "vehicle"):
        y = _ground_y(rng, height, 0.2, 1.0)
        h = float(scene.scale(y))
        direction = int(rng.choice([-1, 1]))
        mps = rng.uniform(*(RUN_MPS if kind == "running" else VEHICLE_MPS))
        speed = mps * h / PERSON_M / fps              # pixels per frame
        half = (0.7 * h) if kind == "running" else (0.6 * 4.5 * h / PERSON_M)
        crossing = int(np.ceil((width + 2 * half) / speed))
        start, _ = _event_window(rng, n, crossing)
        t = np.arange(n) - start
        x = (-half + t * speed) if direction > 0 else (width + half - t * speed)
        if kind == "running":
            p = _person(n, rng)
            p.x[:], p.y[:], p.facing[:] = x, y, direction
            p.phase[:] = 2 * np.pi * (mps / 1.6 / 2) * t / fps
            p.stride[:], p.arm_swing[:], p.lean[:] = 0.75, 1.0, 0.08
            p.visible[:] = (t >= 0)
            scene.anomaly_actors, scene.normal_actors = [p], [None]
            visible = _visible_frames(scene, lambda c, k: draw_person(c, p, k, h))
        else:
            body = tuple(int(c) for c in rng.choice([(180, 30, 30), (30, 60, 160), (220, 220, 225), (40, 40, 45),
                                                      (230, 180, 40)]))
            scene.vehicle = Vehicle(x=np.where(t >= 0, x, -1e4), y=y, direction=direction,
                                    length_m=float(rng.uniform(3.8, 4.6)),
                                    colors={"body": body, "window": (120, 160, 190)})
            visible = _visible_frames(scene, lambda c, k: draw_vehicle(c, scene.vehicle, k, h))
        scene.events = _runs(visible)
    elif kind == "fighting":
        start, length = _event_window(rng, n, int(rng.uniform(1.6, 3.0) * fps))
        end = start + length                           # first frame after the fight
        y = _ground_y(rng, height, 0.3, 0.9)
        h = float(scene.scale(y))
        xc = rng.uniform(0.3, 0.7) * width
        gap = 0.3 * h
        pair = []
        for side in (-1, 1):                           # walk in, face each other, walk off the way they came
            p = _person(n, rng)
            mps = rng.uniform(*WALK_MPS)
            speed = mps * h / PERSON_M / fps
            heading = 0.0 if side < 0 else np.pi
            x_meet = xc + side * gap / 2
            _walk(p, scene, slice(0, start), x_meet + side * speed * start, y, mps, heading, rng)
            _stand(p, slice(start, end), x_meet, y, -side)
            _walk(p, scene, slice(end, n), x_meet, y, mps, heading + np.pi, rng)
            p.y[:] = y
            pair.append(p)
        calm = [p.copy() for p in pair]                # normal rendering: they just stand and talk
        for p in pair:                                 # fight: erratic limbs and bodies every frame
            p.arms = np.full((n, 2), np.nan)
            p.legs = np.full((n, 2), np.nan)
            k = length
            p.arms[start:end] = rng.uniform(0.9, 2.3, size=(k, 2)) * rng.choice([1, 1, 1, -0.4], size=(k, 2))
            p.legs[start:end] = rng.uniform(-0.5, 0.5, size=(k, 2))
            p.lean[start:end] = rng.uniform(-0.06, 0.12, size=k)
            p.x[start:end] += rng.choice([-1, 1], size=k) * rng.uniform(0.5, 0.06 * h + 0.5, size=k)
            p.phase[start:end] = rng.uniform(0, 2 * np.pi, size=k)
        scene.anomaly_actors, scene.normal_actors = pair, calm
        scene.events = [[start, end - 1]]
    elif kind == "falling":
        fall, lie, rise = int(rng.uniform(0.4, 0.7) * fps), int(rng.uniform(1.0, 2.2) * fps), int(rng.uniform(0.8, 1.2) * fps)
        start, length = _event_window(rng, n, fall + lie + rise)
        scale_down = length / (fall + lie + rise)
        fall, rise = max(2, int(fall * scale_down)), max(2, int(rise * scale_down))
        lie = max(1, length - fall - rise)
        end = start + fall + lie + rise
        y = _ground_y(rng, height, 0.3, 0.9)
        h = float(scene.scale(y))
        heading = rng.choice([0.0, np.pi])
        facing = 1.0 if heading == 0.0 else -1.0
        x_fall = rng.uniform(0.3, 0.7) * width
        mps = rng.uniform(*WALK_MPS)
        speed = mps * h / PERSON_M / fps
        p = _person(n, rng)
        _walk(p, scene, slice(0, start), x_fall - facing * speed * start, y, mps, heading, rng)
        _stand(p, slice(start, end), x_fall, y, facing)
        _walk(p, scene, slice(end, n), x_fall, y, mps, heading, rng)
        p.y[:] = y
        calm = p.copy()                                # normal rendering: stops for a moment, walks on
        tau = np.arange(1, fall + 1) / fall
        p.tilt[start:start + fall] = 0.5 * np.pi * tau ** 2              # topples, accelerating
        p.tilt[start + fall:start + fall + lie] = 0.5 * np.pi
        p.tilt[start + fall + lie:end] = 0.5 * np.pi * (1 - np.sin(0.5 * np.pi * np.arange(1, rise + 1) / (rise + 1)))
        p.arms = np.full((n, 2), np.nan)
        p.arms[start:end] = [1.4, 2.0]                 # arms out, bracing
        p.legs = np.full((n, 2), np.nan)
        p.legs[start:end] = [0.15, -0.2]
        scene.anomaly_actors, scene.normal_actors = [p], [calm]
        scene.events = [[start, end - 1]]
    elif kind == "explosion":
        start, length = _event_window(rng, n, int(rng.uniform(0.8, 1.6) * fps))
        t = np.arange(n) - start
        on = (t >= 0) & (t < length)
        tau = np.clip(t, 0, None).astype(np.float64)
        intensity = np.where(on, np.minimum(1.0, (tau + 1) / 3) * (0.12 + 0.88 * np.exp(-tau / (0.3 * length))), 0.0)
        r_max = rng.uniform(0.15, 0.3) * width
        radius = np.where(on, 3 + (r_max - 3) * (1 - np.exp(-tau / 4)), 0.0)
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.35, 0.8) * height
        scene.flash = Flash(cx=cx, cy=cy, start=start, intensity=intensity, radius=radius)
        scene.events = [[start, start + length - 1]]
    else:
        raise ValueError(f"unknown anomaly type {kind!r}; choose from {', '.join(ANOMALIES)}")


def plan_scene(kind: str, num_frames: int, size: tuple[int, int], fps: float, seed) -> Scene:
    """All random choices of one video (background, lighting, walkers, the event) from a seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    n = num_frames
    drift = 1 + rng.uniform(0.0, 0.06) * np.sin(2 * np.pi * np.arange(n) / rng.uniform(3, 10) / fps + rng.uniform(0, 6.3))
    gain = rng.uniform(0.65, 1.15) * (1 + rng.uniform(-0.07, 0.07, size=3))[None, :] * drift[:, None]
    scene = Scene(size=(width, height), fps=fps, num_frames=n, kind=kind, background=make_background(size, rng),
                  gain=gain, noise_seed=int(rng.integers(2**31)))
    scene.walkers = [_walker(scene, rng) for _ in range(int(rng.integers(1, 6)))]
    if kind != "normal":
        _plan_anomaly(scene, rng)
    return scene


# ----------------------------------------------------------------------------------------- rendering

def render_frames(scene: Scene, anomaly: bool = True):
    """Yield the scene's frames, uint8 [H, W, 3]; anomaly=False renders the event as normal behaviour."""
    width, height = scene.size
    noise_rng = np.random.default_rng(scene.noise_seed)
    noise = noise_rng.integers(-2, 3, size=(8, height, width, 3)).astype(np.float32)   # sensor noise, cycled
    order = noise_rng.integers(0, 8, size=scene.num_frames)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    actors = scene.anomaly_actors if anomaly else scene.normal_actors
    for t in range(scene.num_frames):
        img = scene.background.copy()
        for p in sorted(scene.walkers, key=lambda q: q.y[t]):                # far first
            draw_person(img, p, t, float(scene.scale(p.y[t])))
        for p in actors:
            if p is not None:
                draw_person(img, p, t, float(scene.scale(p.y[t])))
        if anomaly and scene.vehicle is not None:
            draw_vehicle(img, scene.vehicle, t, float(scene.scale(scene.vehicle.y)))
        out = img.astype(np.float32) * scene.gain[t].astype(np.float32)
        fl = scene.flash
        if anomaly and fl is not None and fl.intensity[t] > 0:
            blob = np.exp(-((xx - fl.cx) ** 2 + (yy - fl.cy) ** 2) / (fl.radius[t] ** 2))
            out += fl.intensity[t] * (blob[..., None] * np.float32([255, 215, 140]) + np.float32([60, 50, 35]))
        out += noise[order[t]]
        yield np.clip(out, 0, 255).astype(np.uint8)


def write_video(path, frames, fps: float, size: tuple[int, int]) -> int:
    """Encode RGB frames as H.264 (yuv420p) mp4 with PyAV, via a temporary name; return the frame count."""
    import av

    path = Path(path)
    count = 0
    container_format = {".mkv": "matroska", ".avi": "avi", ".mov": "mov"}.get(path.suffix.lower(), "mp4")
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast", "threads": "1"}   # threads=1: byte-identical reruns
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def _video_seed(seed: int, split: str | None, kind: str, index: int) -> np.random.SeedSequence:
    # each video has its own stream: changing n_normal does not change the abnormal videos
    return np.random.SeedSequence([seed, zlib.crc32((split or "").encode()), zlib.crc32(kind.encode()), index])


def make_scene_videos(out_dir, n_normal: int = 20, n_abnormal: int = 10, frames: int = 150,
                      size: tuple[int, int] = (160, 120), fps: float = 25, seed: int = 0,
                      split: str | None = None, kinds: tuple[str, ...] = ANOMALIES) -> list[dict]:
    """Write labelled synthetic surveillance mp4s, `gt/<video_id>.json` and `<split or videos>.csv` under out_dir.

    Returns one record per video: path, video_id, label (0/1), anomaly, events (inclusive frame pairs), num_frames.
    """
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size must be even for yuv420p, got {width}x{height}")
    if frames < 16:
        raise ValueError(f"frames must be at least 16 (one clip), got {frames}")
    unknown = [k for k in kinds if k not in ANOMALIES]
    if unknown or (n_abnormal and not kinds):
        raise ValueError(f"anomaly types must be among {', '.join(ANOMALIES)}; got {list(kinds)}")
    out = Path(out_dir)
    (out / "gt").mkdir(parents=True, exist_ok=True)
    prefix = f"{split}_" if split else ""
    jobs = [("normal", i) for i in range(n_normal)] + [(kinds[i % len(kinds)], i) for i in range(n_abnormal)]
    records = []
    for kind, i in jobs:
        video_id = f"{prefix}{kind}_{i:03d}"
        scene = plan_scene(kind, frames, size, fps, _video_seed(seed, split, kind, i))
        path = out / f"{video_id}.mp4"
        count = write_video(path, render_frames(scene), fps, size)
        gt = {"num_frames": count, "events": scene.events}
        write_text(out / "gt" / f"{video_id}.json", json.dumps(gt) + "\n")
        records.append({"path": str(path), "video_id": video_id, "label": int(kind != "normal"), "anomaly": kind,
                        "events": scene.events, "num_frames": count})
    write_records_csv(records, out / f"{split or 'videos'}.csv")
    return records


def write_records_csv(records: list[dict], path) -> Path:
    """CSV with video_id,label,anomaly,num_frames,events,path; events as JSON ([[start, end], ...])."""
    path = Path(path)
    with atomic_open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "label", "anomaly", "num_frames", "events", "path"])
        for r in records:
            w.writerow([r["video_id"], r["label"], r["anomaly"], r["num_frames"], json.dumps(r["events"]), r["path"]])
    return path
