"""`mgfn demo` end to end: every stage runs offline, and its scores do not depend on where a clip sits."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.run import localisation


def test_localisation_pools_abnormal_frames_and_measures_the_position_gap():
    clip = 16
    event = np.r_[np.zeros(3 * clip), np.ones(2 * clip), np.zeros(5 * clip)].astype(np.int8)
    normal = np.zeros(10 * clip, np.int8)
    rising = event * 0.9 + 0.05                         # rises exactly on the event
    ramp = np.repeat(np.linspace(0.1, 0.5, 10), clip)   # a normal video scored by position alone
    out = localisation([event, normal], [rising, ramp], clip)
    assert out["frame_auc_abnormal"] == 1.0
    assert out["position_gap"] == pytest.approx(ramp[0] - ramp[5 * clip])
    flat = localisation([event, normal], [rising, np.full(10 * clip, 0.2)], clip)
    assert flat["position_gap"] == 0.0


@pytest.mark.slow
def test_demo_scores_do_not_depend_on_a_clips_position(tmp_path, capsys):
    """The demo's normal test videos score alike at clip 0 and clip 5 (zero padding once made them rise by 0.3),
    and the run records how well its scores find the events inside abnormal videos."""
    assert cli(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "stages" / "report.json").read_text())
    assert abs(report["position_gap"]) <= 0.05, report
    assert report["frame_auc_abnormal"] is not None and 0.0 <= report["frame_auc_abnormal"] <= 1.0
    assert "inside the abnormal test videos" in out
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "report.html").is_file()
    page = (tmp_path / "report.html").read_text()
    assert f"<th>model</th><td>{(tmp_path / 'model.pt').resolve()}</td>" in page     # the file the demo keeps
    assert re.search(r"<th>random weights</th><td>(yes|no)</td>", page)
    assert "<th>model checkpoint</th><td>epoch 8 of 8: the final epoch" in page
