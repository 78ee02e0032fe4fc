"""The report writer under faults: every file whole or not at all under its final name,
whatever stops the write (ENOSPC, EIO, a signal), and a full disk is one line, exit 60,
with nothing of the run kept.

The writer's faults are injected into the file object it writes through; the full disk
is a real tmpfs (mount needs root; skipped otherwise)."""

from __future__ import annotations

import errno
import os
import re
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.host.files import partial_name, write_atomic
from harness.paths import ROOT

FAULTS = [OSError(errno.ENOSPC, "No space left on device"), OSError(errno.EIO, "Input/output error"), KeyboardInterrupt()]
FAULT_IDS = ["ENOSPC", "EIO", "signal"]


class FailingFile:
    """A text file whose write puts half the text out, then fails with `fault`."""

    def __init__(self, real: Any, fault: BaseException) -> None:
        self.real, self.fault = real, fault

    def __enter__(self) -> FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()

    def write(self, text: str) -> int:
        self.real.write(text[: len(text) // 2])
        self.real.flush()
        raise self.fault


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_a_write_that_fails_leaves_neither_a_cut_file_nor_its_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      fault: BaseException) -> None:
    target = tmp_path / "kcidb.json"
    target.write_text("the earlier, whole file\n")
    real_open = Path.open

    def failing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        return FailingFile(real_open(self, *args, **kwargs), fault)

    monkeypatch.setattr(Path, "open", failing_open)
    with pytest.raises(type(fault)):
        write_atomic(target, "x" * 100_000)
    monkeypatch.undo()
    assert target.read_text() == "the earlier, whole file\n"
    assert not partial_name(target).exists()


def test_a_failed_rename_leaves_no_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "results.ktap", "TAP version 14\n")
    assert list(tmp_path.iterdir()) == []


def test_a_whole_write_is_under_its_final_name_only(tmp_path: Path) -> None:
    write_atomic(tmp_path / "results.ktap", "TAP version 14\n")
    assert [p.name for p in tmp_path.iterdir()] == ["results.ktap"]


# -- a real full disk ---------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    size = request.param
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


HEADER = re.compile(r"^(?:kernel|runs on|ABI|profile|backend|expectations): ")  # the console header block


def lines(text: str) -> list[str]:
    """What a reader sees after the console header, without the progress dots."""
    shown = [line.lstrip(".sxXFE") for line in text.splitlines() if line.lstrip(".sxXFE").strip() and "%]" not in line]
    return [line for line in shown if not HEADER.match(line)]


@pytest.mark.parametrize("tmpfs", ["64k"], indirect=True)
def test_a_full_disk_before_the_run_is_one_line_and_exit_60(tmpfs: Path) -> None:
    reports = tmpfs / "reports"
    r = subprocess.run([str(ROOT / "kvmconf"), "run", "--backend", "model", "--reports", str(reports)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 60, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and "KiB free" in r.stderr, r.stderr
    assert not any(reports.iterdir())


@pytest.mark.parametrize("tmpfs", ["40m"], indirect=True)
def test_a_disk_that_fills_during_the_run_is_one_line_and_exit_60(tmpfs: Path) -> None:
    reports = tmpfs / "reports"
    proc = subprocess.Popen([str(ROOT / "kvmconf"), "run", "--backend", "model", "-n", "0", "--reports", str(reports)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + 240
    while b"..." not in out:  # cases are passing and being logged
        assert time.monotonic() < deadline and proc.poll() is None, out.decode()
        if select.select([proc.stdout], [], [], 1.0)[0]:
            out += os.read(proc.stdout.fileno(), 65536)
    with (tmpfs / "filler").open("wb") as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    rest, _ = proc.communicate(timeout=240)
    text = (out + rest).decode()
    assert proc.returncode == 60, text
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert lines(text) == [f"kvmconf: {reports}: the reports could not be written (No space left on device); "
                           "nothing of the run was kept; free space or give --reports DIR"], text
    assert not any(reports.iterdir())
