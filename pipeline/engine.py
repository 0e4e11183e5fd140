"""The extraction loop behind `mgfn extract`, `mgfn score` and `mgfn run`: many videos through one model.

Decoders (`extractors.decoders.DecoderPool`: a thread, or N processes) decode, cut and transform videos in
parallel; this process claims each video in the store, batches clips from several videos into one forward
pass, and streams each video's rows into its own resumable writer. A clip's features do not depend on the
batch it rode in (checked in the tests), so every file is byte-identical whatever N, the batch size and the
mix of videos. Videos another process is extracting (a second `mgfn extract`, a Ray actor) are left to it, and
waited for at the end: when their holder dies, the claim expires and the video is taken over here.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from extractors.errors import InputError

WAIT_POLL = 0.5  # seconds between looks at videos another process is extracting
COMPILE_MIN_FRAMES = 500_000  # --compile auto: compiling (~25 s) pays back from about 420k frames on an H200
# Where the extracting process's time goes (`ExtractResult.phases`, printed by `mgfn extract`): waiting for a
# decoder's message, staging clips for the network (on CUDA: the pinned copy and the transform's launch),
# starting the network (on CPU: the whole forward pass), waiting for its features, writing them.
PHASES = ("waiting for decoders", "staging", "network", "waiting for the network", "writing")


def _disk_error(message: str) -> OSError | None:
    """The OSError a decoder's error message reports when the disk refused a write (out of space, quota, read-only),
    else None. The run stops on it instead of recording the video as failed; nothing is lost, a re-run resumes."""
    from mgfn.atomic import DISK_ERRNOS

    for code in DISK_ERRNOS:
        if os.strerror(code) in message:
            return OSError(code, os.strerror(code))
    return None


def truncation_tolerance(declared: int) -> int:
    """Frames a file may decode short of its header before it counts as truncated (headers are estimates)."""
    return max(16, declared // 100)


@dataclass
class ExtractResult:
    """Per-video outcome of one extraction run; iterates as (done, skipped, failed) for older callers."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already done before this run
    failed: list[tuple[str, str]] = field(default_factory=list)
    truncated: list[tuple[str, int, int]] = field(default_factory=list)  # (id, frames decoded, frames declared)
    by_others: list[str] = field(default_factory=list)  # finished by another process during this run
    frames: int = 0  # frames decoded by this run
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds of this process in each of PHASES

    def __iter__(self):
        return iter((self.done, self.skipped, self.failed))

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Job:
    vid: str
    path: Path
    source: object
    writer: object
    started: float
    num_clips: int | None = None
    received: int = 0  # clips handed over by the decoder
    computed: int = 0  # clips through the network and into the writer
    ended: tuple[int, int] | None = None  # (frames decoded, frames declared) once the decoder is through
    worker: int | None = None


class Extraction:
    """One run over `videos` into `store` with `extractor`; `run()` returns an ExtractResult."""

    def __init__(self, extractor, store, videos: list[Path], show: bool = True, decoders: int | None = None,
                 strict: bool = False, log=None):
        from extractors.decoders import default_decoders

        self.extractor, self.store, self.videos = extractor, store, [Path(v) for v in videos]
        self.show, self.strict = show, strict
        self.decoders = default_decoders(extractor.device.type) if decoders is None else decoders
        self.log = log or (lambda msg: print(f"mgfn extract: {msg}", file=sys.stderr))
        self.provenance = {"random_weights": extractor.random_weights, "weights": extractor.provenance}
        self.result = ExtractResult(phases=dict.fromkeys(PHASES, 0.0))
        self.jobs: dict[int, _Job] = {}
        self.batch: list[tuple[int, int, torch.Tensor]] = []  # (job, clips, device input) waiting for the network
        self.batched = 0
        self.running = None  # the batch the network is computing: (jobs and clip counts, clips, handle)
        self.pool = None  # the DecoderPool of the run in progress

    # -- choosing videos ------------------------------------------------------------------------------------

    def _open(self, path: Path, deferred: list[Path]) -> _Job | None:
        """Claim a video and open its writer; None when it is done, failed to stat, or another process has it."""
        from pipeline.store import SourceStat, video_id

        store, vid = self.store, video_id(path)
        try:
            source = SourceStat.of(path)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (pathlib before Python 3.13)
            reason = getattr(exc, "strerror", None) or "symlink loop"
            self._fail_unclaimed(vid, path, f"cannot read {path}: {reason}")
            return None
        if store.is_done(vid, source):
            self.result.skipped.append(vid)
            return None
        if not store.claim(vid):
            deferred.append(path)
            return None
        if store.is_done(vid, source):  # finished by another process while we looked
            store.release(vid)
            self.result.by_others.append(vid)
            return None
        writer = store.writer(vid, source)
        if writer.recovered is not None:  # finished and renamed, but the run stopped before recording it
            prog = writer.recovered
            store.record(vid, source, "done", file=store.path_for(vid).name, T=prog["clips_done"],
                         shape=[prog["clips_done"], prog["crops"], prog["dim"]], file_dtype=store.file_dtype.name,
                         resumed_from=prog["clips_done"], seconds=0.0, **prog.get("info", {}), **self.provenance)
            writer.close_done()
            store.release(vid)
            self.result.done.append(vid)
            return None
        return _Job(vid, path, source, writer, time.monotonic())

    def _fail_unclaimed(self, vid: str, path: Path, reason: str) -> None:
        from pipeline.store import SourceStat

        self.result.failed.append((vid, reason))
        self.store.record(vid, SourceStat(str(path), -1, -1), "failed", error=reason, **self.provenance)

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> ExtractResult:
        from tqdm import tqdm

        from extractors.decoders import DecoderPool

        started = time.monotonic()
        pending = list(self.videos)
        deferred: list[Path] = []
        next_job = 0
        in_flight_max = max(2, self.decoders + 1)  # each decoder has its next video waiting
        self.bar = tqdm(total=len(self.videos), desc="videos", unit="video", disable=not self.show,
                        dynamic_ncols=True)
        pool = self.pool = DecoderPool(self.extractor.decode_spec(), self.decoders)
        try:
            while True:
                while pending and len(self.jobs) < in_flight_max:
                    held_elsewhere = len(deferred)
                    job = self._open(pending.pop(0), deferred)
                    if job is None:
                        if len(deferred) == held_elsewhere:  # done, skipped or failed: counted now
                            self.bar.update(1)
                        continue
                    self.jobs[next_job] = job
                    pool.submit(next_job, job.path, job.writer.start_clip)
                    next_job += 1
                if not self.jobs:
                    if self.batch:
                        self._run_batch()
                        continue
                    if self.running is not None:
                        self._collect()
                        continue
                    if not pending and not deferred:
                        break
                    if not pending:  # only videos other processes hold: wait for them to finish or die
                        pending, deferred = self._wait_for_others(deferred), []
                    continue
                if self.running is not None and not self.batch and self._all_decoded():
                    self._collect()  # nothing else to overlap with: the videos in flight wait on these rows
                    continue
                since = time.perf_counter()
                msg = pool.get(timeout=1.0)
                self._spent("waiting for decoders", since)
                if msg is None:
                    for worker in pool.dead_workers():
                        self._worker_died(worker)
                    continue
                self._handle(msg)
                if self.batched >= self.extractor.batch_size or (self.batch and self._all_decoded()):
                    self._run_batch()
        except KeyboardInterrupt:
            self._collect()
            for job in self.jobs.values():  # keep whole batches already computed; the next run resumes after them
                job.writer.flush()
            raise
        finally:
            pool.close()
            self.bar.close()
            for job in self.jobs.values():     # unfinished (interrupted): their files closed, kept for resume
                job.writer.close()
                self.store.release(job.vid)
            self.store.cleanup()
        self.result.seconds = time.monotonic() - started
        return self.result

    def _all_decoded(self) -> bool:
        """Every video in flight has sent all its clips: a partial batch will not fill up any more."""
        return all(job.ended is not None for job in self.jobs.values())

    def _wait_for_others(self, deferred: list[Path]) -> list[Path]:
        """Wait until a deferred video is done by its holder or free to take over; returns the ones to retry."""
        from pipeline.store import SourceStat, video_id

        self.bar.set_postfix_str(f"waiting for {len(deferred)} video(s) another process is extracting")
        while True:
            self.store.refresh()
            ready, still = [], []
            for p in deferred:
                vid = video_id(p)
                try:
                    done = self.store.is_done(vid, SourceStat.of(p))
                except OSError:
                    done = False
                if done:
                    self.result.by_others.append(vid)
                    self.bar.update(1)
                elif self.store.holder(vid) is None:
                    ready.append(p)
                else:
                    still.append(p)
            if ready or not still:
                self.bar.set_postfix_str("")
                return ready + still
            deferred = still
            time.sleep(WAIT_POLL)

    def _handle(self, msg) -> None:
        kind, job_id = msg[0], msg[1]
        job = self.jobs.get(job_id)
        if job is None:  # a message of a video already failed
            return
        if kind == "start":
            job.worker = msg[2]
        elif kind == "info":
            job.writer.info, job.num_clips = msg[2], msg[3]
        elif kind == "clips":
            first, payload = msg[2], msg[3]
            n = payload.shape[0] // (self.extractor.crops if self.extractor.device.type == "cpu" else 1)
            if first != job.writer.start_clip + job.received:
                self._fail(job_id, f"decoder sent clip {first}, expected {job.writer.start_clip + job.received}")
                return
            job.received += n
            since = time.perf_counter()
            self.batch.append((job_id, n, self.extractor.upload(payload, borrowed=self.pool.lends)))
            self._spent("staging", since)
            self.batched += n
        elif kind == "end":
            job.ended = (msg[2], msg[3])
            self.result.frames += msg[4]
            since = time.perf_counter()
            self._maybe_finish(job_id)
            self._spent("writing", since)
        elif kind == "error":
            disk = _disk_error(msg[2])
            if disk is not None:  # a full disk (a decoder's temp or shared memory) is not the video's fault: stop
                raise disk
            self._fail(job_id, msg[2])

    def _worker_died(self, worker: int) -> None:
        for job_id, job in list(self.jobs.items()):
            if job.worker == worker and job.ended is None:
                self._fail(job_id, "the decoder process died while decoding this video (killed, or a crash in "
                                   "the decoding library); re-run to retry it")

    def _run_batch(self) -> None:
        """Start one forward pass over the clips waiting (several videos' worth); the previous batch's rows are
        then routed to their writers while this one runs (on a GPU the two overlap)."""
        ex = self.extractor
        since = time.perf_counter()
        take, parts, n = [], [], 0
        while self.batch and n < ex.batch_size:
            job_id, k, x = self.batch[0]
            room = ex.batch_size - n
            if k > room:  # split a message across two batches
                per = x.shape[0] // k
                take.append((job_id, room))
                parts.append(x[:room * per])
                self.batch[0] = (job_id, k - room, x[room * per:])
                n += room
                break
            self.batch.pop(0)
            take.append((job_id, k))
            parts.append(x)
            n += k
        self.batched -= n
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        if ex.compiled and n < ex.batch_size:  # one shape for the compiled network: pad the last batch
            pad = torch.zeros((ex.batch_size - n) * ex.crops, *x.shape[1:], dtype=x.dtype, device=x.device)
            x = torch.cat([x, pad]).contiguous(memory_format=torch.channels_last_3d)
        handle = ex.launch(x)
        self._spent("network", since)
        self._collect()
        self.running = (take, n, handle)

    def _collect(self) -> None:
        """Write the rows of the batch in flight, if any, and finish the videos they complete."""
        if self.running is None:
            return
        take, n, handle = self.running
        self.running = None
        since = time.perf_counter()
        feats = self.extractor.collect(handle)[:n]  # [n, crops, D]
        since = self._spent("waiting for the network", since)
        at = 0
        for job_id, k in take:
            if job_id in self.jobs:
                job = self.jobs[job_id]
                job.writer.add(feats[at:at + k])
                job.computed += k
                self._maybe_finish(job_id)
            at += k
        self._spent("writing", since)

    def _spent(self, phase: str, since: float) -> float:
        """Add the time since `since` to `phase`; returns now."""
        now = time.perf_counter()
        self.result.phases[phase] += now - since
        return now

    def _maybe_finish(self, job_id: int) -> None:
        job = self.jobs[job_id]
        if job.ended is None or job.computed < job.received:
            return
        decoded, declared = job.ended
        store, vid = self.store, job.vid
        truncated = job.writer.start_clip == 0 and declared - decoded > truncation_tolerance(declared)
        if truncated and self.strict:
            self._fail(job_id, f"truncated: {decoded} of the {declared} frames its header declares decode "
                               "(--strict)")
            return
        try:
            final, T = job.writer.finish()
        except InputError as exc:
            self._fail(job_id, str(exc))
            return
        extra = {"truncated": {"frames_decoded": decoded, "frames_declared": declared}} if truncated else {}
        ex = self.extractor
        store.record(vid, job.source, "done", file=final.name, T=T, shape=[T, ex.crops, ex.feature_dim],
                     file_dtype=store.file_dtype.name, resumed_from=job.writer.start_clip,
                     seconds=round(time.monotonic() - job.started, 3), **job.writer.info, **extra, **self.provenance)
        job.writer.close_done()
        store.release(vid)
        del self.jobs[job_id]
        self.result.done.append(vid)
        if truncated:
            self.result.truncated.append((vid, decoded, declared))
        self.bar.update(1)

    def _fail(self, job_id: int, reason: str) -> None:
        job = self.jobs.pop(job_id)
        job.writer.discard()
        reason = " ".join(reason.split())
        self.result.failed.append((job.vid, reason))
        self.store.record(job.vid, job.source, "failed", error=reason, **self.provenance)
        self.store.release(job.vid)
        self.batch = [b for b in self.batch if b[0] != job_id]
        self.batched = sum(b[1] for b in self.batch)
        self.bar.update(1)


def estimated_frames(paths: list[Path], stop_at: int) -> int:
    """Frames the videos' headers declare, summed until `stop_at` is passed (cheap: no decoding)."""
    import av

    total = 0
    for p in paths:
        if total >= stop_at:
            break
        try:
            if p.is_dir():
                total += sum(1 for _ in p.iterdir())
                continue
            with av.open(str(p)) as c:
                s = c.streams.video[0]
                total += s.frames or int(float(s.duration * s.time_base * (s.average_rate or 0)) if s.duration else 0)
        except Exception:  # unreadable here: the extraction reports it
            continue
    return total


def resolve_compile(choice: str, device_type: str, videos: list[Path]) -> bool:
    """--compile auto: on CUDA when the job is big enough for the compile time to pay back."""
    if choice == "no" or device_type != "cuda":
        return False
    return choice == "yes" or estimated_frames(videos, COMPILE_MIN_FRAMES) >= COMPILE_MIN_FRAMES

