"""Run folders under reports/: one per run, named so they sort by time, never reused.

A run writes into a hidden `.partial` folder and is renamed into place only when the
run ends; a run that dies leaves a folder marked incomplete, never one that looks whole.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from harness.errors import ReportsNotWritable
from harness.paths import REPORTS


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
        try:
            reports.mkdir(parents=True, exist_ok=True)
            self.partial.mkdir()
            probe = self.partial / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
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
        """Keep what a broken run wrote, under a name that says it is incomplete."""
        (self.partial / "INCOMPLETE").write_text(why + "\n")
        target = self.reports / f"{self.id}.incomplete"
        self.partial.rename(target)
        self._point_latest(target)
        return target
