"""Decoder processes hand clips over through shared slots of their own: the consumer sees the same clips as from
the in-process thread, slots are reused (a decoder waits for its slot, never overwrites one in use), and what
does not fit a slot still arrives, as its own tensor."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from extractors import decoders

REPO = Path(__file__).resolve().parents[2]


def spec(on_cpu: bool, batch_size: int = 4) -> decoders.DecodeSpec:
    return decoders.DecodeSpec(clip_len=16, stride=16, tail="pad", fps=None, resize="short256", crops=1,
                               crop_size=64, preset="rtfm", dtype="float32", on_cpu=on_cpu, batch_size=batch_size)


def clips_of(pool: decoders.DecoderPool, video) -> tuple[list, list[bool]]:
    """(first clip, payload copy) of every "clips" message of one video, and whether each was borrowed."""
    pool.submit(0, video, 0)
    got, borrowed = [], []
    while (msg := pool.get(timeout=30)) is not None and msg[0] != "end":
        assert msg[0] != "error", msg
        if msg[0] == "clips":
            got.append((msg[2], msg[3].clone()))
            borrowed.append(pool.lent is not None)
    assert msg is not None, "the decoder went quiet"
    return got, borrowed


@pytest.mark.parametrize("on_cpu", [False, True], ids=["uint8-frames", "transformed"])
def test_process_decoders_lend_slots_and_give_the_thread_s_clips(make_video, on_cpu):
    video = make_video("v.mp4", n_frames=16 * 11 + 5, height=48, width=64)
    with decoders.DecoderPool(spec(on_cpu), 0) as pool:
        want, _ = clips_of(pool, video)
    with decoders.DecoderPool(spec(on_cpu), 1, shared_slots=2) as pool:
        assert pool.lends
        got, borrowed = clips_of(pool, video)  # 3+ messages through 2 slots: each slot written again
    assert all(borrowed) and len(got) == len(want) >= 3
    for (a, x), (b, y) in zip(got, want):
        assert a == b and x.shape == y.shape and torch.equal(x, y)
        assert x.is_contiguous(memory_format=torch.channels_last_3d) == y.is_contiguous(
            memory_format=torch.channels_last_3d)


def test_a_slot_is_not_written_again_while_its_payload_is_in_use(make_video):
    """With one slot, the decoder must wait for the next get(): the payload held meanwhile stays as it was."""
    video = make_video("v.mp4", n_frames=16 * 8, height=48, width=64)
    with decoders.DecoderPool(spec(False, batch_size=1), 1, shared_slots=1) as pool:
        pool.submit(0, video, 0)
        held = []
        while (msg := pool.get(timeout=30)) is not None and msg[0] != "end":
            if msg[0] == "clips":
                before = msg[3].clone()
                time.sleep(0.3)  # the decoder has the next clip ready by now, and nowhere to put it
                assert torch.equal(msg[3], before)
                held.append(before)
    assert len(held) == 8 and not all(torch.equal(held[0], h) for h in held[1:])


def test_what_does_not_fit_a_slot_travels_as_its_own_tensor(make_video, monkeypatch):
    video = make_video("v.mp4", n_frames=16 * 3, height=48, width=64)
    monkeypatch.setattr(decoders, "FRAME_SLOT_BYTES", 16 * 48 * 64 * 3 - 1)  # less than one uint8 clip
    with decoders.DecoderPool(spec(False), 0) as pool:
        want, _ = clips_of(pool, video)
    with decoders.DecoderPool(spec(False), 1) as pool:
        got, borrowed = clips_of(pool, video)
    assert got and not any(borrowed)  # one clip a message (a slot holds less than four)
    assert torch.equal(torch.cat([x for _, x in got]), torch.cat([y for _, y in want]))


def test_slots_are_sized_to_the_message_and_left_out_when_shared_memory_is_short(monkeypatch):
    assert spec(True, batch_size=2).slot_bytes() == 2 * 1 * 3 * 16 * 64 * 64 * 4
    assert spec(False).slot_bytes() == decoders.FRAME_SLOT_BYTES
    monkeypatch.setattr(decoders, "shared_memory_free", lambda: 2 * 2 * decoders.FRAME_SLOT_BYTES - 1)
    with decoders.DecoderPool(spec(False), 1) as pool:
        assert not pool.lends
    with decoders.DecoderPool(spec(False), 0) as pool:
        assert not pool.lends


def test_bench_decoders_script_runs_both_ways(tmp_path):
    """scripts/bench_decoders.py, tiny: both hand-overs deliver every clip and it reports their ratio."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "scripts/bench_decoders.py", "--videos", "2", "--frames", "80",
                           "--rounds", "1", "--json-out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["own_tensors"]["frames_per_s"] > 0 and res["shared_slots"]["frames_per_s"] > 0
    assert res["thread_cpu_own_over_shared"] > 0
    assert "round 0 shared_slots: {" in proc.stderr and "'clips': 10" in proc.stderr
