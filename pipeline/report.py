"""Plots (matplotlib, Agg) and the self-contained HTML report of a scoring run.

- `plot_scores`: a video's anomaly score over time with ground-truth events shaded red (as in the MGFN paper).
- `plot_training_curves`: per-epoch ROC-AUC / PR-AUC / AP from a run's `metrics.csv`.
- `plot_features`: a feature file `[T, crops, D]` as a clips x channels heat map, per-clip mean, one clip's profile.
- `write_report`: one HTML page per scoring run: each video with its score curve under it, a cursor that follows
  playback, click-to-seek on the curve and on the top segments, provenance at the top (date, code version, model,
  training settings, and a banner for random weights), the videos that failed with their reasons. Videos browsers
  cannot play get an H.264 preview beside the page (pipeline.preview). No external resources: the page works from a
  file or any static server, offline.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import json
import math
import os
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")        # files only, never a window; safe in threads and on headless machines
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    from mgfn.atomic import atomic_open

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:                         # a file object: matplotlib is told the format
        fig.savefig(f, format=path.suffix[1:].lower() or "png", dpi=100, bbox_inches="tight")
    return path


# --------------------------------------------------------------------------------------------- plots

def plot_scores(frame_scores, fps: float, events=None, path="scores.png", title: str | None = None,
                threshold: float | None = None, seconds: bool = True) -> Path:
    """Save a video's per-frame anomaly score curve with ground-truth events ([[start, end]] frames) shaded red."""
    plt = _pyplot()
    scores = np.asarray(frame_scores, dtype=np.float64).ravel()                  # [frames]
    unit = 1.0 / fps if seconds else 1.0
    x = np.arange(len(scores)) * unit
    fig, ax = plt.subplots(figsize=(8, 2.6))
    for i, (start, end) in enumerate(events or []):
        ax.axvspan(start * unit, (end + 1) * unit, color="tab:red", alpha=0.22, lw=0,
                   label="ground truth" if i == 0 else None)
    ax.plot(x, scores, color="tab:blue", lw=1.4, label="anomaly score")
    if threshold is not None:
        ax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    finite = scores[np.isfinite(scores)]
    top = max(1.0, float(finite.max())) if finite.size else 1.0
    ax.set_ylim(min(0.0, float(finite.min())) if finite.size else 0.0, top * 1.02)
    ax.set_xlim(0, max(len(scores), 1) * unit)
    ax.set_xlabel("time (s)" if seconds else "frame")
    ax.set_ylabel("anomaly score")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def _read_metrics(metrics_csv) -> dict[str, np.ndarray]:
    with Path(metrics_csv).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        from mgfn.errors import InputError
        raise InputError(f"{metrics_csv}: no epochs recorded yet")

    def number(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    return {k: np.array([number(r.get(k)) for r in rows]) for k in rows[0]}


def plot_training_curves(metrics_csv, path="curves.png") -> Path:
    """Save per-epoch ROC-AUC and PR-AUC (and AP, validation AUC where recorded) of a run's metrics.csv, and each
    loss term on a panel of its own: the terms differ by orders of magnitude (the contrastive term ~4e4, the others
    ~1), so one shared axis would flatten all but the largest to zero."""
    plt = _pyplot()
    m = _read_metrics(metrics_csv)
    epoch = m["epoch"]
    losses = [k for k in m if k.startswith("loss_") and not np.isnan(m[k]).all()]
    panels = 1 + len(losses)
    ncols = min(panels, 4)
    nrows = -(-panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.0, 3.6 * ncols), 3.0 * nrows), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.remove()
    ax = axes[0, 0]
    labels = {"auc": "ROC-AUC", "pr_auc": "PR-AUC", "ap": "AP", "val_auc": "validation AUC", "auc_abnormal": "AUC (abnormal videos)"}
    for key, label in labels.items():
        if key in m and not np.isnan(m[key]).all():
            ax.plot(epoch, m[key], marker="o", ms=3, lw=1.4, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.set_title("evaluation")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    for i, key in enumerate(losses, 1):
        ax = axes.flat[i]
        ax.plot(epoch, m[key], lw=1.4, color="tab:red" if key == "loss_total" else "tab:purple")
        ax.set_xlabel("epoch")
        ax.set_title(f"loss: {key[5:]}", fontsize=10)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
        ax.grid(alpha=0.25)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def load_features(npy_path) -> np.ndarray:
    """A feature file as [T, D] float32 (crops averaged); InputError for anything else."""
    from mgfn.errors import InputError

    try:
        features = np.load(npy_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{npy_path}: not a readable .npy feature file ({exc})") from None
    if features.ndim == 3:
        features = features.mean(axis=1)                                          # [T, crops, D] -> [T, D]
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise InputError(f"{npy_path}: expected [T, crops, D] or [T, D] features, got shape {tuple(features.shape)}")
    return np.asarray(features, dtype=np.float32)


def plot_features(npy_path, out_path=None, clip: int | None = None) -> Path:
    """Save a heat map (clips x channels), the per-clip channel mean and one clip's channel profile of a feature file.

    clip=None shows the clip with the largest feature magnitude (what MGFN's top-k selection looks at).
    """
    from mgfn.errors import InputError

    plt = _pyplot()
    features = load_features(npy_path)                                            # [T, D]
    t, d = features.shape
    norms = np.linalg.norm(features, axis=1)                                      # [T]
    chosen = int(np.argmax(norms)) if clip is None else clip
    if not -t <= chosen < t:
        raise InputError(f"{npy_path}: clip {clip} is out of range (the file has {t} clips)")
    chosen %= t
    out_path = Path(out_path) if out_path else Path(npy_path).with_suffix(".png")
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), gridspec_kw={"height_ratios": [3, 1.3, 1.3]})
    lo, hi = np.percentile(features, [1, 99])
    im = axes[0].imshow(features, aspect="auto", interpolation="nearest", cmap="viridis", vmin=lo, vmax=hi)
    axes[0].axhline(chosen, color="tab:red", lw=0.8, alpha=0.8)
    axes[0].set_ylabel("clip")
    axes[0].set_xlabel("channel")
    axes[0].set_title(f"{Path(npy_path).name}: {t} clips x {d} channels (crop-averaged)")
    fig.colorbar(im, ax=axes[0], fraction=0.03, pad=0.01)
    axes[1].plot(np.arange(t), features.mean(axis=1), color="tab:blue", lw=1.2, label="mean over channels")
    axes[1].axvline(chosen, color="tab:red", lw=0.8)
    twin = axes[1].twinx()
    twin.plot(np.arange(t), norms, color="tab:orange", lw=1.0, alpha=0.8, label="L2 norm")
    twin.set_ylabel("L2 norm", color="tab:orange")
    axes[1].set_xlabel("clip")
    axes[1].set_ylabel("mean", color="tab:blue")
    axes[1].set_xlim(-0.5, t - 0.5)
    axes[2].plot(np.arange(d), features[chosen], color="tab:green", lw=0.8)
    axes[2].set_xlim(0, d - 1)
    axes[2].set_xlabel("channel")
    axes[2].set_ylabel("value")
    axes[2].set_title(f"clip {chosen}" + (" (largest magnitude)" if clip is None else ""))
    fig.tight_layout()
    try:
        return _save(fig, out_path)
    finally:
        plt.close(fig)


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `mgfn plot features FILE.npy [--out PNG] [--clip N]`."""
    parser.add_argument("file", type=Path, help="feature file [T, crops, D] or [T, D] (.npy)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: FILE with .png)")
    parser.add_argument("--clip", type=int, default=None,
                        help="clip whose channel profile to show (default: the one with the largest magnitude)")


def plot_features_main(args) -> int:
    """`mgfn plot features`: write the PNG and print its path."""
    path = plot_features(args.file, args.out, args.clip)
    print(path)
    return 0


# --------------------------------------------------------------------------------------------- HTML report

PROVENANCE_LABELS = [("date", "date"), ("code_version", "code version"), ("model", "model"), ("model_path", "model"),
                     ("model_source", "model copied from"), ("model_epoch", "model checkpoint"),
                     ("training", "training settings"), ("model_settings", "model settings"),
                     ("extractor", "extractor"), ("extractor_name", "extractor"), ("extractor_id", "extractor id"),
                     ("weights", "weights"), ("weights_name", "weights"), ("weights_digest", "weights digest"),
                     ("random_weights", "random weights")]

# the plot area of every curve, in SVG user units (the SVG scales to the page width)
_W, _H, _X0, _X1, _Y0, _Y1 = 1000, 190, 46, 990, 10, 160


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _video_src(video_path, out_dir: Path, embed: bool, embed_limit: int, kind: str) -> str:
    """The src of a <video>: a data: URI (of MIME type `kind`) when embedding a small file, else a URL relative to
    the report."""
    path = Path(video_path)
    if embed and path.is_file() and path.stat().st_size <= embed_limit:
        return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
    try:
        rel = os.path.relpath(path.resolve(), out_dir.resolve())
    except ValueError:                                    # another drive (Windows): absolute file URL
        return path.resolve().as_uri()
    return quote(Path(rel).as_posix(), safe="/")          # '#', '?', '&', spaces in names survive as a URL


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


def _curve_svg(scores: np.ndarray, fps: float, events, threshold: float | None, label: str) -> str:
    """Inline SVG: time axis, ground-truth events in red, the score line, an optional threshold and a cursor."""
    n = len(scores)
    duration = n / fps
    finite = scores[np.isfinite(scores)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = max(1.0, float(finite.max())) if finite.size else 1.0
    sx = lambda t: _X0 + (_X1 - _X0) * (t / duration if duration else 0)     # noqa: E731
    sy = lambda v: _Y1 - (_Y1 - _Y0) * (v - lo) / (hi - lo)                   # noqa: E731
    parts = [f'<svg class="curve" viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(label)}" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<rect class="plot" x="{_X0}" y="{_Y0}" width="{_X1 - _X0}" height="{_Y1 - _Y0}"/>']
    for start, end in events or []:
        x0, x1 = sx(start / fps), sx((end + 1) / fps)
        parts.append(f'<rect class="event" x="{x0:.1f}" y="{_Y0}" width="{max(x1 - x0, 1):.1f}" '
                     f'height="{_Y1 - _Y0}"><title>ground truth: frames {int(start)}-{int(end)}</title></rect>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<line class="grid" x1="{_X0}" x2="{_X1}" y1="{sy(v):.1f}" y2="{sy(v):.1f}"/>'
                     f'<text class="tick" x="{_X0 - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">{v:.2g}</text>')
    step = _nice_step(duration)
    t = 0.0
    while t <= duration + 1e-9:
        parts.append(f'<line class="tickmark" x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{_Y1}" y2="{_Y1 + 5}"/>'
                     f'<text class="tick" x="{sx(t):.1f}" y="{_Y1 + 18}" text-anchor="middle">{t:g}s</text>')
        t = round(t + step, 9)
    if n:
        # at most ~2 points per user unit: keep each bin's maximum so short peaks stay visible
        bins = min(n, 2 * (_X1 - _X0))
        edges = np.linspace(0, n, bins + 1).astype(int)
        peak = np.maximum.reduceat(np.nan_to_num(scores, nan=lo), edges[:-1])    # [bins]
        xs = _X0 + (_X1 - _X0) * (edges[:-1] + edges[1:]) / 2 / n
        d = "M" + " L".join(f"{x:.1f},{sy(v):.1f}" for x, v in zip(xs, peak))
        parts.append(f'<path class="score" d="{d}"/>')
    if threshold is not None:
        parts.append(f'<line class="threshold" x1="{_X0}" x2="{_X1}" y1="{sy(threshold):.1f}" y2="{sy(threshold):.1f}">'
                     f'<title>threshold {threshold:g}</title></line>')
    parts.append(f'<line class="cursor" x1="{_X0}" x2="{_X0}" y1="{_Y0}" y2="{_Y1}"/>')
    parts.append(f'<rect class="hit" x="{_X0}" y="0" width="{_X1 - _X0}" height="{_H}"/></svg>')
    return "".join(parts)


def _json_for_script(value) -> str:
    # inside <script>, '<', '>' and '&' must not appear raw ("</script>" in a video id would end the block)
    return json.dumps(value, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c").replace(
        ">", "\\u003e").replace("&", "\\u0026")


def _provenance_value(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _provenance_html(provenance: dict) -> str:
    rows, seen = [], set()
    for key, label in PROVENANCE_LABELS:
        if key in provenance:
            rows.append((label, provenance[key]))
            seen.add(key)
    rows += [(k.replace("_", " "), v) for k, v in provenance.items() if k not in seen]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_provenance_value(v))}</td></tr>" for k, v in rows)
    banner = ""
    if provenance.get("random_weights"):
        banner = ('<div id="random-weights-warning" class="warning" role="alert"><strong>Random weights.</strong> '
                  "The feature extractor ran with randomly initialised weights (<code>--weights random</code>), "
                  "not pretrained ones: these scores say nothing about real anomalies.</div>")
    return banner + f'<table class="provenance">{cells}</table>'


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1000px;padding:16px;color:#222}
h1{font-size:22px;margin:0 0 10px} h2{font-size:17px;margin:0 0 8px;word-break:break-all}
.warning{background:#b00020;color:#fff;padding:12px 14px;border-radius:6px;margin:10px 0;font-size:15px}
.warning code{color:#fff}
table{border-collapse:collapse;margin:6px 0 14px} th,td{text-align:left;padding:3px 10px 3px 0;vertical-align:top}
th{color:#555;font-weight:600} td{word-break:break-all}
section.video{border-top:1px solid #ddd;padding:16px 0}
video{width:100%;max-height:360px;background:#000;display:block}
svg.curve{width:100%;height:auto;display:block;cursor:crosshair;user-select:none}
svg .plot{fill:#fafafa;stroke:#ccc} svg .grid{stroke:#e4e4e4} svg .tickmark{stroke:#999}
svg .tick{font-size:12px;fill:#666} svg .event{fill:#e53935;fill-opacity:.22}
svg .score{fill:none;stroke:#1e63c6;stroke-width:1.8;vector-effect:non-scaling-stroke;stroke-linejoin:round}
svg .threshold{stroke:#555;stroke-dasharray:6 4} svg .cursor{stroke:#111;stroke-width:1.5}
svg .hit{fill:transparent}
.readout{color:#444;font-variant-numeric:tabular-nums;margin:2px 0 6px}
.legend span{display:inline-block;margin-right:14px;color:#555}
.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
ol.segments{margin:4px 0;padding-left:22px} ol.segments button{font:inherit;background:none;border:0;padding:0;
color:#1e63c6;cursor:pointer;text-decoration:underline}
.muted{color:#777}
.video-note{background:#fff3cd;color:#5c4400;padding:6px 10px;border-radius:4px;margin:6px 0}
table.failed td:first-child{font-weight:600;padding-right:16px}
"""

SCRIPT = """
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var X0 = data.plot.x0, X1 = data.plot.x1;
  document.querySelectorAll("section.video").forEach(function (section) {
    var d = data.videos[Number(section.dataset.index)];
    var video = section.querySelector("video");
    var svg = section.querySelector("svg.curve");
    var cursor = svg.querySelector(".cursor");
    var readout = section.querySelector(".readout");
    function show(t) {
      var f = d.duration > 0 ? Math.min(Math.max(t / d.duration, 0), 1) : 0;
      var x = (X0 + (X1 - X0) * f).toFixed(2);
      cursor.setAttribute("x1", x);
      cursor.setAttribute("x2", x);
      var frame = Math.min(d.scores.length - 1, Math.max(0, Math.floor(t * d.fps + 1e-6)));
      var score = d.scores.length ? d.scores[frame] : NaN;
      readout.textContent = t.toFixed(2) + " s, frame " + frame + ", score " +
        (score === null || isNaN(score) ? "-" : score.toFixed(3));
    }
    function seek(t) {
      t = Math.min(Math.max(t, 0), d.duration);
      video.currentTime = t;
      show(t);
    }
    svg.addEventListener("click", function (event) {
      var point = svg.createSVGPoint();
      point.x = event.clientX;
      point.y = event.clientY;
      var p = point.matrixTransform(svg.getScreenCTM().inverse());
      seek((p.x - X0) / (X1 - X0) * d.duration);
    });
    var playing = false;
    function follow() {
      show(video.currentTime);
      if (playing) { window.requestAnimationFrame(follow); }
    }
    video.addEventListener("play", function () { playing = true; window.requestAnimationFrame(follow); });
    video.addEventListener("pause", function () { playing = false; show(video.currentTime); });
    video.addEventListener("ended", function () { playing = false; show(video.currentTime); });
    video.addEventListener("timeupdate", function () { show(video.currentTime); });
    video.addEventListener("seeked", function () { show(video.currentTime); });
    section.querySelectorAll("[data-seek]").forEach(function (button) {
      button.addEventListener("click", function () { seek(Number(button.dataset.seek)); });
    });
    show(0);
  });
})();
"""


def write_report(out_html, videos: list[dict], provenance: dict | None = None, title: str = "Anomaly scores",
                 embed_videos: bool = False, embed_limit: int = 8 << 20, threshold: float | None = None,
                 failed=()) -> Path:
    """Write one self-contained HTML page: provenance, the videos that failed, then each video with its score curve,
    cursor and top segments.

    videos: dicts with video_id, video_path, fps, frame_scores, and optionally events ([[start, end]] frames)
    and segments ([{start_s, end_s, max_score}]). failed: (video id, reason) pairs. embed_videos puts files up to
    embed_limit bytes in the page. A video browsers cannot play (AVI, MKV, MPEG-4 Part 2, frame folders, ...) is
    shown as an H.264 preview made in OUT/previews/ (pipeline.preview), or with a note saying why it cannot play.
    Linked videos seek when the page is opened as a file or served with HTTP Range support (`python -m http.server`
    has none: Chromium then cannot seek them); embedded ones seek anywhere. The provenance gets the date and the
    code version unless it has them.
    """
    from pipeline.preview import preview_for
    from pipeline.version import code_version

    out_html = Path(out_html)
    out_dir = out_html.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = dict(provenance or {})
    provenance.setdefault("date", time.strftime("%Y-%m-%d %H:%M:%S %z"))
    provenance.setdefault("code_version", code_version())
    payload, sections, summary = [], [], []
    for i, v in enumerate(videos):
        video_id, fps = str(v["video_id"]), float(v["fps"])
        scores = np.asarray(v["frame_scores"], dtype=np.float64).ravel()        # [frames]
        events = [[int(s), int(e)] for s, e in (v.get("events") or [])]
        segments = sorted(v.get("segments") or [], key=lambda s: -float(s["max_score"]))
        shown = preview_for(v["video_path"], out_dir, fps)
        src = _video_src(shown.path, out_dir, embed_videos, embed_limit, shown.mime)
        if shown.note:
            video_note = f'<p class="video-note" role="note">{_e(shown.note)}</p>'
        elif shown.preview_of:
            video_note = (f'<p class="muted">Shown: an H.264 preview of {_e(shown.preview_of)}, '
                          'which browsers do not play as it is.</p>')
        else:
            video_note = ""
        duration = len(scores) / fps
        payload.append({"fps": fps, "duration": duration,
                        "scores": [None if not math.isfinite(s) else round(float(s), 5) for s in scores]})
        finite = scores[np.isfinite(scores)]
        peak = float(finite.max()) if finite.size else math.nan
        summary.append(f'<tr><td><a href="#video-{i}">{_e(video_id)}</a></td><td>{len(scores)}</td>'
                       f'<td>{duration:.1f} s</td><td>{peak:.3f}</td><td>{len(events) or ""}</td></tr>')
        items = "".join(
            f'<li><button type="button" data-seek="{float(s["start_s"]):.3f}">{float(s["start_s"]):.2f}'
            f'&ndash;{float(s["end_s"]):.2f} s</button> <span class="muted">max score {float(s["max_score"]):.3f}'
            f'</span></li>' for s in segments)
        segment_html = (f'<h3>Top anomalous segments</h3><ol class="segments">{items}</ol>' if segments
                        else '<p class="muted">No anomalous segments listed.</p>')
        legend = ('<div class="legend"><span><i style="background:#1e63c6"></i>anomaly score</span>'
                  + ('<span><i style="background:rgba(229,57,53,.35)"></i>ground truth</span>' if events else "")
                  + (f'<span><i style="border-top:2px dashed #555;height:0"></i>threshold {threshold:g}</span>'
                     if threshold is not None else "") + "</div>")
        sections.append(
            f'<section class="video" id="video-{i}" data-index="{i}"><h2>{_e(video_id)}</h2>'
            f'<video controls preload="metadata" playsinline><source src="{_e(src)}" type="{_e(shown.mime)}">'
            f'This browser cannot play {_e(Path(v["video_path"]).name)}.</video>{video_note}'
            f'{_curve_svg(scores, fps, events, threshold, f"anomaly score of {video_id}")}'
            f'<div class="readout" aria-live="off"></div>{legend}{segment_html}</section>')
    failed_html = ""
    if failed:
        rows = "".join(f"<tr><td>{_e(vid)}</td><td>{_e(reason)}</td></tr>" for vid, reason in failed)
        failed_html = (f'<h2 id="failed">Failed videos ({len(failed)})</h2>'
                       '<p class="muted">These videos were not scored.</p>'
                       f'<table class="failed" id="failed-videos"><tr><th>video</th><th>reason</th></tr>{rows}</table>')
    data = {"plot": {"x0": _X0, "x1": _X1}, "videos": payload}
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{CSS}</style></head><body>'
            f'<h1>{_e(title)}</h1>{_provenance_html(provenance)}'
            f'<table class="summary"><tr><th>video</th><th>frames</th><th>length</th><th>max score</th>'
            f'<th>events</th></tr>{"".join(summary)}</table>{failed_html}'
            f'<p class="muted">Click a curve or a segment to jump there; the black line follows playback.</p>'
            f'{"".join(sections)}'
            f'<script type="application/json" id="report-data">{_json_for_script(data)}</script>'
            f'<script>{SCRIPT}</script></body></html>\n')
    from mgfn.atomic import write_text

    write_text(out_html, page)
    return out_html
