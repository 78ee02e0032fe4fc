"""Collect the suites once, quietly, before a run folder exists.

Some bad input shows only once the cases exist: an expectations file naming cases that
are not collected (exit 41) is found by the plugin during collection, and a `-k` that
selects no case (exit 5) is known once they are deselected. Found in the run
itself it would come from inside pytest, with pytest's decorations around it (and from
inside each xdist worker, which xdist reports as an internal error); found here it is
one line and its exit code, like every other bad input. Collection alone takes a
fraction of a second: the caps probe and the tables, no case runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.errors import KvmconfError, NothingSelected
from harness.paths import ROOT


class CollectionAbort(KvmconfError):
    """A kvmconf error the plugin raised during collection, with the exit code it gave."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _AbortCatcher:
    """Keeps the message and code of a `pytest.exit` from the plugin, and a Ctrl-C,
    which pytest would otherwise turn into an exit code of its collection."""

    def __init__(self) -> None:
        self.abort: tuple[str, int] | None = None
        self.interrupted = False
        self.selected = 0

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = len(session.items)

    @pytest.hookimpl
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        exc = excinfo.value
        if isinstance(exc, pytest.exit.Exception):
            if exc.returncode is not None:
                self.abort = (exc.msg, int(exc.returncode))
        elif type(exc) is KeyboardInterrupt:  # not pytest's Session.Interrupted, which collection errors raise
            self.interrupted = True


def collection_args(args: argparse.Namespace) -> list[str]:
    """The `kvmconf run` options that decide which cases exist and what is expected of them."""
    argv = [f"--kvm-device={args.kvm_device}", f"--profile={args.profile}", f"--backend={args.backend}"]
    if args.kvm_header:
        argv.append(f"--kvm-header={Path(args.kvm_header).resolve()}")
    if args.expectations:
        argv.append(f"--expectations={args.expectations}")
    if args.mutant:
        argv.append(f"--mutant={args.mutant}")
    return argv


def check_collection(args: argparse.Namespace) -> None:
    """Raise the kvmconf error that collecting the suites would end the run with, if any.

    Anything else collection could fail with (a suite that does not import) is left to
    the run, which reports it in full.
    """
    catcher = _AbortCatcher()
    argv = [str(ROOT / "suites"), f"--rootdir={ROOT}", "-p", "no:cacheprovider", "-p", "no:terminal", "--collect-only",
            *collection_args(args), *(["-k", args.keyword] if args.keyword else [])]
    code = pytest.main(argv, plugins=[catcher])
    if catcher.interrupted:
        raise KeyboardInterrupt
    if catcher.abort is not None and catcher.abort[1] >= KvmconfError.exit_code:
        raise CollectionAbort(*catcher.abort)
    if code in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) and not catcher.selected:
        raise NothingSelected(f"-k {args.keyword!r} selects no case: nothing ran, no run folder was made")
