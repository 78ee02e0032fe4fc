"""Report files appear whole or not at all: each is written under a hidden temporary
name and renamed into place, so a run that dies mid-write leaves no file that looks
complete (the run folder itself is marked incomplete by `harness.cli.runs`).

`WRITE_ERRORS` are the errnos that say the disk, not the code, failed a write: a
run that meets one keeps nothing it wrote (`harness.session.interrupts`)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def partial_name(path: Path) -> Path:
    """Where `path` is written before it is complete: `.name.partial` beside it."""
    return path.with_name(f".{path.name}.partial")


def publish(path: Path) -> None:
    """Rename a finished `partial_name(path)` into place, if it was written."""
    tmp = partial_name(path)
    if tmp.exists():
        os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through its partial name; whatever stops the write (a
    full disk, an I/O error, a signal's KeyboardInterrupt), neither name is left cut short."""
    tmp = partial_name(path)
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
