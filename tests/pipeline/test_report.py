"""pipeline.report: PNG plots, and the HTML report checked in headless Chromium (curve drawn, click seeks, warning)."""
from __future__ import annotations

import argparse
import csv
import re
from fractions import Fraction
from pathlib import Path

import av

import numpy as np
import pytest
from PIL import Image

from mgfn.errors import InputError
from pipeline.report import (add_plot_arguments, plot_features, plot_features_main, plot_scores,
                             plot_training_curves, write_report)

NASTY_ID = """<img src=x onerror="alert(1)"> & 'quoted' </script>"""


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_plot_scores_writes_a_png_with_events_and_threshold(tmp_path):
    scores = np.clip(np.sin(np.linspace(0, 6, 300)) ** 2, 0, 1)
    w, h = png_size(plot_scores(scores, 25, events=[[40, 80], [200, 230]], path=tmp_path / "s.png",
                                title="clip <1>", threshold=0.5))
    assert w > 400 and h > 150
    png_size(plot_scores(scores, 25, path=tmp_path / "frames.png", seconds=False))
    png_size(plot_scores([], 25, path=tmp_path / "empty.png"))


def test_plot_row_scores_spread_over_the_spans_of_the_ground_truth(tmp_path, capsys, monkeypatch):
    from pipeline import report
    from pipeline.cli import main as cli

    np.save(tmp_path / "v.npy", np.array([0.1, 0.8, 0.3], np.float32))      # mgfn eval --scores-dir: one per row
    (tmp_path / "gt.json").write_text('{"v": {"num_frames": 100, "events": [[20, 39]], '
                                      '"spans": [[0, 20], [20, 40], [40, 90]]}}')
    drawn = {}
    real = report.plot_scores

    def spy(frames, fps, events=None, **kw):
        drawn.update(frames=np.asarray(frames), events=events)
        return real(frames, fps, events, **kw)

    monkeypatch.setattr(report, "plot_scores", spy)
    assert cli(["plot", "scores", str(tmp_path / "v.npy"), "--gt", str(tmp_path / "gt.json")]) == 0
    png_size(Path(capsys.readouterr().out.strip()))
    np.testing.assert_allclose(drawn["frames"], np.repeat(np.float32([0.1, 0.8, 0.3]), [20, 20, 60]))
    assert drawn["events"] == [[20, 39]]
    assert cli(["plot", "scores", str(tmp_path / "v.npy"), "--out", str(tmp_path / "clips.png")]) == 0
    assert len(drawn["frames"]) == 48 and drawn["events"] is None          # no ground truth: 16-frame clips


def test_plot_training_curves_from_metrics_csv(tmp_path):
    metrics = tmp_path / "metrics.csv"
    with metrics.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "loss_total", "loss_mc", "auc", "pr_auc", "ap", "auc_abnormal", "far", "train_s"])
        for e in range(1, 7):
            w.writerow([e, 1 / e, 0.5 / e, 0.5 + 0.07 * e, 0.3 + 0.08 * e, 0.3 + 0.08 * e, "nan", 0.1, 1.2])
    w, h = png_size(plot_training_curves(metrics, tmp_path / "curves.png"))
    assert w > 500 and h > 150
    empty = tmp_path / "empty.csv"
    empty.write_text("epoch,auc,pr_auc\n")
    with pytest.raises(InputError, match="no epochs"):
        plot_training_curves(empty, tmp_path / "none.png")


@pytest.mark.parametrize("shape", [(20, 10, 64), (20, 64)])
def test_plot_features_shows_either_feature_layout(tmp_path, shape):
    path = tmp_path / "video_i3d.npy"
    np.save(path, np.random.default_rng(0).random(shape, dtype=np.float32))
    w, h = png_size(plot_features(path))                      # default: next to the file
    assert (tmp_path / "video_i3d.png").is_file() and h > w * 0.5
    png_size(plot_features(path, tmp_path / "clip3.png", clip=3))
    with pytest.raises(InputError, match="out of range"):
        plot_features(path, tmp_path / "x.png", clip=20)


def test_plot_features_refuses_other_shapes_and_files(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(InputError, match="expected"):
        plot_features(tmp_path / "flat.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(InputError, match="not a readable"):
        plot_features(tmp_path / "text.npy")


def test_plot_features_command_arguments(tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.ones((4, 8), dtype=np.float32))
    parser = argparse.ArgumentParser()
    add_plot_arguments(parser)
    args = parser.parse_args([str(tmp_path / "f.npy"), "--out", str(tmp_path / "o.png"), "--clip", "-1"])
    assert plot_features_main(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o.png")
    png_size(tmp_path / "o.png")


def write_video(path: Path, n: int, codec: str, seed: int) -> Path:
    """n frames of a drifting gradient with a moving square at 25 fps, 64x48, yuv420p."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:48, 0:64]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            img = np.stack([(xx * 3 + i * 5 + seed * 40) % 256, (yy * 4) % 256, np.full_like(xx, 90)], -1)
            img[(i * 2) % 40:(i * 2) % 40 + 8, 10:18] = 250
            for packet in stream.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def report_videos(folder: Path, suffix: str = ".mp4") -> list[dict]:
    """Two tiny videos (2 s and 1.6 s at 25 fps); names with characters that need quoting in URLs and HTML."""
    codec = {".mp4": "libx264", ".webm": "libvpx"}[suffix]
    out = []
    for i, (n, vid) in enumerate([(50, NASTY_ID), (40, "plain & simple")]):
        path = write_video(folder / "videos" / f"clip #{i} & co{suffix}", n, codec, seed=i)
        scores = np.clip(np.linspace(0, 1, n) + 0.2 * np.sin(np.arange(n)), 0, 1)
        out.append({"video_id": vid, "video_path": str(path), "fps": 25, "frame_scores": scores.tolist(),
                    "events": [[10, 19]] if i == 0 else None,
                    "segments": [{"start_s": 1.2, "end_s": 1.6, "max_score": 0.93},
                                 {"start_s": 0.4, "end_s": 0.8, "max_score": 0.71}]})
    return out


PROVENANCE = {"model_path": "runs/demo/best.pt", "extractor": "i3d_r50_rtfm", "extractor_id": "i3d_r50_rtfm-1a2b3c",
              "weights_name": "random", "weights_digest": None, "random_weights": True}


def test_report_escapes_text_and_links_videos_relative_to_the_page(tmp_path):
    videos = report_videos(tmp_path)
    page = write_report(tmp_path / "report.html", videos, {**PROVENANCE, "note": "a <b> & c"}).read_text()
    assert NASTY_ID not in page and "<img src=x" not in page and "a <b> & c" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &#x27;quoted&#x27;" in page
    assert page.count("</script>") == 2                       # only the two script blocks close
    assert 'src="videos/clip%20%230%20%26%20co.mp4"' in page
    assert 'id="random-weights-warning"' in page
    quiet = write_report(tmp_path / "sub" / "r.html", videos, {**PROVENANCE, "random_weights": False}).read_text()
    assert "random-weights-warning" not in quiet
    assert 'src="../videos/clip%20%230%20%26%20co.mp4"' in quiet
    assert not re.search(r"https?://", quiet.replace("http://www.w3.org/2000/svg", ""))   # nothing external


def test_report_embeds_small_videos_when_asked(tmp_path):
    videos = report_videos(tmp_path)
    sizes = [Path(v["video_path"]).stat().st_size for v in videos]
    page = write_report(tmp_path / "r.html", videos, {}, embed_videos=True, embed_limit=max(sizes)).read_text()
    assert page.count('src="data:video/mp4;base64,') == 2
    page = write_report(tmp_path / "r.html", videos, {}, embed_videos=True, embed_limit=min(sizes) - 1).read_text()
    assert page.count('src="data:video/mp4;base64,') == 0


def test_report_in_headless_chromium(tmp_path):
    from browser import chromium_browser, serve_folder

    with chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        problems: list[str] = []
        dialogs: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto("about:blank")
        mp4 = page.evaluate("() => document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64001E\"')")
        videos = report_videos(tmp_path, ".mp4" if mp4 else ".webm")      # Chromium without H.264: VP8 instead
        sizes = [Path(v["video_path"]).stat().st_size for v in videos]
        # the first video embedded in the page, the second linked by a relative URL
        write_report(tmp_path / "report.html", videos, PROVENANCE, title="run <1>", embed_videos=True,
                     embed_limit=sizes[0] if sizes[0] < sizes[1] else sizes[0] - 1, threshold=0.5)
        with serve_folder(tmp_path) as url:
            response = page.goto(url + "report.html")
            assert response is not None and response.ok
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 1)",
                                   timeout=15_000)
            assert page.locator("#random-weights-warning").is_visible()
            assert page.locator("h2").first.text_content() == NASTY_ID
            assert page.title() == "run <1>"
            for i, video in enumerate(videos):
                section = page.locator(f"section#video-{i}")
                duration = section.locator("video").evaluate("v => v.duration")
                assert duration == pytest.approx(len(video["frame_scores"]) / 25, abs=0.05)
                curve = section.locator("svg.curve path.score")
                assert len(curve.get_attribute("d")) > 100
                assert curve.bounding_box()["width"] > 500
                section.locator("svg.curve").scroll_into_view_if_needed()
                plot = section.locator("svg.curve rect.plot").bounding_box()
                for fraction in (0.3, 0.75):
                    page.mouse.click(plot["x"] + fraction * plot["width"], plot["y"] + plot["height"] / 2)
                    now = section.locator("video").evaluate("v => v.currentTime")
                    assert now == pytest.approx(fraction * duration, abs=0.05), (i, fraction)
                    cursor = section.locator("svg.curve line.cursor").bounding_box()
                    assert cursor["x"] == pytest.approx(plot["x"] + fraction * plot["width"], abs=3)
                section.locator("ol.segments button").nth(1).click()
                assert section.locator("video").evaluate("v => v.currentTime") == pytest.approx(0.4, abs=0.01)
            # the cursor follows playback
            section = page.locator("section#video-0")
            section.locator("video").evaluate("v => { v.currentTime = 0; return v.play(); }")
            page.wait_for_function("document.querySelector('#video-0 video').currentTime > 0.5", timeout=10_000)
            section.locator("video").evaluate("v => v.pause()")
            t = section.locator("video").evaluate("v => v.currentTime")
            readout = section.locator(".readout").text_content()
            assert readout.startswith(f"{t:.2f} s")
            x = float(section.locator("svg.curve line.cursor").get_attribute("x1"))
            assert x > 46 + 0.2 * (990 - 46)
        assert problems == []
        assert dialogs == []
