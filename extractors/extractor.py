"""FeatureExtractor: a video in, clip features `[T, crops, D]` out, streamed block by block with flat memory.

A worker thread decodes, cuts 16-frame clips and runs the uint8 transforms (resize, crops, normalisation) while
the model runs the previous batch; a bounded queue between them keeps memory flat in video length.
Batches cover absolute clip indices [k*B, (k+1)*B), so a run resumed at a batch boundary computes
exactly the same batches, and therefore the same bytes, as an uninterrupted one.
"""
from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import operator
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.fx
from torch import nn

from extractors import clips as _clips
from extractors import decode as _decode
from extractors import transforms as _transforms
from extractors.errors import InputError
from extractors.models import load_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CHUNK_FRAMES = 64  # frames decoded per chunk: bounds the decoder's memory, not a tuning knob
QUEUE_BATCHES = 2  # prepared batches waiting for the model
STAGING_BUFFERS = 4  # pinned buffers between decoders and the GPU (copies in flight while the network runs)


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" is CUDA when available, else CPU; anything else is passed to torch.device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


class _Features(nn.Module):
    """A model's `features` as `forward`, so torch.fx can trace it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.features(x)  # [B, 3, T, H, W] -> [B, D]


def inference_network(model: nn.Module) -> tuple[nn.Module, bool]:
    """`model.features` as a torch.fx graph (any BatchNorm left folded into its conv), or as it is if untraceable.

    The graph lets the CPU path pack conv weights and fuse ReLUs (`pack_convolutions`). Returns (network, traced).
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(_Features(model).eval(), inplace=True), True  # the caller drops `model`: no copy
    except Exception:  # untraceable (data-dependent control flow): run it as it is
        return _Features(model).eval(), False


def pool_in_float32(net: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Average the last feature map in float32, so bfloat16 activations still give float32-precision features."""
    for node in list(net.graph.nodes):
        if (node.op == "call_method" and node.target == "mean") or (node.op == "call_function" and node.target is torch.mean):
            with net.graph.inserting_before(node):
                upcast = net.graph.call_method("float", (node.args[0],))
            node.replace_input_with(node.args[0], upcast)
    net.recompile()
    return net


class PackedConv3d(nn.Module):
    """Conv3d on a weight packed once for oneDNN, with the following ReLU (and residual add) fused in: CPU only.

    Eager convolution re-packs its weight on every call and runs ReLU and the residual add as separate passes
    over the activations; this does neither. Same numbers as Conv3d -> add -> ReLU (checked in the tests).
    """

    def __init__(self, conv: nn.Conv3d, input_shape: tuple[int, ...], relu: bool, residual: bool):
        super().__init__()
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        self.groups, self.unary, self.residual = conv.groups, "relu" if relu else "none", residual
        self.packed = torch._C._nn.mkldnn_reorder_conv3d_weight(
            conv.weight.detach().to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, list(input_shape))
        self.bias = None if conv.bias is None else conv.bias.detach()

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        if other is None:  # relu(conv(x)) or conv(x)
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.packed, self.bias, self.padding, self.stride, self.dilation, self.groups, self.unary, [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(  # relu(conv(x) + other)
            x, other, self.packed, self.bias, self.padding, self.stride, self.dilation, self.groups, "add", 1.0,
            "relu", [], "")


def _is_relu(node: torch.fx.Node, modules: dict) -> bool:
    return ((node.op == "call_module" and isinstance(modules.get(node.target), nn.ReLU))
            or (node.op == "call_function" and node.target in (torch.relu, nn.functional.relu)))


def pack_convolutions(net: torch.fx.GraphModule, sample: torch.Tensor, batch: int) -> torch.fx.GraphModule:
    """Replace every Conv3d (+ ReLU, + residual add + ReLU) of a traced network by a PackedConv3d, in place.

    `sample` (one item) gives each conv's input shape; weights are packed for batches of `batch` items.
    """
    shapes: dict[torch.fx.Node, tuple[int, ...]] = {}

    class _Shapes(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                shapes[n] = (batch, *out.shape[1:])
            return out

    with torch.no_grad():
        _Shapes(net).run(sample)
    modules = dict(net.named_modules())
    order = {n: i for i, n in enumerate(net.graph.nodes)}
    for node in list(net.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Conv3d):
            continue
        users = list(node.users)
        relu, other, fused = False, None, []
        if len(users) == 1 and _is_relu(users[0], modules):
            relu, fused = True, users
        elif (len(users) == 1 and users[0].op == "call_function" and users[0].target in (operator.add, torch.add)
              and len(users[0].users) == 1 and _is_relu(next(iter(users[0].users)), modules)):
            add = users[0]
            candidate = add.args[1] if add.args[0] is node else add.args[0]
            if isinstance(candidate, torch.fx.Node) and order[candidate] < order[node]:  # computed before the conv
                relu, other, fused = True, candidate, [add, next(iter(add.users))]
        name = node.target.replace(".", "_") + "_packed"
        net.add_submodule(name, PackedConv3d(modules[node.target], shapes[node.args[0]], relu, other is not None))
        with net.graph.inserting_after(node):
            new = net.graph.call_module(name, (node.args[0],) if other is None else (node.args[0], other))
        (fused[-1] if fused else node).replace_all_uses_with(new)
        shapes[new], order[new] = shapes[fused[-1] if fused else node], order[node]
        for n in reversed(fused):
            net.graph.erase_node(n)
        net.graph.erase_node(node)
    net.graph.lint()
    net.delete_all_unused_submodules()
    net.recompile()
    return net


def release_freed_heap() -> None:
    """Free what only reference cycles hold and hand the memory back to the system.

    After packing, torch.fx's intermediate graphs still hold the unpacked Conv3d modules (104 MB for the I3D-R50)
    in reference cycles until the garbage collector runs; and once freed, glibc keeps them, and the copies made
    while folding and packing, in its heap (~150 MB of RSS) unless asked to trim it."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


class _PooledInFloat32(nn.Module):
    """`features` with the last map averaged in float32 (what pool_in_float32 does to a traced graph)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if hasattr(m, "forward_features") and hasattr(m, "pool_features"):
            return m.pool_features(m.forward_features(x).float())
        return m.features(x).float()


def compile_network(model: nn.Module, dtype: str) -> nn.Module:
    """torch.compile of the plain model (BatchNorm already folded into its convs, channels_last_3d weights).

    The fx-fused graph does not compile (inductor trips over conv strides it reads from module attributes),
    and folding is done on the modules already, so nothing is lost. Weights are cast once to bfloat16."""
    net = _PooledInFloat32(model).eval().to(memory_format=torch.channels_last_3d)
    if dtype == "bfloat16":
        net.to(torch.bfloat16)
    return torch.compile(net, dynamic=False)


def _weights_digest(provenance: dict) -> str:
    """The part of the model's provenance that identifies its numbers: a weights digest, or "random" (seeded)."""
    if provenance.get("random"):
        return "random:" + str(provenance.get("seed", 0))
    for key in ("sha256", "digest", "weights_sha256", "weights_digest"):
        if provenance.get(key):
            return str(provenance[key])
    return json.dumps(provenance, sort_keys=True, default=str)


class FeatureExtractor:
    """I3D clip features for one video at a time: `extract(path)` streams blocks `[t, crops, D]` float32."""

    def __init__(self, name: str = "i3d_r50_rtfm", weights: str | None = None, crops: int = 10,
                 preset: str | None = None, resize: str = "short256", tail: str = "pad", clip_len: int = 16,
                 stride: int = 16, fps: float | None = None, device: str = "auto", dtype: str = "float32",
                 batch_size: int | None = None, workers: int = 1, crop_size: int = 224, compile: bool = False):
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
        if workers < 1:
            raise InputError(f"workers must be at least 1, not {workers}")
        if batch_size is not None and batch_size < 1:
            raise InputError(f"batch size must be at least 1, not {batch_size}")
        if fps is not None and fps <= 0:
            raise InputError(f"fps must be positive, not {fps}")
        self.name = name
        self.device = resolve_device(device)
        self.dtype = dtype
        self.workers = workers
        self.batch_size = batch_size or (8 if self.device.type == "cuda" else 1)
        self.fps = fps
        try:  # cheap settings first, so a typo fails before the model loads
            self.sampler = _clips.ClipSampler(clip_len=clip_len, stride=stride, tail=tail)
            _transforms.ClipTransform(resize=resize, crops=crops, crop_size=crop_size, preset=preset or "rtfm")
        except ValueError as exc:
            raise InputError(str(exc)) from None
        with torch.random.fork_rng(devices=[]):  # random weights are the same in every run (resume needs it)
            torch.manual_seed(0)
            model = load_model(name, weights=weights, device=str(self.device)).eval()
        if self.device.type == "cuda" and dtype == "float32":  # float32 means float32: no TF32 convs or matmuls
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        if self.device.type == "cuda":  # cuDNN times its algorithms once per input shape and keeps the fastest
            torch.backends.cudnn.benchmark = True
        self.compiled = False
        self._staging: list = [None] * STAGING_BUFFERS  # pinned uint8 buffers for the GPU, reused in turn
        self._copy_stream = None
        if compile and self.device.type == "cuda":
            self._eager_model = model  # kept until the compiled network has run once (the fallback)
        self.compile_requested = bool(compile and self.device.type == "cuda")
        self.network, self.traced = inference_network(model)  # `model` itself is dropped
        self.network.to(memory_format=torch.channels_last_3d)
        if dtype == "bfloat16":  # weights cast once, not by autocast on every forward (same rounding either way)
            self.network.to(torch.bfloat16)
        self.packed = False
        if self.traced and dtype == "bfloat16":
            pool_in_float32(self.network)
        if self.device.type == "cpu" and self.traced and torch.backends.mkldnn.is_available():
            sample = torch.zeros(1, 3, clip_len, crop_size, crop_size, dtype=DTYPES[dtype])
            try:
                self.network = pack_convolutions(self.network, sample.contiguous(memory_format=torch.channels_last_3d),
                                                 self.batch_size * crops)
                self.packed = True
            except (RuntimeError, NotImplementedError):  # a oneDNN build without these ops: stay eager
                pass
        self.preset = preset or model.preset
        # bfloat16 input is what autocast would feed the first conv anyway; half the bytes through the queue
        self.transform = _transforms.ClipTransform(resize=resize, crops=crops, crop_size=crop_size,
                                                   preset=self.preset, dtype=DTYPES[dtype])
        self.crops = crops
        self.clip_len, self.stride, self.tail, self.resize, self.crop_size = clip_len, stride, tail, resize, crop_size
        self.feature_dim = int(model.feature_dim)
        self.provenance = dict(model.provenance)
        self.random_weights = bool(self.provenance.get("random", False))
        self.extractor_id = self._make_id()
        if self.packed:  # the unpacked weights are garbage now: free them and hand their memory back
            del model
            release_freed_heap()

    def _numbers(self) -> dict:
        """Everything that changes the feature values (and nothing that does not, like batch size or workers)."""
        return {"name": self.name, "weights": _weights_digest(self.provenance), "clip_len": self.clip_len,
                "stride": self.stride, "fps": self.fps, "tail": self.tail, "resize": self.resize,
                "crops": self.crops, "crop_size": self.crop_size, "preset": self.preset,
                "transform": self.transform.describe(), "dtype": self.dtype}

    def _make_id(self) -> str:
        digest = hashlib.sha256(json.dumps(self._numbers(), sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.name}-random-{digest}" if self.random_weights else f"{self.name}-{digest}"

    def config(self) -> dict:
        """Settings and provenance for the manifest: what made these numbers, and how they were run."""
        return {**self._numbers(), "extractor_id": self.extractor_id, "feature_dim": self.feature_dim,
                "random_weights": self.random_weights, "provenance": self.provenance,
                "device": str(self.device), "batch_size": self.batch_size, "workers": self.workers,
                "packed_convolutions": self.packed, "compiled": self.compiled,
                "torch": torch.__version__}

    def decode_spec(self):
        """What decoder workers need to cut and (on CPU) transform clips the way this extractor expects."""
        from extractors.decoders import DecodeSpec

        return DecodeSpec(clip_len=self.clip_len, stride=self.stride, tail=self.tail, fps=self.fps,
                          resize=self.resize, crops=self.crops, crop_size=self.crop_size, preset=self.preset,
                          dtype=self.dtype, on_cpu=self.device.type == "cpu", batch_size=self.batch_size,
                          workers=self.workers)

    def extract(self, path: str | Path, start_clip: int = 0) -> "VideoFeatures":
        """Open a video (bad input raises InputError now) and return its features as an iterable of blocks."""
        return VideoFeatures(self, Path(path), start_clip)

    def __call__(self, path: str | Path) -> np.ndarray:
        """All of a video's features at once, `[T, crops, D]` float32 (short videos; long ones should stream)."""
        with self.extract(path) as feats:
            blocks = list(feats)
        return np.concatenate(blocks) if blocks else np.zeros((0, self.crops, self.feature_dim), np.float32)

    # -- the two halves of a batch ---------------------------------------------------------------------------

    def prepare(self, clips: list[np.ndarray]) -> torch.Tensor:
        """uint8 clips [T, H, W, 3] -> [b*crops, 3, T, S, S] channels_last_3d float input (CPU),
        or pinned uint8 [b, T, H, W, 3] for the GPU to transform (CUDA)."""
        u8 = torch.from_numpy(np.stack(clips))  # [b, T, H, W, 3]
        if self.device.type != "cpu":  # the transform runs on the GPU; ship the small uint8 tensor
            return u8.pin_memory()
        return self.transform.model_input(u8)  # written channels_last_3d: no second full-size copy

    def _to_input(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        x = x.reshape(b * c, *x.shape[2:])  # [b*crops, 3, T, S, S]
        return x.contiguous(memory_format=torch.channels_last_3d)

    def forward(self, x: torch.Tensor) -> np.ndarray:
        """Prepared batch (from `prepare`) -> features [b, crops, D] float32 numpy."""
        return self.run_network(self.device_input(x))

    def device_input(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared batch -> network input on the device (on CUDA the transform runs here, on the GPU)."""
        if self.device.type == "cpu":
            return x
        return self._to_input(self.transform(x.to(self.device, non_blocking=True)))

    @torch.inference_mode()
    def run_network(self, x: torch.Tensor) -> np.ndarray:
        """Network input [b*crops, 3, T, S, S] on the device -> features [b, crops, D] float32 numpy."""
        return self.collect(self.launch(x))

    @torch.inference_mode()
    def launch(self, x: torch.Tensor):
        """Start the network on a batch; `collect` gives its features. On CUDA this returns at once (the copy
        back goes to pinned memory, with an event), so the next batch can be prepared while the GPU works."""
        # bfloat16: autocast, except for the packed CPU network, which is bfloat16 throughout already (autocast
        # would hand its max-pools float32); the rounding is the same either way.
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.dtype == "bfloat16" and not self.packed and not self.compiled):
            f = self.network(x).float()  # [b*crops, D]
        if self.device.type == "cpu":
            return f, None
        host = torch.empty(f.shape, dtype=f.dtype, pin_memory=True)
        host.copy_(f, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return host, done

    def collect(self, handle) -> np.ndarray:
        """Features [b, crops, D] float32 numpy of a batch started with `launch` (waits for it alone)."""
        f, done = handle
        if done is not None:
            done.synchronize()
        return f.reshape(-1, self.crops, f.shape[-1]).numpy()

    def input_shape(self, clips: int) -> tuple[int, ...]:
        return (clips * self.crops, 3, self.clip_len, self.crop_size, self.crop_size)

    def warmup(self, log=print) -> None:
        """Run one full batch, so cuDNN's autotuning (and torch.compile, if asked) happen before the timed work.

        A network that torch.compile cannot compile falls back to the eager one, with a one-line note."""
        if self.device.type != "cuda":
            return
        x = torch.zeros(self.input_shape(self.batch_size), dtype=DTYPES[self.dtype], device=self.device)
        x = x.contiguous(memory_format=torch.channels_last_3d)
        if self.compile_requested and not self.compiled:
            eager = self.network
            try:
                log("compiling the network with torch.compile (about a minute, once per run)")
                self.network, self.compiled = compile_network(self._eager_model, self.dtype), True
                self.run_network(x)
            except Exception as exc:  # inductor cannot compile this model here: run it eager
                self.network, self.compiled = eager, False
                log(f"note: torch.compile failed ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
                    "running the network eager")
            self._eager_model = None
        self.run_network(x)
        torch.cuda.synchronize(self.device)

    def upload(self, payload: torch.Tensor, borrowed: bool = False) -> torch.Tensor:
        """A decoder's clips -> model input on the device: on CPU they are it already (copied when `borrowed`:
        a decoder's shared slot, reused once this returns); on CUDA, uint8 clips go through a ring of reused
        pinned buffers, on a copy stream of their own (so staging never waits for the network running on the
        main stream), to the GPU, which runs the transform."""
        if self.device.type == "cpu":
            return payload.clone() if borrowed else payload  # clone keeps the channels_last_3d layout
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        n = payload.numel()
        slot = self._staging.pop(0)
        if slot is None or slot[0].numel() < n:
            slot = (torch.empty(max(n, 1), dtype=torch.uint8, pin_memory=True), torch.cuda.Event())
        else:
            slot[1].synchronize()  # this buffer's last copy to the GPU has finished
        buf, copied = slot
        staged = buf[:n].view(payload.shape)
        staged.copy_(payload)
        with torch.cuda.stream(self._copy_stream):
            on_device = staged.to(self.device, non_blocking=True)
            copied.record(self._copy_stream)
        main = torch.cuda.current_stream(self.device)
        main.wait_event(copied)  # the transform (on the main stream) starts after the copy, the CPU does not wait
        on_device.record_stream(main)  # allocated on the copy stream, used on the main one
        self._staging.append(slot)
        return self._to_input(self.transform(on_device))


class VideoFeatures:
    """One video's features as an iterator of blocks `[t, crops, D]`; `.info` is the VideoInfo, `.num_clips` the expected T."""

    def __init__(self, extractor: FeatureExtractor, path: Path, start_clip: int = 0):
        self.extractor, self.path, self.start_clip = extractor, path, start_clip
        self.reader = _decode.open_video(path, target_fps=extractor.fps)
        try:
            self.info = self.reader.info
            self.num_clips = extractor.sampler.num_clips(self.info.num_frames)
            if self.num_clips <= 0:
                raise InputError(f"{self.info.num_frames} frames is fewer than one clip of {extractor.clip_len} "
                                 f"with tail={extractor.tail}")
            if start_clip > self.num_clips:
                raise InputError(f"cannot resume at clip {start_clip}: the video has {self.num_clips} clips")
        except BaseException:
            self.reader.close()
            raise
        self.clips_done = start_clip
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- producer (worker thread) ----------------------------------------------------------------------------

    def _batches(self) -> Iterator[list[np.ndarray]]:
        """Clips grouped into batches aligned to absolute clip indices, starting at start_clip."""
        sampler, bs = self.extractor.sampler, self.extractor.batch_size
        batch: list[np.ndarray] = []
        index = self.start_clip
        for clip in sampler.read_clips(self.reader, self.start_clip, chunk_size=CHUNK_FRAMES):  # uint8 [T, H, W, 3]
            batch.append(clip)
            index += 1
            if index % bs == 0:
                yield batch
                batch = []
            if self._stop.is_set():
                return
        if batch:
            yield batch

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        pool = ThreadPoolExecutor(self.extractor.workers - 1) if self.extractor.workers > 1 else None
        try:
            for batch in self._batches():
                n = len(batch)
                item = pool.submit(self.extractor.prepare, batch) if pool else self.extractor.prepare(batch)
                if not self._put(("batch", n, item)):
                    return
            self._put(("end", 0, None))
        except BaseException as exc:  # handed to the consumer, which re-raises it in the caller's thread
            self._put(("error", 0, exc))
        finally:
            if pool:
                pool.shutdown(wait=True, cancel_futures=True)

    # -- consumer (caller's thread) --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._thread is not None:
            raise RuntimeError("VideoFeatures can be iterated once")
        self._thread = threading.Thread(target=self._produce, name=f"decode:{self.path.name}", daemon=True)
        self._thread.start()
        try:
            while True:
                kind, n, item = self._queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                x = item.result() if hasattr(item, "result") else item
                block = self.extractor.forward(x)  # [n, crops, D]
                del x, item
                self.clips_done += n
                yield block
            if self.clips_done == 0:
                raise InputError("no frames could be decoded")
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker and release the decoder; safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)
        self.reader.close()

    def __enter__(self) -> "VideoFeatures":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
