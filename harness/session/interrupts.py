"""Ctrl-C and SIGTERM during `kvmconf run`: keep what finished, name what did not, exit 130.

The first signal of either kind raises KeyboardInterrupt where the run is, so pytest
stops, tears down and still writes the reports of the cases that finished (with xdist
too: the controller stops its workers); the run folder is then marked incomplete and
its INCOMPLETE file lists the cases that did not finish. A second signal means stop
now: the workers are killed, the folder is marked as it is and the process leaves
without waiting for anything. Two moments differ: before the run folder exists (the
checks, the preflight collection) a signal ends the command with 130 and nothing
made; once every case has finished, a first signal waits for the reports to be
written, since stopping there would only lose them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import pytest

from harness.cli.runs import RunFolder
from harness.errors import ReportsNotWritable
from harness.host.files import WRITE_ERRORS

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
SHOWN = 3


@dataclass
class Signals:
    """The stop signals received during one `kvmconf run`, first first.

    `run` is the run folder once it exists (a second signal marks it); `deferred` is set
    once every case has finished, while the reports are written: a first signal then
    waits for them, since stopping there would lose finished work, not save time.
    """

    received: list[str] = field(default_factory=list)
    run: RunFolder | None = None
    deferred: bool = False


class RunTracker:
    """pytest plugin for one run: the cases collected, those finished, and how the run ended."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals
        self.collected: list[str] = []
        self.finished: set[str] = set()
        self.interrupted = False
        self.stopped_early: str | None = None

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
        """A signal, or pytest stopping itself: xdist ends `-x` and `--maxfail` with a
        KeyboardInterrupt, and pytest collection errors (exit 2) with its Session.Interrupted."""
        if not excinfo.errisinstance(KeyboardInterrupt):  # pytest.exit comes here too
            return
        if self.signals.received:
            self.interrupted = True
        elif not excinfo.errisinstance(pytest.Session.Interrupted):
            self.stopped_early = str(excinfo.value) or "-x or --maxfail"

    @pytest.hookimpl(tryfirst=True)
    def pytest_internalerror(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        """A report writer that met a full disk: raised on, past pytest's INTERNALERROR
        traceback, for `run_suite` to say in one line."""
        if isinstance(excinfo.value, OSError) and excinfo.value.errno in WRITE_ERRORS:
            raise excinfo.value

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Generator[None, None, None]:
        self.signals.deferred = True  # what ran has run; from here on only the reports are written
        return (yield)

    def unfinished(self) -> list[str]:
        return [nodeid for nodeid in self.collected if nodeid not in self.finished]


@dataclass(frozen=True)
class SuiteRun:
    """How pytest ended: its exit code, what the tracker saw, the signals received."""

    code: int
    tracker: RunTracker
    signals: Signals


@contextmanager
def stop_signals() -> Iterator[Signals]:
    """SIGINT and SIGTERM raise KeyboardInterrupt once (or wait, while the reports are
    written); a second one marks the run folder, if there is one, and exits 130."""
    signals = Signals()

    def handler(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True  # pytest names the line the run was at, not this one
        signals.received.append(signal.Signals(signum).name)
        if len(signals.received) == 1:
            if signals.deferred:
                os.write(2, f"\nkvmconf: {signals.received[0]}: every case has finished; writing the reports first "
                            "(again to stop at once)\n".encode())
                return
            signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, shown where the run was
        for pid in _children():  # xdist workers: they would run on until they noticed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run = signals.run
        where = ""
        if run is not None and run.partial.exists():
            run.mark_incomplete(f"stopped at once by a second signal ({', '.join(signals.received)}): the reports may be cut short")
            where = f"; what was written is in {run.reports}"
        os.write(2, f"\nkvmconf: stopped at once ({signals.received[-1]} again){where}\n".encode())
        os._exit(INTERRUPTED)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
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


def run_suite(run: RunFolder, argv: list[str], signals: Signals) -> SuiteRun:
    """pytest.main on `argv` for `run`, with what it takes to settle the run folder after."""
    tracker = RunTracker(signals)
    try:
        code = int(pytest.main(argv, plugins=[tracker]))
    except KeyboardInterrupt:  # came before pytest's session began: it did not catch it
        tracker.interrupted = True
        code = INTERRUPTED
    except OSError as e:
        if e.errno not in WRITE_ERRORS:
            run.mark_incomplete("the run stopped before pytest finished")
            raise
        run.abandon()  # a report writer failed (the disk filled up): nothing it wrote is sure to be whole
        sys.stderr.write("\n")  # the progress line is still open
        raise ReportsNotWritable(f"{run.reports}: the reports could not be written ({e.strerror}); "
                                 "nothing of the run was kept; free space or give --reports DIR") from None
    except BaseException:
        run.mark_incomplete("the run stopped before pytest finished")
        raise
    return SuiteRun(code, tracker, signals)


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
