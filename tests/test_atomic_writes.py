"""Atomicity audit: every file the project writes goes through mgfn.atomic (temporary name, fsync, rename, folder
fsync), except the few writes listed in ALLOWED with their reasons; plus unit tests of the helper itself."""
from __future__ import annotations

import ast
import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from mgfn import atomic
from mgfn.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mgfn", "pipeline", "extractors")
HELPER = "mgfn/atomic.py"

# (file, text on the offending line, why it may bypass mgfn.atomic). An entry that matches nothing fails too,
# so the list cannot go stale.
ALLOWED = [
    ("pipeline/store.py", 'open(self.manifest_path, "a+b"',
     "the feature store's manifest is append-only by design: one fsynced JSON line per record, a failed append is "
     "cut back, a torn last line (a kill mid-append) is cut by the next writer; several processes append under a lock"),
    ("pipeline/store.py", 'open(self.part, "wb")',
     "the .part feature writer streams a long video's rows, fsynced every --flush-every clips with a progress "
     "record (written atomically), so a killed run resumes from its last flushed clip; resumable by design"),
    ("pipeline/store.py", 'open(self.part, "r+b")',
     "resuming a .part: rows past the last progress record are cut off and recomputed (resumable by design)"),
    ("pipeline/store.py", "os.replace(self.part, self.final)",
     "the .part's own rename into place once complete (fsynced before, folder fsynced after)"),
    ("extractors/weights.py", "tempfile.mkstemp(",
     "the weights download: extractors may not import mgfn (README: extractors knows nothing of MGFN), so it "
     "streams into its own temporary .part name, checks the sha256, fsyncs, renames and fsyncs the folder"),
    ("extractors/weights.py", 'os.fdopen(fd, "wb")', "the weights download (see above)"),
    ("extractors/weights.py", "os.replace(tmp, dest)", "the weights download (see above)"),
    ("mgfn/train.py", "SummaryWriter(",
     "TensorBoard event files: TensorBoard's own append-only log, cut back with purge_step on --resume; a viewer's "
     "convenience, never read back by the project (metrics.csv, written atomically, is the record)"),
    ("pipeline/datasets/common.py", "os.link(src, dst)",
     "`mgfn data --link hard`: a hard link is a second name for a complete file, never half of one"),
]

# call -> index of the argument that names the file written (None: any call is a write)
TARGET_ARG = {
    ("np", "save"): 0, ("numpy", "save"): 0, ("np", "savez"): 0, ("np", "savez_compressed"): 0,
    ("np", "savetxt"): 0, ("torch", "save"): 1, ("json", "dump"): 1, ("pickle", "dump"): 1, ("yaml", "dump"): 1,
    ("yaml", "safe_dump"): 1, ("shutil", "copy"): 1, ("shutil", "copy2"): 1, ("shutil", "copyfile"): 1,
    ("shutil", "move"): 1, ("os", "replace"): None, ("os", "rename"): None, ("os", "link"): None,
    ("os", "symlink"): None, ("tempfile", "mkstemp"): None, ("tempfile", "NamedTemporaryFile"): None,
}
METHOD_TARGET_ARG = {"savefig": 0, "tofile": 0, "write_text": None, "write_bytes": None, "symlink_to": None,
                     "hardlink_to": None, "rename": None}
IN_MEMORY = ("BytesIO", "StringIO")
OS_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC")


def _dotted(node) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif parts:
        parts.append("<expr>")                                  # (root / "x.csv").open(...): a receiver all the same
    return tuple(reversed(parts))


def _const_str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _name_of(node) -> str | None:
    """The variable a file argument names: `f`, `tmp`, `str(tmp)`."""
    if isinstance(node, ast.Call) and _dotted(node.func) == ("str",) and node.args:
        node = node.args[0]
    return node.id if isinstance(node, ast.Name) else None


def _open_mode(call: ast.Call, name: tuple[str, ...]) -> str | None:
    """The mode of an open-like call (None: a read, or not an open); '?' when it is not a constant."""
    for kw in call.keywords:
        if kw.arg == "mode":
            return _const_str(kw.value) or "?"
    if name == ("open",) or name[-2:] in (("io", "open"), ("os", "fdopen")):
        return (_const_str(call.args[1]) or "?") if len(call.args) > 1 else None
    if name[-1] == "open" and call.args:                       # Path.open(mode), av.open(file, mode)
        first = _const_str(call.args[0])
        if first is not None and len(first) <= 3 and set(first) <= set("rwxabt+"):
            return first
        return (_const_str(call.args[1]) or "?") if len(call.args) > 1 else None
    return None


class _Audit(ast.NodeVisitor):
    def __init__(self, source: str):
        self.lines = source.splitlines()
        self.atomic: list[tuple[str, int, int]] = []   # (name, first line, last line) of `with atomic_*(...) as name`
        self.memory: set[str] = set()                   # names bound to io.BytesIO() / io.StringIO()
        self.found: list[tuple[int, str]] = []

    def visit_With(self, node):
        for item in node.items:
            call = item.context_expr
            if (isinstance(call, ast.Call) and _dotted(call.func)[-1:] in (("atomic_open",), ("atomic_path",))
                    and isinstance(item.optional_vars, ast.Name)):
                self.atomic.append((item.optional_vars.id, node.lineno, node.end_lineno))
        self.generic_visit(node)

    def visit_Assign(self, node):
        if isinstance(node.value, ast.Call) and _dotted(node.value.func)[-1:] in [(m,) for m in IN_MEMORY]:
            self.memory.update(t.id for t in node.targets if isinstance(t, ast.Name))
        self.generic_visit(node)

    def _safe_target(self, node, line: int) -> bool:
        name = _name_of(node)
        if name is None:
            return False
        return name in self.memory or any(n == name and a <= line <= b for n, a, b in self.atomic)

    def _flag(self, node, what: str) -> None:
        self.found.append((node.lineno, what))

    def visit_Call(self, node):
        name = _dotted(node.func)
        if name:
            self._check(node, name)
        self.generic_visit(node)

    def _check(self, node: ast.Call, name: tuple[str, ...]) -> None:
        key = name[-2:]
        if key in TARGET_ARG:
            i = TARGET_ARG[key]
            target = None
            if i is not None:
                target = node.args[i] if len(node.args) > i else next(
                    (kw.value for kw in node.keywords if kw.arg in ("file", "fp", "f", "stream", "fname", "dst")), None)
                if target is None and key[0] == "yaml":                 # yaml.safe_dump(obj): returns a string
                    return
            if target is None or not self._safe_target(target, node.lineno):
                self._flag(node, ".".join(name))
            return
        if name[-1] in METHOD_TARGET_ARG and len(name) > 1:
            if name[-1] in ("write_text", "write_bytes") and name[0] == "atomic":   # the helper itself
                return
            i = METHOD_TARGET_ARG[name[-1]]
            if i is None or len(node.args) <= i or not self._safe_target(node.args[i], node.lineno):
                self._flag(node, "." + name[-1])
            return
        if key == ("os", "open"):
            flags = ast.unparse(node.args[1]) if len(node.args) > 1 else ""
            if any(f in flags for f in OS_WRITE_FLAGS) and not self._safe_target(node.args[0], node.lineno):
                self._flag(node, "os.open for writing")
            return
        if name[-1] == "SummaryWriter":
            self._flag(node, "SummaryWriter")
            return
        if name[-1] in ("open", "fdopen"):
            mode = _open_mode(node, name)
            if mode is None or not set(mode) & set("wax+?"):
                return
            if name == ("open",) or name[-2:] in (("io", "open"), ("av", "open"), ("os", "fdopen")):
                target = node.args[0] if node.args else None
            else:                                                    # Path.open(mode): the receiver is the file
                target = node.func.value if isinstance(node.func, ast.Attribute) else None
            if target is None or not self._safe_target(target, node.lineno):
                self._flag(node, f"{'.'.join(name)}(mode {mode!r})")


def audit() -> list[tuple[str, int, str, str]]:
    """(file, line, what, source line) of every write outside mgfn.atomic."""
    out = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel == HELPER:
                continue
            source = path.read_text()
            visitor = _Audit(source)
            visitor.visit(ast.parse(source, rel))
            for line, what in visitor.found:
                out.append((rel, line, what, visitor.lines[line - 1].strip()))
    return out


def test_every_write_goes_through_the_atomic_helper():
    found = audit()
    used = set()
    bypass = []
    for rel, line, what, text in found:
        hit = next((i for i, (f, snippet, _) in enumerate(ALLOWED) if f == rel and snippet in text), None)
        if hit is None:
            bypass.append(f"{rel}:{line}: {what}: {text}")
        else:
            used.add(hit)
    assert not bypass, ("writes that bypass mgfn.atomic (use write_bytes / write_text / atomic_open / atomic_path, "
                        "or add an ALLOWED entry with the reason):\n" + "\n".join(bypass))
    stale = [f"{f}: {snippet}" for i, (f, snippet, _) in enumerate(ALLOWED) if i not in used]
    assert not stale, "ALLOWED entries that match no write any more:\n" + "\n".join(stale)


@pytest.mark.parametrize("code, flagged", [
    ('p.write_text("x")', True),
    ('open(p, "w")', True),
    ('open(p)', False),
    ('p.open("a")', True),
    ('(root / "x.csv").open("w", newline="")', True),
    ('(root / "x.md").write_text("x")', True),
    ('p.open(newline="")', False),
    ('np.save(p, a)', True),
    ('torch.save(obj, p)', True),
    ('fig.savefig(p)', True),
    ('json.dump(obj, f)', True),
    ('os.replace(a, b)', True),
    ('shutil.copy2(a, b)', True),
    ('av.open(str(p), mode="w")', True),
    ('with atomic_open(p) as f:\n    np.save(f, a)', False),
    ('with atomic_open(p, "w") as f:\n    json.dump(obj, f)', False),
    ('with atomic_path(p) as tmp, av.open(str(tmp), mode="w") as c:\n    pass', False),
    ('with atomic_path(p) as tmp:\n    shutil.copy2(a, tmp)', False),
    ('buf = io.BytesIO()\nnp.save(buf, a)', False),
    ('atomic.write_text(p, "x")', False),
    ('text = yaml.safe_dump(cfg)', False),
    ('yaml.safe_dump(cfg, stream)', True),
    ('write_text(p, "x")', False),
])
def test_the_audit_sees_writes_and_lets_the_helper_through(code, flagged):
    visitor = _Audit(code)
    visitor.visit(ast.parse(code))
    assert bool(visitor.found) == flagged, visitor.found


# ----------------------------------------------------------------------------------------- the helper itself

def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_bytes_and_text(tmp_path):
    assert atomic.write_bytes(tmp_path / "a.bin", b"\x00\x01") == tmp_path / "a.bin"
    atomic.write_text(tmp_path / "b.txt", "héllo\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_bytes() == "héllo\n".encode()
    atomic.write_text(tmp_path / "b.txt", "again")                     # replaces
    assert (tmp_path / "b.txt").read_text() == "again"
    assert _temps(tmp_path) == []


def test_files_get_the_usual_permissions(tmp_path):
    """Not mkstemp's 0600: a feature store or checkpoint shared with others stays readable by them."""
    old = os.umask(0o022)
    try:
        atomic.write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_atomic_open_for_numpy_torch_csv(tmp_path):
    import csv

    import torch

    with atomic.atomic_open(tmp_path / "a.npy") as f:
        np.save(f, np.arange(5))
    with atomic.atomic_open(tmp_path / "m.pt") as f:
        torch.save({"w": torch.ones(2)}, f)
    with atomic.atomic_open(tmp_path / "t.csv", "w", newline="") as f:
        csv.writer(f).writerows([["a", "b"], [1, 2]])
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3, 4]
    assert torch.load(tmp_path / "m.pt", weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert (tmp_path / "t.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    assert _temps(tmp_path) == []
    with pytest.raises(ValueError):
        with atomic.atomic_open(tmp_path / "x", "ab"):
            pass


def test_a_crash_inside_atomic_open_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_bytes(b"old and complete\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_open(target, "wb") as f:
            f.write(b"new but half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old and complete\n"
    assert _temps(tmp_path) == []


def test_a_full_disk_inside_atomic_open_keeps_the_old_file_and_names_it(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    target.write_bytes(b"epoch 3")
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic.write_bytes(target, b"epoch 4" * 1000)
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert atomic.is_disk_error(info.value)
    assert target.read_bytes() == b"epoch 3"
    assert _temps(tmp_path) == []


def test_a_failed_create_names_the_target_not_its_temporary_file(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(atomic.os, "open", read_only)
    with pytest.raises(OSError) as info:
        atomic.write_text(tmp_path / "report.html", "x")
    assert info.value.errno == errno.EROFS and info.value.filename == str(tmp_path / "report.html")


def test_atomic_path_for_libraries_that_want_a_name(tmp_path):
    target = tmp_path / "v.mp4"
    with atomic.atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp") and not tmp.exists()
        tmp.write_bytes(b"video")
    assert target.read_bytes() == b"video"
    with pytest.raises(KeyError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyError
    assert target.read_bytes() == b"video" and _temps(tmp_path) == []


def test_temp_names_are_unique_per_process_and_write(tmp_path):
    a, b = atomic.tmp_name(tmp_path / "x.npy"), atomic.tmp_name(tmp_path / "x.npy")
    assert a != b and a.name.startswith(".x.npy.") and f"{atomic.HOST}-{os.getpid()}-" in a.name
    long = atomic.tmp_name(tmp_path / ("é" * 120 + ".npy"))
    assert len(os.fsencode(long.name)) <= 255


def test_threads_writing_one_file_never_mix(tmp_path):
    target = tmp_path / "shared.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=atomic.write_bytes, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads and _temps(tmp_path) == []


def test_temps_of_dead_processes_are_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "run"
    folder.mkdir()
    leftovers = {
        f".metrics.csv.{atomic.HOST}-{dead.pid}-3.tmp": False,         # a killed run's: removed
        f"f.npy.{atomic.HOST}-{dead.pid}.tmp": False,                  # the store's older form: removed
        f".best.pt.{atomic.HOST}-{os.getpid()}-99.tmp": True,          # a live process's (this one): kept
        f".best.pt.{atomic.HOST}-1-2.tmp": True,                       # pid 1 is alive
        f".best.pt.otherhost-{dead.pid}-1.tmp": True,                  # another host's: its own business
        "notes.tmp": True,                                             # not ours
    }
    for name in leftovers:
        (folder / name).write_bytes(b"x")
    atomic.write_text(folder / "metrics.csv", "epoch\n1\n")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["metrics.csv"] + [n for n, kept in leftovers.items() if kept])


def test_check_writable_refuses_a_read_only_folder(tmp_path, monkeypatch):
    atomic.check_writable(tmp_path)                              # writable: no error, no probe left behind
    atomic.check_writable(tmp_path / "not" / "made" / "yet")     # checked in its nearest existing parent
    assert list(tmp_path.iterdir()) == []
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(atomic.os, "open", read_only)
    with pytest.raises(InputError) as info:
        atomic.check_writable(tmp_path, "feature store")
    assert str(info.value) == (f"feature store {tmp_path} is not writable (read-only file system): "
                               "make it writable or choose another folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 folder anyway (the bind-mount test covers it)")
def test_check_writable_refuses_a_folder_without_write_permission(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError, match="is not writable"):
            atomic.check_writable(folder)
    finally:
        folder.chmod(0o755)
