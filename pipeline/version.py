"""The code version that made an output: the package version and, in a git checkout, the commit.

Reports and `mgfn --version` say it, so a result can be traced to the code that produced it.
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

DISTRIBUTION = "mgfn-vad"                  # [project] name in pyproject.toml
REPO = Path(__file__).resolve().parents[1]


@functools.cache
def package_version() -> str:
    """The installed distribution's version, else pyproject.toml's beside the package, else 'unknown'."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):       # no git, or it hangs
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def git_commit() -> str | None:
    """Short commit of the checkout the code runs from, with '+modified' when tracked files differ; None outside git."""
    commit = _git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return None
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+modified" if changes else commit


def code_version() -> str:
    """'0.1.0 (git 0123456789ab)', or just the package version where there is no git checkout."""
    commit = git_commit()
    return f"{package_version()} (git {commit})" if commit else package_version()
