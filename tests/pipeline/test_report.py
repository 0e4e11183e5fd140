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


def _write_metrics(path: Path, terms: dict) -> Path:
    """metrics.csv with 6 epochs: evaluation columns and the given loss terms (name -> scale)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *[f"loss_{k}" for k in terms], "auc", "pr_auc", "ap", "train_s"])
        for e in range(1, 7):
            w.writerow([e, *[scale * (1 + 0.1 * np.sin(e + i)) for i, scale in enumerate(terms.values())],
                        0.5 + 0.05 * e, 0.3 + 0.05 * e, 0.3 + 0.05 * e, 1.0])
    return path


def test_plot_training_curves_puts_loss_terms_of_different_scale_on_separate_axes(tmp_path, monkeypatch):
    """The contrastive term (~38,000) once shared an axis with terms near 1 and flattened them to a line at zero."""
    from pipeline import report

    metrics = _write_metrics(tmp_path / "metrics.csv", {"total": 0.8, "bce": 0.6, "con": 38_000.0, "smooth": 2.0})
    figures = []
    real = report._save
    monkeypatch.setattr(report, "_save", lambda fig, path: (figures.append(fig), real(fig, path))[1])
    png_size(plot_training_curves(metrics, tmp_path / "curves.png"))
    (fig,) = figures
    axes_of = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            axes_of.setdefault(ax.get_title(), []).append(line)
    loss_axes = {title: lines for title, lines in axes_of.items() if title.startswith("loss")}
    assert set(loss_axes) == {"loss: total", "loss: bce", "loss: con", "loss: smooth"}
    for title, lines in loss_axes.items():
        assert len(lines) == 1, title                            # one term per axis
        y = lines[0].get_ydata()
        lo, hi = lines[0].axes.get_ylim()
        assert hi - lo < 10 * (y.max() - y.min()), title         # the axis spans its own term, not the largest one
    assert axes_of["evaluation"][0].axes.get_ylim()[1] <= 1.05


def test_report_lists_failed_videos_with_their_reasons(tmp_path):
    videos = report_videos(tmp_path)[:1]
    failed = [("missing", "missing.mp4 does not exist"), (NASTY_ID, "decode error: <bad> & worse")]
    page = write_report(tmp_path / "report.html", videos, PROVENANCE, failed=failed).read_text()
    table = page[page.index('<table class="failed" id="failed-videos">'):]
    table = table[:table.index("</table>")]
    assert "Failed videos (2)" in page
    assert "<td>missing</td><td>missing.mp4 does not exist</td>" in table
    assert "decode error: &lt;bad&gt; &amp; worse" in table and "<bad>" not in page
    assert "failed-videos" not in write_report(tmp_path / "ok.html", videos, PROVENANCE).read_text()
    # a report of failures only still says what failed
    assert "missing.mp4 does not exist" in write_report(tmp_path / "none.html", [], {}, failed=failed[:1]).read_text()


def test_report_provenance_has_date_code_version_and_says_yes_or_no(tmp_path):
    from pipeline.version import package_version

    page = write_report(tmp_path / "r.html", [], {**PROVENANCE, "training": "epochs: 8; seed: 0"}).read_text()
    cells = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", page))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", cells["date"])
    assert cells["code version"].startswith(package_version())
    assert cells["random weights"] == "yes" and cells["training settings"] == "epochs: 8; seed: 0"
    assert "True" not in page and "False" not in page
    page = write_report(tmp_path / "r.html", [], {**PROVENANCE, "random_weights": False}).read_text()
    assert "<th>random weights</th><td>no</td>" in page


def avi_video(folder: Path, n: int = 30) -> dict:
    """A tiny AVI with MPEG-4 Part 2 video (as vtest.avi): Chromium cannot play it as it is."""
    path = write_video(folder / "videos" / "street cam.avi", n, "mpeg4", seed=3)
    return {"video_id": "street cam", "video_path": str(path), "fps": 25, "frame_scores": np.linspace(0, 1, n).tolist()}


def test_report_shows_an_avi_as_an_h264_preview_beside_the_page(tmp_path):
    video = avi_video(tmp_path)
    page = write_report(tmp_path / "out" / "report.html", [video], PROVENANCE).read_text()
    (preview,) = (tmp_path / "out" / "previews").glob("*.mp4")
    assert not list((tmp_path / "out" / "previews").glob(".*"))              # written under a temporary name
    with av.open(str(preview)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == 30
    assert f'<source src="previews/{preview.name}" type="video/mp4">' in page
    assert "H.264 preview of street cam.avi (AVI with mpeg4 video)" in page
    # made once: a second report reuses it
    stamp = preview.stat().st_mtime_ns
    write_report(tmp_path / "out" / "report.html", [video], PROVENANCE)
    assert preview.stat().st_mtime_ns == stamp and len(list((tmp_path / "out" / "previews").iterdir())) == 1


def test_report_says_why_a_video_cannot_play_when_no_preview_can_be_made(tmp_path):
    broken = tmp_path / "videos" / "broken.avi"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"RIFF" + bytes(200))
    page = write_report(tmp_path / "report.html", [{"video_id": "broken", "video_path": str(broken), "fps": 25,
                                                    "frame_scores": [0.1, 0.2]}], {}).read_text()
    assert 'type="video/x-msvideo"' in page
    (note,) = re.findall(r'<p class="video-note" role="note">([^<]+)</p>', page)
    assert note.startswith("A browser cannot play broken.avi") and "no preview could be made" in note
    assert not (tmp_path / "previews").exists() or not any((tmp_path / "previews").iterdir())


def test_every_video_in_the_report_plays_in_headless_chromium(tmp_path):
    """An AVI (MPEG-4 Part 2) beside an mp4: both reach readyState >= 2 (a frame to show), neither errors."""
    from browser import chromium_browser, serve_folder

    with chromium_browser() as browser:
        page = browser.new_page()
        page.goto("about:blank")
        if not page.evaluate("() => document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.64001E\"')"):
            pytest.skip("this Chromium build plays no H.264, the codec of the previews")
        videos = [avi_video(tmp_path), *report_videos(tmp_path)[:1]]
        write_report(tmp_path / "report.html", videos, PROVENANCE)
        with serve_folder(tmp_path) as url:
            assert page.goto(url + "report.html").ok
            page.wait_for_function("[...document.querySelectorAll('video')].every(v => v.readyState >= 2 || v.error)",
                                   timeout=20_000)
            states = page.evaluate("[...document.querySelectorAll('video')].map(v => "
                                   "[v.readyState, v.error && v.error.code, v.duration, v.videoWidth])")
        assert len(states) == 2
        for (ready, error, duration, width), video in zip(states, videos):
            assert ready >= 2 and error is None and width > 0, (video["video_id"], ready, error)
            assert duration == pytest.approx(len(video["frame_scores"]) / 25, abs=0.05)
