"""Bench parts 2 and 4: whole runs of the suite in a subprocess, serial and on all cores,
on the model backend, and the mutation run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.paths import ROOT
from harness.report.bench import (
    Figure,
    Progress,
    Row,
    Section,
    Settings,
    cases_detail,
    last_line,
    mutation_detail,
    parse_collected,
    runs_phrase,
)
from harness.session.backends import backend_names


@dataclass(frozen=True)
class Timed:
    """One finished command: wall seconds, exit code, stdout then stderr."""

    seconds: float
    code: int
    output: str


def timed(argv: Sequence[str]) -> Timed:
    """Wall time of a command run from the project root, with its combined output."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, check=False)
    return Timed(time.perf_counter() - start, done.returncode, done.stdout + done.stderr)


def run_row(label: str, argv: Sequence[str], runs: int, progress: Progress,
            detail: Callable[[str], str] = cases_detail, exit_1: str = "exit 1: some cases failed") -> Row:
    """A command timed `runs` times, in wall s. Exit 1 is a verdict (failed cases,
    surviving mutants), so the time still counts; any other failure is shown instead."""
    results = []
    for i in range(runs):
        progress(f"{label}: run {i + 1} of {runs}")
        results.append(timed(argv))
        if results[-1].code not in (0, 1):
            return Row(label, note=f"failed: exit {results[-1].code}: {last_line(results[-1].output)}")
    what = detail(results[-1].output)
    note = exit_1 if any(r.code == 1 for r in results) else ""
    return Row(f"{label} · {what}" if what else label, Figure(tuple(r.seconds for r in results)), note=note)


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def suite_section(settings: Settings, reports: Path, progress: Progress) -> Section:
    """Part 2: collection alone, then the suite as `kvmconf run` runs it, serial and on all cores."""
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               f"--kvm-device={settings.device}", "suites/"]
    progress("collection: pytest --collect-only")
    runs = [timed(collect) for _ in range(settings.suite_runs)]
    if runs[-1].code != 0:
        first = Row("pytest --collect-only", note=f"failed: exit {runs[-1].code}: {last_line(runs[-1].output)}")
    else:
        cases = parse_collected(runs[-1].output)
        first = Row(f"collection only · {cases} cases", Figure(tuple(r.seconds for r in runs)))
    device = f"--kvm-device={settings.device}"
    rows = (
        first,
        run_row("kvmconf run -n 0", cli_argv("run", "-n", "0", device, "--reports", str(reports)), settings.suite_runs, progress),
        run_row(f"kvmconf run -n auto ({os.cpu_count() or 1} workers)", cli_argv("run", "-n", "auto", device, "--reports", str(reports)),
                settings.suite_runs, progress),
    )
    return Section("suite", "Whole suite on this machine", "s", f"wall s, {runs_phrase(settings.suite_runs)}", rows)


def model_section(settings: Settings, reports: Path, progress: Progress) -> Section:
    """Part 4: the suite on the model backend, and the whole mutation run."""
    measure = f"wall s, {runs_phrase(settings.suite_runs)}; mutation run: {runs_phrase(settings.long_runs)}"
    if "model" not in backend_names():
        absent = Row("kvmconf run --backend model", note="n/a: model backend not available")
        return Section("model", "Model backend", "s", measure, (absent, mutation_row(settings, progress)))
    argv = cli_argv("run", "--backend", "model", "-n", "auto", "--reports", str(reports))
    return Section("model", "Model backend", "s", measure, (
        run_row("kvmconf run --backend model -n auto", argv, settings.suite_runs, progress),
        mutation_row(settings, progress),
    ))


def mutation_row(settings: Settings, progress: Progress) -> Row:
    """Every profile's faithful model and every mutant, as harness.model.mutation runs them."""
    label = "mutation run"
    if not settings.mutation:
        return Row(label, note="skipped: --no-mutation")
    if not (ROOT / "harness" / "model" / "mutation.py").exists():
        return Row(label, note="n/a: no mutation runner (harness/model/mutation.py)")
    return run_row(label, [sys.executable, "-m", "harness.model.mutation"], settings.long_runs, progress,
                   detail=mutation_detail, exit_1="exit 1: survivors or a failing baseline (see the mutation run)")
