"""Decoders for many videos at once: worker threads or processes that decode, cut clips and transform them.

`DecoderPool(spec, n)` takes videos (`submit(job, path, start_clip)`) and hands back messages (`get()`), in order
per video, from whichever worker decoded it:

    ("start", job, worker)                     a worker took the video
    ("info", job, info_fields, num_clips)      the video opened: its VideoInfo fields and expected clip count
    ("clips", job, first_clip, payload)        `n` consecutive clips: on CPU the model input [n*crops, 3, T, S, S],
                                               on a GPU uint8 [n, T, H, W, 3] (the transform runs on the GPU)
    ("end", job, frames_decoded, frames_declared, frames_read)   source frames that decoded / the header declares;
                                               frames this run read (from the resume point on)
    ("error", job, message, is_input_error)

n = 0 runs one decoder thread in this process (best when the model needs every core, as on a small CPU);
n >= 1 starts n processes (spawned, one thread each), so decoding never waits for the GIL or the model.
Queues are bounded, so memory stays flat whatever the videos' lengths.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from extractors import clips as _clips
from extractors import decode as _decode
from extractors import transforms as _transforms
from extractors.errors import InputError

CHUNK_FRAMES = 64  # frames decoded per chunk: bounds the decoder's memory, not a tuning knob
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class DecodeSpec:
    """Everything a decoder needs (picklable, so a spawned process can rebuild its sampler and transform)."""

    clip_len: int
    stride: int
    tail: str
    fps: float | None
    resize: str
    crops: int
    crop_size: int
    preset: str
    dtype: str
    on_cpu: bool  # transform in the decoder (CPU model) or leave it to the GPU
    batch_size: int  # clips per message, aligned to absolute clip indices (uint8 clips: at most 4, see below)
    workers: int = 1  # threads per decoder transforming clips (1: the decoder does it itself)

    @property
    def message_clips(self) -> int:
        """Clips per message: a model batch of transformed clips on CPU; on a GPU a few uint8 clips (small
        shared-memory blocks; the GPU side joins them into batches)."""
        return self.batch_size if self.on_cpu else min(self.batch_size, 4)

    def transform(self) -> _transforms.ClipTransform:
        return _transforms.ClipTransform(resize=self.resize, crops=self.crops, crop_size=self.crop_size,
                                         preset=self.preset, dtype=DTYPES[self.dtype])

    def sampler(self) -> _clips.ClipSampler:
        return _clips.ClipSampler(clip_len=self.clip_len, stride=self.stride, tail=self.tail)


def to_model_input(x: torch.Tensor) -> torch.Tensor:
    """Transformed clips [b, crops, 3, T, S, S] -> [b*crops, 3, T, S, S] channels_last_3d."""
    b, c = x.shape[:2]
    return x.reshape(b * c, *x.shape[2:]).contiguous(memory_format=torch.channels_last_3d)


def _info_fields(info) -> dict:
    return {"num_frames": int(info.num_frames), "fps": float(info.fps), "width": int(info.width),
            "height": int(info.height), "backend": str(info.backend)}


class _Decoder:
    """One worker's state: the spec's sampler and transform, and a pool of transform threads if asked."""

    def __init__(self, spec: DecodeSpec):
        self.spec = spec
        self.sampler = spec.sampler()
        self.transform = spec.transform() if spec.on_cpu else None
        self.pool = ThreadPoolExecutor(spec.workers - 1) if spec.workers > 1 else None

    def prepare(self, batch: list[np.ndarray]) -> torch.Tensor:
        u8 = torch.from_numpy(np.stack(batch))  # [n, T, H, W, 3]
        return self.transform.model_input(u8) if self.transform is not None else u8  # no layout copy

    def run(self, job, path: str, start_clip: int, put, stopped, reserve=lambda: True) -> None:
        """Decode one video into `put` messages; raises on bad input (the caller reports it). `reserve()` waits
        for room before each batch is transformed (False: stopped)."""
        spec = self.spec
        reader = _decode.open_video(path, target_fps=spec.fps)
        try:
            info = reader.info
            num_clips = self.sampler.num_clips(info.num_frames)
            if num_clips <= 0:
                raise InputError(f"{info.num_frames} frames is fewer than one clip of {spec.clip_len} "
                                 f"with tail={spec.tail}")
            if start_clip > num_clips:
                raise InputError(f"cannot resume at clip {start_clip}: the video has {num_clips} clips")
            put(("info", job, _info_fields(info), num_clips))
            counted = [0]
            pending: deque = deque()  # (first clip, future or tensor), in clip order
            batch: list[np.ndarray] = []
            first = index = start_clip
            for clip in self.sampler.read_clips(reader, start_clip, chunk_size=CHUNK_FRAMES, counted=counted):
                batch.append(clip)
                index += 1
                if index % spec.message_clips == 0:
                    if not reserve():
                        return
                    pending.append((first, self.pool.submit(self.prepare, batch) if self.pool else self.prepare(batch)))
                    batch, first = [], index
                    while pending and (len(pending) >= spec.workers or not self.pool):
                        start, item = pending.popleft()
                        put(("clips", job, start, item.result() if self.pool else item))
                if stopped():
                    return
            if batch:
                if not reserve():
                    return
                pending.append((first, self.prepare(batch)))
            while pending:
                start, item = pending.popleft()
                put(("clips", job, start, item.result() if hasattr(item, "result") else item))
            decoded, declared = reader.frames_found()
            put(("end", job, decoded, declared, counted[0]))
        finally:
            reader.close()


def _loop(spec: DecodeSpec, tasks, out, worker: int, stop, slots=None) -> None:
    """A worker: take (job, path, start_clip) tasks until None, and report each video's messages on `out`.

    `slots` (a semaphore, or None): one is taken before a batch is transformed and given back when the consumer
    takes that batch (`DecoderPool.get`), so at most that many transformed batches wait for the network."""
    decoder = _Decoder(spec)
    held = [0]  # slots taken for batches not handed over yet

    def reserve() -> bool:
        while slots is not None and not slots.acquire(timeout=0.1):
            if stop.is_set():
                return False
        held[0] += slots is not None
        return True

    def put(item) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                if slots is not None and item[0] == "clips":
                    held[0] -= 1  # the consumer gives it back
                return
            except queue.Full:
                continue

    while not stop.is_set():
        try:
            task = tasks.get(timeout=0.1)
        except queue.Empty:
            continue
        if task is None:
            break
        job, path, start_clip = task
        put(("start", job, worker))
        try:
            decoder.run(job, path, start_clip, put, stop.is_set, reserve)
        except InputError as exc:
            put(("error", job, " ".join(str(exc).split()), True))
        except Exception as exc:  # a decoder bug or an undecodable file: reported, the worker goes on
            put(("error", job, f"{type(exc).__name__}: {' '.join(str(exc).split())}", False))
        finally:
            for _ in range(held[0]):  # batches that failed or were never sent
                slots.release()
            held[0] = 0


def _exit_with_parent(parent: int) -> None:
    """A decoder whose parent was killed (SIGKILL leaves no time to stop it) exits instead of lingering."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _process_main(spec: DecodeSpec, tasks, out, worker: int, stop, parent: int | None = None) -> None:
    torch.set_num_threads(1)  # n decoders share the machine's cores with the model
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    try:
        _loop(spec, tasks, out, worker, stop)
    except KeyboardInterrupt:  # the parent handles Ctrl-C
        pass


class DecoderPool:
    """n decoder processes (n >= 1) or one decoder thread (n = 0) behind bounded queues."""

    def __init__(self, spec: DecodeSpec, n: int = 0, queue_items: int | None = None):
        if n < 0:
            raise InputError(f"--decoders must be 0 or more, not {n}")
        self.spec, self.n = spec, n
        size = queue_items or n + 2
        # The thread on CPU transforms a batch only when the network has taken the one before (a 10-crop float32
        # clip is 96 MB; one waiting keeps the network busy): 2 batches alive, not queue + 2
        self.slots = threading.Semaphore(spec.workers) if n == 0 and spec.on_cpu else None
        if n == 0:
            self.tasks, self.out, self.stop = queue.Queue(), queue.Queue(maxsize=size), threading.Event()
            self.workers = [threading.Thread(target=_loop, args=(spec, self.tasks, self.out, 0, self.stop, self.slots),
                                             name="decoder", daemon=True)]
        else:
            ctx = multiprocessing.get_context("spawn")  # fork would copy the model and any CUDA state
            self.ctx = ctx
            self.tasks, self.out, self.stop = ctx.Queue(), ctx.Queue(maxsize=size), ctx.Event()
            self.workers = [self._spawn(i) for i in range(n)]
        for w in self.workers:
            if not w.is_alive():
                w.start()

    def _spawn(self, i: int):
        import torch.multiprocessing  # noqa: F401 (tensors through the queues travel in shared memory)

        return self.ctx.Process(target=_process_main,
                                args=(self.spec, self.tasks, self.out, i, self.stop, os.getpid()),
                                name=f"decoder-{i}", daemon=True)

    def submit(self, job, path: str, start_clip: int) -> None:
        self.tasks.put((job, str(path), start_clip))

    def get(self, timeout: float = 1.0):
        """The next message, or None after `timeout` seconds without one."""
        try:
            msg = self.out.get(timeout=timeout)
        except queue.Empty:
            return None
        if self.slots is not None and msg[0] == "clips":
            self.slots.release()
        return msg

    def dead_workers(self) -> list[int]:
        """Workers that died (a crash in a decoder library, a kill); each is replaced by a fresh one."""
        dead = [i for i, w in enumerate(self.workers) if not w.is_alive()]
        for i in dead:
            if self.n == 0:
                raise RuntimeError("the decoder thread stopped")
            self.workers[i] = self._spawn(i)
            self.workers[i].start()
        return dead

    def close(self) -> None:
        self.stop.set()
        for _ in self.workers:
            try:
                self.tasks.put(None)
            except (ValueError, OSError):
                pass
        for w in self.workers:
            if self.n == 0:
                w.join(timeout=5)
            else:
                w.join(timeout=2)
                if w.is_alive():
                    w.terminate()
                    w.join(timeout=2)
        if self.n:
            for q in (self.tasks, self.out):
                q.cancel_join_thread()
                q.close()

    def __enter__(self) -> "DecoderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def default_decoders(device_type: str) -> int:
    """cores - 1 decoder processes beside a GPU; on a CPU the model wants every core, so one thread."""
    if device_type == "cuda":
        return max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2) - 1)
    return 0
