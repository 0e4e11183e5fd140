"""Weights registry: resolution (name, path, "random"), download once into the hub cache with sha256 checks,
offline errors, checkpoint format detection, and the safe Caffe2 unpickler."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import pickle
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import extractors
from extractors import weights as W
from extractors.errors import InputError
from extractors.models import EXTRACTORS
from extractors.weights import WEIGHTS, caffe2_blob_to_tushar_key, read_weights, resolve_weights, weights_digest


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torch.hub's cache redirected to a temporary folder; returns its `checkpoints` folder."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


def _register(monkeypatch, **changes) -> W.WeightsEntry:
    """A registry entry like the Inception one, but with `changes` (url, sha256, filename, ...)."""
    entry = dataclasses.replace(WEIGHTS["i3d_inception_rgb_imagenet"], **changes)
    monkeypatch.setitem(WEIGHTS, entry.name, entry)
    return entry


@pytest.fixture
def served(tmp_path):
    """A local HTTP server on 127.0.0.1 serving `tmp_path/www`; yields (base_url, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    log = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            log.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, log
    finally:
        server.shutdown()
        server.server_close()


def _payload(path: Path) -> bytes:
    torch.save({"Conv3d_1a_7x7.conv3d.weight": torch.arange(12.0)}, path)
    return path.read_bytes()


def _closed_port_url(filename: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{filename}"  # nothing listens there once the socket is closed


# ---- registry -----------------------------------------------------------------------------------------------------

def test_registry_entries_are_consistent():
    for name, entry in WEIGHTS.items():
        assert entry.name == name and entry.arch in W.ARCH_FAMILY and entry.format in W.FORMATS
        assert W.FORMATS[entry.format].family == W.ARCH_FAMILY[entry.arch]
        assert entry.preset and entry.filename and (entry.url is None or entry.url.startswith("https://"))
        assert entry.sha256 is None or len(entry.sha256) == 64
    for name, spec in EXTRACTORS.items():
        default = WEIGHTS[spec["default_weights"]]
        assert default.arch == spec["arch"] and default.preset == spec["preset"]
        assert default.url is not None
    assert extractors.EXTRACTORS is EXTRACTORS and callable(extractors.load_model)


def test_caffe2_blob_names_map_as_in_the_reference_table(r50_ref):
    pairs = [line.split(" -> ") for line in (r50_ref / "caffe2_blobs.txt").read_text().splitlines()
             if " -> " in line and not line.startswith("#")]
    assert len(pairs) == 267
    for blob, key in pairs:
        assert caffe2_blob_to_tushar_key(blob) == key.strip()
    for ignored in ("conv1_w_momentum", "res2_0_branch2a_bn_s_momentum", "lr", "model_iter"):
        assert caffe2_blob_to_tushar_key(ignored) is None
    with pytest.raises(InputError, match="non-local"):
        caffe2_blob_to_tushar_key("nonlocal_conv3_1_theta_w")


# ---- resolution ---------------------------------------------------------------------------------------------------

def test_random_weights_only_when_asked_for(hub_dir):
    resolved = resolve_weights("random", "i3d_inception")
    assert resolved.random and resolved.path is None
    model = extractors.load_model("i3d_inception", weights="random")
    assert model.provenance["random"] is True and model.provenance["sha256"] == "random"
    assert model.feature_dim == 1024 and model.preset == "inception"


def test_local_path_and_digest(tmp_path):
    path = tmp_path / "w.pt"
    data = _payload(path)
    resolved = resolve_weights(str(path), "i3d_inception")
    assert resolved.path == path.resolve() and not resolved.random
    assert resolved.sha256 == weights_digest(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("spec, message", [
    ("no/such/file.pt", "no such file"),
    ("i3d_r50_kinetics_caffe2", "are for i3d_r50_caffe2, not i3d_inception"),
])
def test_bad_weights_spec_is_an_input_error(spec, message):
    with pytest.raises(InputError, match=message):
        resolve_weights(spec, "i3d_inception")


def test_unknown_extractor_is_an_input_error():
    with pytest.raises(InputError, match="unknown extractor"):
        extractors.load_model("c3d")


def test_weights_for_another_family_are_refused(tmp_path):
    path = tmp_path / "inception.pt"
    _payload(path)
    torch.save(extractors.load_model("i3d_inception", weights="random").state_dict(), path)
    with pytest.raises(InputError, match="i3d_inception weights"):
        extractors.load_model("i3d_r50_rtfm", weights=path)


def test_fine_tuned_head_keeps_its_class_count(tmp_path):
    from extractors.i3d_inception import InceptionI3d

    path = tmp_path / "two_classes.pt"
    torch.save(InceptionI3d(num_classes=2).state_dict(), path)
    model = extractors.load_model("i3d_inception", weights=path)
    assert model.logits.conv3d.out_channels == 2 and model.feature_dim == 1024


def test_checkpoint_missing_tensors_is_an_input_error(tmp_path):
    from extractors.i3d_inception import InceptionI3d

    state = InceptionI3d().state_dict()
    del state["Mixed_5c.b0.bn.running_var"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(InputError, match="1 missing keys"):
        extractors.load_model("i3d_inception", weights=path)


def test_unrecognised_checkpoint_is_an_input_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="unrecognised I3D checkpoint"):
        read_weights(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="cannot read weights file"):
        read_weights(path)


def test_wrapped_and_prefixed_state_dicts_are_detected(tmp_path):
    state = extractors.load_model("i3d_inception", weights="random").state_dict()
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 3}, path)
    loaded = read_weights(path)
    assert loaded.format == "piergiaj_pt" and loaded.state_dict.keys() == state.keys()


# ---- download ------------------------------------------------------------------------------------------------------

def test_download_over_http_once_then_reuse(hub_dir, served, monkeypatch, tmp_path):
    base, root, log = served
    data = _payload(root / "rgb_imagenet.pt")
    _register(monkeypatch, url=f"{base}/rgb_imagenet.pt", sha256=hashlib.sha256(data).hexdigest())

    resolved = resolve_weights("i3d_inception_rgb_imagenet", "i3d_inception")
    assert resolved.path == hub_dir / "rgb_imagenet.pt" and resolved.path.read_bytes() == data
    assert resolved.sha256 == hashlib.sha256(data).hexdigest() and resolved.entry.name == "i3d_inception_rgb_imagenet"
    assert sorted(p.name for p in hub_dir.iterdir()) == ["rgb_imagenet.pt"]  # no temporary file left behind
    assert log == ["/rgb_imagenet.pt"]

    again = resolve_weights("i3d_inception_rgb_imagenet", "i3d_inception")
    assert again.path == resolved.path and log == ["/rgb_imagenet.pt"]  # reused, not downloaded again


def test_download_from_file_url_without_known_sha(hub_dir, monkeypatch, tmp_path):
    source = tmp_path / "elsewhere" / "i3d_rgb.pt"
    source.parent.mkdir()
    data = _payload(source)
    _register(monkeypatch, url=source.as_uri(), filename="i3d_rgb.pt", sha256=None)
    resolved = resolve_weights("i3d_inception_rgb_imagenet", "i3d_inception")
    assert resolved.path == hub_dir / "i3d_rgb.pt" and resolved.path.read_bytes() == data
    assert resolved.sha256 == hashlib.sha256(data).hexdigest()


def test_sha256_mismatch_is_refused_and_nothing_is_kept(hub_dir, served, monkeypatch):
    base, root, _ = served
    _payload(root / "rgb_imagenet.pt")
    _register(monkeypatch, url=f"{base}/rgb_imagenet.pt", sha256="0" * 64)
    with pytest.raises(InputError, match="sha256 mismatch"):
        resolve_weights("i3d_inception_rgb_imagenet", "i3d_inception")
    assert not any(hub_dir.iterdir())


def test_cached_file_with_wrong_sha256_is_refused(hub_dir, monkeypatch, tmp_path):
    hub_dir.mkdir(parents=True)
    _payload(hub_dir / "rgb_imagenet.pt")
    _register(monkeypatch, url="https://example.invalid/rgb_imagenet.pt", sha256="1" * 64)
    with pytest.raises(InputError, match=f"sha256 mismatch.*delete {hub_dir / 'rgb_imagenet.pt'}"):
        resolve_weights("i3d_inception_rgb_imagenet", "i3d_inception")


def test_offline_error_names_the_file_its_url_and_where_to_put_it(hub_dir, monkeypatch):
    url = _closed_port_url("rgb_imagenet.pt")
    _register(monkeypatch, url=url)
    with pytest.raises(InputError) as info:
        extractors.load_model("i3d_inception")  # weights=None: the registry default
    message = str(info.value)
    assert "\n" not in message
    assert "rgb_imagenet.pt" in message and url in message and str(hub_dir / "rgb_imagenet.pt") in message
    assert not hub_dir.exists() or not any(hub_dir.iterdir())


def test_missing_http_file_is_an_input_error(hub_dir, served, monkeypatch):
    base, _, _ = served
    _register(monkeypatch, url=f"{base}/missing.pt")
    with pytest.raises(InputError, match="HTTP 404"):
        resolve_weights("i3d_inception_rgb_imagenet", "i3d_inception")


def test_entry_without_url_says_where_to_put_the_file(hub_dir):
    with pytest.raises(InputError, match=f"put the file at {hub_dir / 'i3d_r50_kinetics.pth'}"):
        resolve_weights("i3d_r50_kinetics_tushar", "i3d_r50_caffe2")


def test_cached_registry_file_is_used_by_load_model(hub_dir, recipe, r50_ref, r50_tushar_state):
    hub_dir.mkdir(parents=True)
    recipe.write_caffe2_pkl(r50_tushar_state, r50_ref / "caffe2_blobs.txt",
                            hub_dir / "i3d_baseline_32x2_IN_pretrain_400k.pkl")
    model = extractors.load_model("i3d_r50_rtfm", fold_batchnorm=False)
    prov = model.provenance
    assert prov["weights_name"] == "i3d_r50_kinetics_caffe2" and prov["weights_format"] == "caffe2_pkl"
    assert prov["sha256"] == weights_digest(hub_dir / "i3d_baseline_32x2_IN_pretrain_400k.pkl")
    ours = model.state_dict()
    assert torch.equal(ours["blocks.5.res_blocks.2.branch2.norm_c.running_var"],
                       r50_tushar_state["layer4.2.bn3.running_var"])


def test_cached_file_in_another_format_is_refused(hub_dir):
    hub_dir.mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(1), "layer4.2.conv3.weight": torch.zeros(1)},
               hub_dir / "i3d_baseline_32x2_IN_pretrain_400k.pkl")
    with pytest.raises(InputError, match="is a tushar_pth checkpoint, not the caffe2_pkl file"):
        extractors.load_model("i3d_r50_rtfm")


# ---- Caffe2 pickles: numpy arrays only --------------------------------------------------------------------------

class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_caffe2_unpickler_refuses_arbitrary_globals(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": _Exploit(marker)}}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        W._load_caffe2_pickle(path)
    with pytest.raises(InputError):
        read_weights(path)
    assert not marker.exists()


def test_caffe2_pickle_without_blobs_wrapper(tmp_path, r50_tushar_state, r50_ref):
    pairs = [line.split(" -> ") for line in (r50_ref / "caffe2_blobs.txt").read_text().splitlines()
             if " -> " in line and not line.startswith("#")]
    blobs = {blob: r50_tushar_state[key.strip()].numpy() for blob, key in pairs}
    path = tmp_path / "flat.pkl"
    with open(path, "wb") as f:
        pickle.dump(blobs, f, protocol=2)
    loaded = read_weights(path)
    assert loaded.format == "caffe2_pkl" and len(loaded.state_dict) == 267
    assert all(v.dtype == torch.float32 for v in loaded.state_dict.values())
    assert isinstance(blobs["conv1_w"], np.ndarray)
