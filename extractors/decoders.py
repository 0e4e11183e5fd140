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

Each decoder process writes its clips into a few shared-memory slots of its own (`SharedSlots`), made once and
mapped once on both sides, and sends only the slot's number: a tensor sent through a queue as itself costs the
receiving process a fresh shared-memory segment, a file descriptor handed over by the sender and a page fault
on every 4 KiB it reads, and that process is the one feeding the network (`scripts/bench_decoders.py`: its thread
spends 1.8x less CPU time a clip). So a "clips" payload from a decoder process is borrowed: it is valid until the next
`get()`, and whoever keeps it copies it (a payload too big for a slot travels as its own tensor, as before).
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
SLOTS_PER_DECODER = 2  # shared-memory slots each decoder process writes into in turn
FRAME_SLOT_BYTES = 16 << 20  # a slot of uint8 frames (GPU path): 4 clips of 320x240, 1 of 640x360
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

    def slot_bytes(self) -> int:
        """Bytes of one shared slot: a whole message of transformed clips on CPU (their size is known), on a GPU
        FRAME_SLOT_BYTES of uint8 frames (fewer clips a message when the frames are large)."""
        if not self.on_cpu:
            return FRAME_SLOT_BYTES
        itemsize = torch.empty((), dtype=DTYPES[self.dtype]).element_size()
        return self.message_clips * self.crops * 3 * self.clip_len * self.crop_size ** 2 * itemsize

    def transform(self) -> _transforms.ClipTransform:
        return _transforms.ClipTransform(resize=self.resize, crops=self.crops, crop_size=self.crop_size,
                                         preset=self.preset, dtype=DTYPES[self.dtype])

    def sampler(self) -> _clips.ClipSampler:
        return _clips.ClipSampler(clip_len=self.clip_len, stride=self.stride, tail=self.tail)


def _info_fields(info) -> dict:
    return {"num_frames": int(info.num_frames), "fps": float(info.fps), "width": int(info.width),
            "height": int(info.height), "backend": str(info.backend)}


@dataclass(frozen=True)
class Lent:
    """What a "clips" message carries in place of its tensor: the slot it was written into, and its layout."""

    ring: int
    slot: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str


def _dense(x: torch.Tensor) -> bool:
    return x.is_contiguous() or (x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d))


class SharedSlots:
    """`count` shared-memory blocks of `nbytes`, written by one decoder process in turn and given back by the
    consumer in the order it receives them (one queue, in order per sender), so a semaphore is all they need."""

    def __init__(self, ctx, ring: int, count: int, nbytes: int):
        self.ring, self.count, self.nbytes = ring, count, nbytes
        self.buffers = torch.empty((count, nbytes), dtype=torch.uint8).share_memory_()
        self.free = ctx.Semaphore(count)
        self.next = 0  # the decoder's next slot (each process has its own copy of this object)

    def view(self, lent: Lent) -> torch.Tensor:
        dtype = getattr(torch, lent.dtype)
        flat = self.buffers[lent.slot].view(dtype)
        return flat.as_strided(lent.shape, lent.stride)

    def lend(self, payload: torch.Tensor, stopped) -> Lent | torch.Tensor | None:
        """Copy `payload` into the next slot once it is free; the payload itself when it does not fit, None when
        stopped while waiting."""
        if payload.nbytes > self.nbytes or not _dense(payload):
            return payload
        while not self.free.acquire(timeout=0.1):
            if stopped():
                return None
        lent = Lent(self.ring, self.next, tuple(payload.shape), tuple(payload.stride()),
                    str(payload.dtype).removeprefix("torch."))
        self.next = (self.next + 1) % self.count
        self.view(lent).copy_(payload)
        return lent


def shared_memory_free() -> int:
    """Bytes free in /dev/shm, where shared tensors live (0 when it cannot be read)."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


class _Decoder:
    """One worker's state: the spec's sampler and transform, and a pool of transform threads if asked."""

    def __init__(self, spec: DecodeSpec, message_bytes: int | None = None):
        self.spec, self.message_bytes = spec, message_bytes
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
            per_message = spec.message_clips
            for clip in self.sampler.read_clips(reader, start_clip, chunk_size=CHUNK_FRAMES, counted=counted):
                if index == start_clip and self.message_bytes and not spec.on_cpu:  # as many clips as fit a slot
                    per_message = max(1, min(per_message, self.message_bytes // clip.nbytes))
                batch.append(clip)
                index += 1
                if index % per_message == 0:
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


def _loop(spec: DecodeSpec, tasks, out, worker: int, stop, slots=None, shared: SharedSlots | None = None) -> None:
    """A worker: take (job, path, start_clip) tasks until None, and report each video's messages on `out`.

    `slots` (a semaphore, or None): one is taken before a batch is transformed and given back when the consumer
    takes that batch (`DecoderPool.get`), so at most that many transformed batches wait for the network.
    `shared` (a process's SharedSlots, or None): clips are written there and the message carries the slot."""
    decoder = _Decoder(spec, shared.nbytes if shared is not None else None)
    held = [0]  # slots taken for batches not handed over yet

    def reserve() -> bool:
        while slots is not None and not slots.acquire(timeout=0.1):
            if stop.is_set():
                return False
        held[0] += slots is not None
        return True

    def put(item) -> None:
        if shared is not None and item[0] == "clips":
            payload = shared.lend(item[3], stop.is_set)
            if payload is None:
                return
            item = (*item[:3], payload)
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


def _process_main(spec: DecodeSpec, tasks, out, worker: int, stop, parent: int | None = None,
                  shared: SharedSlots | None = None) -> None:
    torch.set_num_threads(1)  # n decoders share the machine's cores with the model
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    try:
        _loop(spec, tasks, out, worker, stop, shared=shared)
    except KeyboardInterrupt:  # the parent handles Ctrl-C
        pass


class DecoderPool:
    """n decoder processes (n >= 1) or one decoder thread (n = 0) behind bounded queues.

    `shared_slots`: slots of shared memory per decoder process (0: every payload travels as its own tensor).
    Slots are used only when /dev/shm has room for twice what they take."""

    def __init__(self, spec: DecodeSpec, n: int = 0, queue_items: int | None = None,
                 shared_slots: int = SLOTS_PER_DECODER):
        if n < 0:
            raise InputError(f"--decoders must be 0 or more, not {n}")
        self.spec, self.n = spec, n
        self.rings: dict[int, SharedSlots] = {}  # every ring made, a dead worker's too (its messages may still come)
        self.lent: SharedSlots | None = None  # the ring of the payload last handed out (given back at the next get)
        self.slot_bytes = spec.slot_bytes()
        self.lends = n >= 1 and shared_slots > 0 and shared_memory_free() >= 2 * n * shared_slots * self.slot_bytes
        self.shared_slots = shared_slots
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

        shared = None
        if self.lends:  # a fresh ring: a dead worker may have died holding one of its slots
            shared = SharedSlots(self.ctx, len(self.rings), self.shared_slots, self.slot_bytes)
            self.rings[shared.ring] = shared
        return self.ctx.Process(target=_process_main,
                                args=(self.spec, self.tasks, self.out, i, self.stop, os.getpid(), shared),
                                name=f"decoder-{i}", daemon=True)

    def submit(self, job, path: str, start_clip: int) -> None:
        self.tasks.put((job, str(path), start_clip))

    def get(self, timeout: float = 1.0):
        """The next message, or None after `timeout` seconds without one. A "clips" payload from a decoder
        process is borrowed (`lends`): valid until the next get()."""
        if self.lent is not None:  # the last payload has been used: its slot goes back to its decoder
            self.lent.free.release()
            self.lent = None
        try:
            msg = self.out.get(timeout=timeout)
        except queue.Empty:
            return None
        if self.slots is not None and msg[0] == "clips":
            self.slots.release()
        if msg[0] == "clips" and isinstance(msg[3], Lent):
            self.lent = self.rings[msg[3].ring]
            msg = (*msg[:3], self.lent.view(msg[3]))
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
