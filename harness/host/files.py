"""Report files appear whole or not at all: each is written under a hidden temporary
name and renamed into place, so a run that dies mid-write leaves no file that looks
complete (the run folder itself is marked incomplete by `harness.cli.runs`)."""

from __future__ import annotations

import os
from pathlib import Path


def partial_name(path: Path) -> Path:
    """Where `path` is written before it is complete: `.name.partial` beside it."""
    return path.with_name(f".{path.name}.partial")


def publish(path: Path) -> None:
    """Rename a finished `partial_name(path)` into place, if it was written."""
    tmp = partial_name(path)
    if tmp.exists():
        os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through its partial name."""
    tmp = partial_name(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
