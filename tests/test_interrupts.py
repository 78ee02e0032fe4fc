"""Interrupting `./kvmconf run`: exit 130, a readable report of what finished, the rest named.

Each test starts a real run in a subprocess, waits until cases are passing, and signals
it. The kernel backend is used where /dev/kvm can be opened, else the model backend.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.paths import ROOT
from harness.session.interrupts import stop_signals

PROGRESS = re.compile(rb"(?:^|\n)[.sxXFE]{3}")


@dataclass
class Stopped:
    code: int
    output: str
    folder: Path


def backend() -> str:
    return "kernel" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "model"


def interrupt_run(tmp_path: Path, workers: str, *signals: signal.Signals, group: bool = False) -> Stopped:
    """Start a run, signal it (the whole process group, as a terminal's Ctrl-C does, when
    `group`) once cases are passing, and wait for it to end."""
    reports = tmp_path / "reports"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(tmp_path)}
    proc = subprocess.Popen([str(ROOT / "kvmconf"), "run", "--reports", str(reports), "--backend", backend(), "-n", workers],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + 240
    while not PROGRESS.search(out):
        assert time.monotonic() < deadline and proc.poll() is None, out.decode()
        if select.select([proc.stdout], [], [], 1.0)[0]:
            out += os.read(proc.stdout.fileno(), 65536)
    for sig in signals:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        time.sleep(0.05)
    rest, _ = proc.communicate(timeout=120)
    folders = [p for p in reports.iterdir() if p.name not in ("latest", ".cache")]
    assert len(folders) == 1, folders
    return Stopped(proc.returncode, (out + rest).decode(), folders[0])


def check_interrupted(stopped: Stopped, signame: str, workers: int) -> None:
    assert stopped.code == 130, stopped.output
    assert stopped.folder.name.endswith(".incomplete"), stopped.folder
    junit = ET.parse(stopped.folder / "junit.xml").getroot()
    ran = {f"{tc.get('classname', '').replace('.', '/')}.py::{tc.get('name')}" for tc in junit.iter("testcase")}
    assert ran, "the report lists the cases that finished"
    html = (stopped.folder / "report.html").read_text()
    assert "</html>" in html
    head, *unfinished = (stopped.folder / "INCOMPLETE").read_text().splitlines()
    m = re.fullmatch(rf"interrupted by {signame} after (\d+) of (\d+) cases; these did not finish:", head)
    assert m is not None, head
    assert unfinished and len(unfinished) == int(m[2]) - int(m[1])
    # a case in flight (set up, not yet called) may show in junit.xml as well: one per worker at most
    assert len(ran & set(unfinished)) <= workers, ran & set(unfinished)
    assert f"kvmconf: interrupted by {signame}: {len(unfinished)} of {m[2]} cases did not finish: {unfinished[0]}" in stopped.output


def test_ctrl_c_keeps_the_report_and_names_what_did_not_finish(tmp_path: Path) -> None:
    check_interrupted(interrupt_run(tmp_path, "0", signal.SIGINT), "SIGINT", 1)


def test_ctrl_c_with_xdist_workers(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the controller and every worker."""
    check_interrupted(interrupt_run(tmp_path, "2", signal.SIGINT, group=True), "SIGINT", 2)


def test_sigterm_is_an_interrupt_too(tmp_path: Path) -> None:
    check_interrupted(interrupt_run(tmp_path, "2", signal.SIGTERM), "SIGTERM", 2)


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    stopped = interrupt_run(tmp_path, "2", signal.SIGINT, signal.SIGINT, group=True)
    assert stopped.code == 130, stopped.output
    assert stopped.folder.name.endswith(".incomplete")
    assert (stopped.folder / "INCOMPLETE").read_text().startswith("stopped at once by a second signal (SIGINT, SIGINT)")
    assert "kvmconf: stopped at once (SIGINT again)" in stopped.output


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_the_signal_handlers_are_put_back(tmp_path: Path, signame: str) -> None:
    """Whatever runs after a run in the same process gets the usual behaviour back."""
    sig = signal.Signals[signame]
    before = signal.getsignal(sig)
    with stop_signals():
        assert signal.getsignal(sig) is not before
    assert signal.getsignal(sig) is before


# -- a signal at each phase of a run, sent from inside it (deterministic) ------------------

SIGNAL_AT = """
import os, signal, sys
import pytest
from harness.cli.main import main

phase, signame = sys.argv[1], sys.argv[2]
calls = []
real_main = pytest.main


class SendSignal:
    def pytest_collection_finish(self, session):
        if phase == "preflight":
            os.kill(os.getpid(), signal.Signals[signame])

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session):
        if phase == "reports":
            os.kill(os.getpid(), signal.Signals[signame])


def patched(argv, plugins=()):
    calls.append(argv)
    first_of_phase = (phase == "preflight" and len(calls) == 1) or (phase == "reports" and len(calls) == 2)
    return real_main(argv, plugins=[*plugins, *([SendSignal()] if first_of_phase else [])])


pytest.main = patched
sys.exit(main(sys.argv[3:]))
"""


def signal_at(tmp_path: Path, phase: str, signame: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    reports = tmp_path / "reports"
    python = ROOT / ".venv" / "bin" / "python"
    r = subprocess.run([str(python), "-c", SIGNAL_AT, phase, signame, "run", "--reports", str(reports), "--backend", "model",
                        "-n", "0", "-k", "test_sizing"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "HOME": str(tmp_path)})
    return r, reports


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_preflight_stops_with_130_and_no_folder(tmp_path: Path, signame: str) -> None:
    r, reports = signal_at(tmp_path, "preflight", signame)
    assert r.returncode == 130, r.stdout + r.stderr
    assert r.stderr == "kvmconf: interrupted before the run started: no run folder was made\n", r.stderr
    assert not reports.exists() or not any(reports.iterdir())


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_reports_are_written_waits_for_them(tmp_path: Path, signame: str) -> None:
    """Every case had finished: the reports are written whole, then the run exits 130."""
    r, reports = signal_at(tmp_path, "reports", signame)
    assert r.returncode == 130, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "Unraisable" not in r.stderr, r.stderr
    assert f"kvmconf: {signame} came after every case had finished; the reports were written first" in r.stderr
    (folder,) = [p for p in reports.iterdir() if not p.name.startswith(".") and p.name != "latest"]
    assert not folder.name.endswith(".incomplete")
    for name in ("report.html", "junit.xml", "results.jsonl", "results.ktap", "kcidb.json"):
        assert (folder / name).stat().st_size > 0, name
    ET.parse(folder / "junit.xml")
    assert (folder / "report.html").read_text().rstrip().endswith("</html>")
    assert not list(folder.glob(".*.partial"))
