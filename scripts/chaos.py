"""Fault injection: kill `mgfn` at random moments in every stage, re-run it to the end, and check nothing was lost.

Scenarios (each on a small set of generated scenes; the real Caffe2 I3D-R50 with random weights at a 56-pixel
crop, a tiny MGFN):

    extract           mgfn extract, one decoder thread
    extract-decoders  mgfn extract --decoders 2
    extract-ray       mgfn extract --backend ray (when Ray is installed; not with --quick)
    train             mgfn train, re-run with --resume
    score             mgfn score with the reference run's model
    run               mgfn run (extract -> train -> score -> report)

Each scenario first runs once uninterrupted (the reference). Then, `--kills` times, a scenario (in turn) is
started afresh, sent SIGKILL (every fourth time SIGINT, as Ctrl-C) after a random share of its reference duration
(seeded; sooner again if the run finished first), and run again to the end. Checked each time: the final outputs are byte-identical to the reference's
(feature files, checkpoints' weights, metrics without timings, score CSVs), no temporary file is left
(.tmp, .part, .progress.json, .claim), no video is recorded done twice in a manifest, and the re-run's exit
status is the reference's. Prints a table and one JSON line (kills, survived, identical, temp_left, redone).

    .venv/bin/python scripts/chaos.py --kills 20          # about 5 minutes on a 2-core CPU
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEMP_SUFFIXES = (".tmp", ".part", ".progress.json", ".claim")
EXTRACT = ["--weights", "random", "--crops", "1", "--resize", "short64", "--crop-size", "56", "--device", "cpu",
           "--batch-size", "2", "--flush-every", "2", "--quiet"]


@dataclass
class Scenario:
    name: str
    args: list[str]  # the mgfn command line; {out} is the scenario's output folder
    resume: list[str]  # extra arguments for the re-run after a kill


def make_world(root: Path) -> dict:
    """Scene videos with labels and ground truth, a run config, and a synthetic feature set for training."""
    import yaml

    from pipeline.scenes import make_scene_videos

    rows = []
    for split, n_normal, n_abnormal, seed in (("train", 3, 3, 0), ("test", 2, 2, 1)):
        for r in make_scene_videos(root / "videos", n_normal=n_normal, n_abnormal=n_abnormal, frames=48,
                                   size=(64, 48), seed=seed, split=split):
            rows.append((r["video_id"], r["label"], split, Path(r["path"]).relative_to(root).as_posix()))
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "label", "split", "path"])
        w.writerows(rows)
    config = {"name": "chaos", "workspace": "{out}", "dataset": {"videos": str(root / "videos"),
                                                                 "labels": str(root / "labels.csv"),
                                                                 "gt": str(root / "videos" / "gt")},
              "extractor": {"name": "i3d_r50_rtfm", "weights": "random", "crops": 1, "resize": "short64",
                            "crop_size": 56, "device": "cpu"},
              "train": {"epochs": 3, "batch_size": 2, "seed": 0,
                        "model": {"dims": [32, 64, 128], "depths": [1, 1, 1], "dim_head": 32}},
              "score": {"videos": "test"}}
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    (root / "test.txt").write_text("".join(f"{path}\n" for _, _, split, path in rows if split == "test"))
    mgfn(["synth", "--out", str(root / "synth"), "--seed", "0", "--train-normal", "8", "--train-abnormal", "8",
          "--test-normal", "4", "--test-abnormal", "4", "--feature-size", "64", "--crops", "1",
          "--min-clips", "16", "--max-clips", "32"], check=True)
    return {"videos": root / "videos", "run": root / "run.yaml", "synth": root / "synth", "test": root / "test.txt"}


def mgfn(args: list[str], check: bool = False, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"mgfn {' '.join(args)} failed: {proc.stderr[-1500:]}")
    return proc


def scenarios(world: dict, root: Path, quick: bool) -> list[Scenario]:
    synth = world["synth"]
    out = [
        Scenario("extract", ["extract", str(world["videos"]), "--out", "{out}", *EXTRACT], []),
        Scenario("extract-decoders", ["extract", str(world["videos"]), "--out", "{out}", *EXTRACT,
                                      "--decoders", "2"], []),
        Scenario("train", ["train", "--train", str(synth / "train.csv"), "--test", str(synth / "test.csv"), "--gt",
                           str(synth / "gt"), "--out", "{out}", "--epochs", "8", "--seed", "3", "--batch-size", "4",
                           "--quiet"],
                 ["--resume"]),
        Scenario("score", ["score", str(world["test"]), "--model", "{model}", "--out", "{out}/scores",
                           "--store", "{out}/features", "--device", "cpu", "--quiet"], []),
        Scenario("run", ["run", "{config}"], []),
    ]
    if not quick:
        try:
            import ray  # noqa: F401
            out.insert(2, Scenario("extract-ray", ["extract", str(world["videos"]), "--out", "{out}", *EXTRACT,
                                                   "--backend", "ray"], []))
        except ImportError:
            pass
    return out


def command(s: Scenario, out: Path, world: dict, model: Path | None) -> list[str]:
    args = [a.replace("{out}", str(out)).replace("{model}", str(model or "")) for a in s.args]
    if "{config}" in args:
        config = out.parent / f"{out.name}.yaml"
        config.write_text(world["run"].read_text().replace("'{out}'", str(out)).replace("{out}", str(out)))
        args = [str(config) if a == "{config}" else a for a in args]
    return args


def outputs(out: Path) -> dict[str, object]:
    """What a finished scenario leaves, in comparable form: feature and score bytes, metrics without timings,
    checkpoint weights (not their timestamps)."""
    import torch

    found: dict[str, object] = {}
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if not p.is_file() or "tb" in p.parts or p.name.endswith(TEMP_SUFFIXES):
            continue
        if p.suffix == ".npy" or (p.suffix == ".csv" and "scores" in p.parts):
            found[rel] = p.read_bytes()
        elif p.name == "metrics.csv":
            with p.open() as f:
                found[rel] = [{k: v for k, v in r.items() if not k.endswith("_s")} for r in csv.DictReader(f)]
        elif p.suffix == ".pt":
            ck = torch.load(p, map_location="cpu", weights_only=True)
            found[rel] = {k: v.numpy().tobytes() for k, v in sorted(ck.get("model", {}).items())}
    return found


def temp_left(out: Path) -> list[str]:
    return [p.relative_to(out).as_posix() for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIXES)]


def redone(out: Path) -> int:
    """Videos recorded done more than once in a manifest of this output (extracted twice)."""
    count = 0
    for manifest in out.rglob("manifest.jsonl"):
        done: dict[str, int] = {}
        for line in manifest.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("status") == "done":
                done[rec["video_id"]] = done.get(rec["video_id"], 0) + 1
        count += sum(1 for n in done.values() if n > 1)
    return count


def run_killed(args: list[str], after: float, sig: int) -> tuple[int, bool, int]:
    """Start `mgfn args` in a session of its own, send `sig` after `after` seconds; returns (exit status, whether
    the signal landed, the session id)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=after)
        return proc.returncode, False, proc.pid
    except subprocess.TimeoutExpired:
        pass
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole process group
    else:
        proc.send_signal(sig)  # kill -9 of the main process: its decoder processes must go by themselves
    try:
        return proc.wait(timeout=120), True, proc.pid
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def orphans(session: int) -> int:
    """Processes of a killed command's session still alive a moment later (decoders left behind)."""
    deadline = time.monotonic() + 5  # decoders check for their parent every 0.5 s; Ray's processes share its fate
    while True:
        found = subprocess.run(["pgrep", "-s", str(session)], capture_output=True, text=True).stdout.split()
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    for pid in found:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="no Ray scenario (the test suite's short version)")
    ap.add_argument("--only", default=None, help="comma-separated scenario names")
    ap.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = ap.parse_args()

    started = time.monotonic()
    root = args.keep or Path(tempfile.mkdtemp(prefix="chaos_"))
    root.mkdir(parents=True, exist_ok=True)
    world = make_world(root)
    chosen = scenarios(world, root, args.quick)
    if args.only:
        chosen = [s for s in chosen if s.name in args.only.split(",")]
    rng = random.Random(args.seed)

    refs: dict[str, dict] = {}
    model = None
    for s in sorted(chosen, key=lambda s: s.name != "run"):  # the run's model is what `score` scores with
        out = root / f"ref-{s.name}"
        if s.name == "score" and model is None:
            ref_run = root / "ref-model"
            mgfn(command(Scenario("run", ["run", "{config}"], []), ref_run, world, None), check=True)
            model = next(ref_run.glob("runs/*/best.pt"))
        t0 = time.monotonic()
        proc = mgfn(command(s, out, world, model))
        refs[s.name] = {"rc": proc.returncode, "seconds": time.monotonic() - t0, "outputs": outputs(out)}
        if s.name == "run" and model is None:
            model = next(out.glob("runs/*/best.pt"))
        print(f"reference {s.name}: exit {proc.returncode} in {refs[s.name]['seconds']:.1f}s", file=sys.stderr)

    rows = []
    for k in range(args.kills):
        s = chosen[k % len(chosen)]
        ref = refs[s.name]
        sig = signal.SIGINT if k % 4 == 3 else signal.SIGKILL
        after = rng.uniform(0.15, 0.9) * ref["seconds"]
        out = root / f"kill-{k:02d}-{s.name}"
        cmd = command(s, out, world, model)
        for _ in range(4):  # finished before the signal (a quicker run than the reference): start again, sooner
            rc_killed, landed, session = run_killed(cmd, after, sig)
            if landed:
                break
            shutil.rmtree(out, ignore_errors=True)
            after /= 2
        left = orphans(session)
        rerun = mgfn(cmd + s.resume)
        got = outputs(out)
        row = {"kill": k, "scenario": s.name, "signal": signal.Signals(sig).name, "at_s": round(after, 2),
               "landed": landed, "rc_killed": rc_killed, "rc_rerun": rerun.returncode,
               "survived": rerun.returncode == ref["rc"], "identical": got == ref["outputs"],
               "temp_left": len(temp_left(out)), "redone": redone(out), "orphans": left}
        if not row["identical"]:
            row["differs"] = sorted(k for k in set(got) | set(ref["outputs"]) if got.get(k) != ref["outputs"].get(k))[:5]
        rows.append(row)
        print(f"{k:>3} {s.name:<17} {row['signal']:<8} at {after:5.1f}s landed={landed!s:<5} "
              f"exit {rc_killed:>4} -> {rerun.returncode}  identical={row['identical']!s:<5} "
              f"temp={row['temp_left']} redone={row['redone']} orphans={left}" + (f"  differs: {row['differs']}" if 'differs' in row else ""))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
            (root / f"{out.name}.yaml").unlink(missing_ok=True)

    summary = {"kills": len(rows), "landed": sum(r["landed"] for r in rows), "survived": sum(r["survived"] for r in rows),
               "identical": sum(r["identical"] for r in rows), "temp_left": sum(r["temp_left"] for r in rows),
               "redone": sum(r["redone"] for r in rows), "orphans": sum(r["orphans"] for r in rows), "scenarios": sorted({r["scenario"] for r in rows}),
               "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(summary))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    ok = summary["survived"] == summary["identical"] == summary["kills"] and not summary["temp_left"] \
        and not summary["redone"] and not summary["orphans"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
