"""Run folders under reports/: one per run, named so they sort by time, never reused.

A run writes into a hidden `.partial` folder and is renamed into place only when the
run ends; a run that dies leaves a folder marked incomplete, never one that looks whole.
`prune` (`kvmconf run --keep N`) removes old run folders and the `.partial` folders of
runs that died, never the newest nor the one `reports/latest` names.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from harness.errors import ReportsNotWritable
from harness.host.files import write_atomic
from harness.paths import REPORTS

CACHE_DIR = ".cache"  # pytest's cache (--lf, --ff), beside the run folders
MIN_FREE = 32 * 1024 * 1024  # a run writes about 7 MB (report.html is most of it); a guest run more
RUN_ID = re.compile(r"^(\d{8}-\d{6}-\d{3})-(\d+)$")  # new_run_id: time, milliseconds, pid
PARTIAL = re.compile(r"^\.(\d{8}-\d{6}-\d{3}-(\d+))\.partial$")


def new_run_id(now: float | None = None) -> str:
    t = time.time() if now is None else now
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(t)) + f"-{int(t * 1000) % 1000:03d}-{os.getpid()}"


class RunFolder:
    """reports/<id>: created as reports/.<id>.partial, published by `finish()`."""

    def __init__(self, reports: Path = REPORTS, run_id: str | None = None) -> None:
        self.reports = reports
        self.id = run_id or new_run_id()
        self.final = reports / self.id
        self.partial = reports / f".{self.id}.partial"
        if reports.exists() and not reports.is_dir():
            raise ReportsNotWritable(f"{reports}: not a folder; give --reports DIR, a folder for the run folders")
        try:
            reports.mkdir(parents=True, exist_ok=True)
            free = os.statvfs(reports)
            if free.f_bavail * free.f_frsize < MIN_FREE:
                raise ReportsNotWritable(f"{reports}: only {free.f_bavail * free.f_frsize // 1024} KiB free, a run needs "
                                         f"{MIN_FREE // 2**20} MiB; free space or give --reports DIR")
            self.partial.mkdir()
            probe = self.partial / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            shutil.rmtree(self.partial, ignore_errors=True)
            raise ReportsNotWritable(f"{reports}: cannot write run reports there ({e.strerror}); give --reports DIR") from None

    @property
    def path(self) -> Path:
        return self.partial

    def finish(self) -> Path:
        """Publish the run and point reports/latest at it."""
        self.partial.rename(self.final)
        self._point_latest(self.final)
        return self.final

    def _point_latest(self, folder: Path) -> None:
        """reports/latest names the newest run, complete or not (its INCOMPLETE says so)."""
        tmp = self.reports / f".latest.{os.getpid()}"
        try:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(folder.name)
            tmp.replace(self.reports / "latest")
        except OSError:
            pass

    def abandon(self) -> None:
        """Remove a run that never started (bad input): nothing half-written stays."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def mark_incomplete(self, why: str) -> Path:
        """Keep what a broken run wrote, under a name that says it is incomplete; the
        INCOMPLETE file says why (it too is whole or absent: the name says it already)."""
        try:
            write_atomic(self.partial / "INCOMPLETE", why + "\n")
        except OSError:
            pass
        target = self.reports / f"{self.id}.incomplete"
        self.partial.rename(target)
        self._point_latest(target)
        return target


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def prune(reports: Path, keep: int) -> list[Path]:
    """Remove all but the `keep` newest run folders (complete or incomplete) and the
    `.partial` folders of runs whose process is gone; never the newest run nor the one
    reports/latest names, and never a running run's. Returns what was removed."""
    try:
        latest = (reports / "latest").resolve(strict=True).name
    except OSError:
        latest = None
    runs, dead = [], []
    for entry in reports.iterdir():
        name = entry.name.removesuffix(".incomplete")
        if entry.is_dir() and not entry.is_symlink() and RUN_ID.match(name):
            runs.append(entry)
        elif (m := PARTIAL.match(entry.name)) and entry.is_dir() and not _alive(int(m[2])):
            dead.append(entry)
    runs.sort(key=lambda p: p.name.removesuffix(".incomplete"), reverse=True)
    old = [p for p in runs[max(keep, 1):] if p.name != latest]
    for path in old + dead:
        shutil.rmtree(path, ignore_errors=True)
    return old + dead
