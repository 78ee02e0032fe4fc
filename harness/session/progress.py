"""Progress for a host that watches a guest's console: `kvmconf-progress: N/M cases`.

Only when the suite runs inside a QEMU guest (KVMCONF_GUEST is set): the runner on
the host forwards these lines and shows nothing else of the guest's output. A line
after the first case (the host times it) and then every PROGRESS_EVERY cases keeps the
slow serial console out of the run's time.
"""

from __future__ import annotations

import os

import pytest

from harness.qemu.console import PROGRESS_MARK

PROGRESS_EVERY = 50


class _Progress:
    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def emit(self, text: str) -> None:
        os.write(1, f"{PROGRESS_MARK}{text}\n".encode())

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)
        self.emit(f"0/{self.total} cases")

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.done += 1
        if self.done == 1 or self.done % PROGRESS_EVERY == 0 or self.done == self.total:
            self.emit(f"{self.done}/{self.total} cases")


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("KVMCONF_GUEST") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_Progress(), "kvmconf-progress")
