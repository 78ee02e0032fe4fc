"""Ctrl-C and SIGTERM during `kvmconf run`: keep what finished, name what did not, exit 130.

The first signal of either kind raises KeyboardInterrupt where the run is, so pytest
stops, tears down and still writes the reports of the cases that finished (with xdist
too: the controller stops its workers); the run folder is then marked incomplete and
its INCOMPLETE file lists the cases that did not finish. A second signal means stop
now: the workers are killed, the folder is marked as it is and the process leaves
without waiting for anything.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

from harness.cli.runs import RunFolder

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
SHOWN = 3


class RunTracker:
    """pytest plugin for one run: the cases collected, those finished, and whether the run was interrupted."""

    def __init__(self) -> None:
        self.collected: list[str] = []
        self.finished: set[str] = set()
        self.interrupted = False

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:
            self.collected = [item.nodeid for item in session.items]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """With xdist the controller collects nothing; every worker collects the same cases."""
        if not self.collected:
            self.collected = list(ids)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A case is finished once it has a verdict: its call ran, or its setup failed or skipped."""
        if report.when == "call" or (report.when == "setup" and not report.passed):
            self.finished.add(report.nodeid)

    @pytest.hookimpl
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if excinfo.errisinstance(KeyboardInterrupt):  # not pytest.exit, which comes here too
            self.interrupted = True

    def unfinished(self) -> list[str]:
        return [nodeid for nodeid in self.collected if nodeid not in self.finished]


@contextmanager
def stop_signals(run: RunFolder) -> Iterator[list[str]]:
    """SIGINT and SIGTERM raise KeyboardInterrupt once; a second one marks `run` and exits.

    Yields the names of the signals received, first first.
    """
    received: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True  # pytest names the line the run was at, not this one
        received.append(signal.Signals(signum).name)
        if len(received) == 1:
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, shown where the run was
        for pid in _children():  # xdist workers: they would run on until they noticed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if run.partial.exists():
            run.mark_incomplete(f"stopped at once by a second signal ({', '.join(received)}): the reports may be cut short")
        os.write(2, f"\nkvmconf: stopped at once ({received[-1]} again); what was written is in {run.reports}\n".encode())
        os._exit(INTERRUPTED)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _children() -> list[int]:
    """This process's child processes (/proc/self/task/*/children; empty where the kernel lacks it)."""
    pids = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as fh:
                pids += [int(pid) for pid in fh.read().split()]
        except OSError:
            continue
    return pids


def run_suite(run: RunFolder, argv: list[str]) -> int:
    """pytest.main on `argv` for `run`; on an interrupt, mark the run folder incomplete,
    name the cases that did not finish and return 130."""
    tracker = RunTracker()
    with stop_signals(run) as received:
        try:
            code = int(pytest.main(argv, plugins=[tracker]))
        except KeyboardInterrupt:  # came while pytest was writing its reports: it did not catch it
            tracker.interrupted = True
        except BaseException:
            run.mark_incomplete("the run stopped before pytest finished")
            raise
        if not tracker.interrupted:
            return code
        return report_interrupted(run, tracker, received[0] if received else "SIGINT")


def report_interrupted(run: RunFolder, tracker: RunTracker, signame: str) -> int:
    """Keep the interrupted run's reports under a name that says so, and say what is missing."""
    unfinished = tracker.unfinished()
    total = len(tracker.collected)
    if total:
        why = f"interrupted by {signame} after {total - len(unfinished)} of {total} cases; these did not finish:"
    else:
        why = f"interrupted by {signame} before the cases were collected"
    path = run.mark_incomplete("\n".join([why, *unfinished]))
    if total:
        names = ", ".join(unfinished[:SHOWN]) + (f" and {len(unfinished) - SHOWN} more" if len(unfinished) > SHOWN else "")
        print(f"kvmconf: interrupted by {signame}: {len(unfinished)} of {total} cases did not finish: {names or 'none'}", file=sys.stderr)
    else:
        print(f"kvmconf: interrupted by {signame} before the cases were collected", file=sys.stderr)
    print(f"kvmconf: reports of the finished cases (marked incomplete; INCOMPLETE lists the rest): {path}", file=sys.stderr)
    return INTERRUPTED
