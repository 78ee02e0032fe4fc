"""The mutation run: the suite against the faithful model of every profile (each must
pass) and against every mutant of the catalogue (each must fail), as separate pytest
sessions, at most one per core.

A mutant is killed when its session fails a case (pytest exit code 1); one that
passes is a survivor, one that errors (any other code) is neither. Mutant sessions stop
at the first failure (`-x`), which is all a kill needs.

Each session is a child forked from one interpreter that has already imported pytest,
its plugins and the harness: a fresh `python -m pytest` per session would spend most of
its time starting up. `run()` starts that interpreter anew (`--json`), so a caller that
is itself a pytest session is never forked.

    python -m harness.model.mutation [--jobs N] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.abi.profile import known_profiles
from harness.model.mutants import Mutant, catalogue, mutant
from harness.paths import ROOT

# Each session's verdict is its exit code: no cache, no kernel-health checks (the model
# has no kernel log), no random order. The harness is imported before pytest starts, so
# pytest cannot rewrite its asserts, and need not say so.
COMMON = ("--no-header", "-p", "no:cacheprovider", "-p", "no:harness.session.health", "-p", "no:randomly",
          "-W", "ignore::pytest.PytestAssertRewriteWarning")
PRELOAD = ("pytest", "hypothesis", "harness.session.plugin", "harness.session.fuzzopt", "harness.cases.tables", "harness.session.gmemfile",
           "harness.model.backend")


def suite_files() -> list[str]:
    """The suites, property cases and then the limits last: they cost the most, and a mutant
    a table case kills stops (-x) before them."""
    files = sorted((ROOT / "suites").glob("test_*.py"), key=lambda p: (p.name == "test_limits.py", p.name == "test_properties.py", p.name))
    return [str(f) for f in files]


@dataclass(frozen=True)
class Job:
    """One pytest session: the faithful model of `profile`, or a mutant."""

    profile: str
    mutant: Mutant | None = None

    @property
    def label(self) -> str:
        return f"mutant {self.mutant.name}" if self.mutant else f"model of {self.profile}"

    def pytest_args(self) -> list[str]:
        args = [*suite_files(), f"--rootdir={ROOT}", *COMMON, "--backend=model", f"--profile={self.profile}"]
        if self.mutant is None:
            return [*args, "-v"]  # one line per case: which ones skipped
        return [*args, "-q", "-x", f"--mutant={self.mutant.name}"]


# an exception other than AssertionError: the run crashed, no check caught anything
_CRASH = re.compile(r"^(?!AssertionError)[A-Za-z_.]*(Error|Exception)\b")


@dataclass(frozen=True)
class Outcome:
    job: Job
    code: int
    seconds: float
    output: str

    @property
    def killed(self) -> bool:
        """A check failed: pytest exit 1 with a failed case whose message is a verdict or
        an assertion, not an exception the mutant raised in the model or the harness."""
        if self.code != 1:
            return False
        for line in self.output.splitlines():
            if line.startswith("FAILED "):
                message = line.split(" - ", 1)[1] if " - " in line else ""
                return not _CRASH.match(message)
        return False

    def skipped(self) -> list[str]:
        """Node ids of the cases that skipped (baselines only: they run verbosely)."""
        return [line.split(" SKIPPED", 1)[0] for line in self.output.splitlines() if " SKIPPED" in line and "::" in line]

    def first_failure(self) -> str:
        """The first failed case's node id, from pytest's short summary."""
        for line in self.output.splitlines():
            if line.startswith(("FAILED ", "ERROR ")):
                return line.split(" ", 1)[1].split(" - ", 1)[0]
        lines = self.output.strip().splitlines()
        return lines[-1] if lines else f"exit code {self.code}"

    def to_json(self) -> dict[str, object]:
        return {"profile": self.job.profile, "mutant": self.job.mutant.name if self.job.mutant else None,
                "code": self.code, "seconds": self.seconds, "output": self.output}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Outcome:
        name = data["mutant"]
        job = Job(str(data["profile"]), mutant(str(name)) if name is not None else None)
        return cls(job, int(str(data["code"])), float(str(data["seconds"])), str(data["output"]))


def jobs(only: Sequence[str] = ()) -> list[Job]:
    """Baselines first (they run the whole suite), then the mutants."""
    mutants = [m for m in catalogue() if not only or m.name in only]
    return [Job(p) for p in known_profiles()] + [Job(m.profile, m) for m in mutants]


@dataclass(frozen=True)
class Report:
    outcomes: tuple[Outcome, ...]
    seconds: float

    @property
    def baselines(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.job.mutant is None]

    @property
    def mutants(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.job.mutant is not None]

    @property
    def survivors(self) -> list[Outcome]:
        return [o for o in self.mutants if not o.killed]

    @property
    def broken_baselines(self) -> list[Outcome]:
        return [o for o in self.baselines if o.code != 0]

    def score(self) -> str:
        return f"mutation score: {len(self.mutants) - len(self.survivors)}/{len(self.mutants)} mutants killed"

    def lines(self) -> list[str]:
        """The score, then what needs fixing: survivors and failing baselines, by name."""
        out = [f"{self.score()} ({len(self.baselines)} profiles pass on the faithful model; {self.seconds:.0f}s)"]
        for o in self.broken_baselines:
            out.append(f"  model of {o.job.profile} does not pass the suite (exit {o.code}): {o.first_failure()}")
        for o in self.survivors:
            m = o.job.mutant
            assert m is not None
            how = "survived" if o.code == 0 else f"errored (exit {o.code}): {o.first_failure()}"
            out.append(f"  survivor {m.name} [{m.rule}, profile {m.profile}] {how}: {m.why}")
        return out


# -- the forking side (a fresh interpreter) ---------------------------------------------------


def preload() -> None:
    """Import what every session imports, once, before the first fork."""
    for name in PRELOAD:
        importlib.import_module(name)
    for entry in importlib.metadata.entry_points(group="pytest11"):
        entry.load()


def _child(job: Job, out: int) -> None:
    """In a forked child: one pytest session, its output to `out`; never returns."""
    code = 3
    try:
        os.dup2(out, 1)
        os.dup2(out, 2)
        import pytest

        code = int(pytest.main(job.pytest_args()))
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(selected: Sequence[Job], workers: int, progress: Callable[[Outcome], None] | None = None) -> Report:
    """Every job in a forked child, `workers` at a time; outcomes in the jobs' order."""
    preload()
    start = time.monotonic()
    pending = list(selected)
    running: dict[int, tuple[Job, int, float]] = {}
    done: dict[int, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="kvmconf-mutation-") as tmp:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop(0)
                index = len(selected) - len(pending) - 1
                out = os.open(Path(tmp) / f"{index}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(job, out)
                os.close(out)
                running[pid] = (job, index, time.monotonic())
            pid, status = os.wait()
            job, index, began = running.pop(pid)
            text = (Path(tmp) / f"{index}.out").read_text(errors="replace")
            done[index] = Outcome(job, os.waitstatus_to_exitcode(status), time.monotonic() - began, text)
            if progress is not None:
                progress(done[index])
    return Report(tuple(done[i] for i in range(len(selected))), time.monotonic() - start)


# -- the caller's side ------------------------------------------------------------------------


def run(only: Sequence[str] = (), workers: int | None = None) -> Report:
    """The mutation run in a fresh interpreter (which forks the sessions)."""
    argv = [sys.executable, "-m", "harness.model.mutation", "--json", *(["--jobs", str(workers)] if workers else [])]
    if only:
        argv += ["--only", *only]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"the mutation run failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    outcomes = tuple(Outcome.from_json(o) for o in json.loads(proc.stdout))
    return Report(outcomes, time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.model.mutation", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=None, help="parallel pytest sessions (default: one per core)")
    parser.add_argument("--only", nargs="*", default=[], metavar="NAME", help="only these mutants (and every baseline)")
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON (what run() reads)")
    args = parser.parse_args(argv)
    unknown = set(args.only) - {m.name for m in catalogue()}
    if unknown:
        parser.error(f"unknown mutants: {', '.join(sorted(unknown))}")

    def show(o: Outcome) -> None:
        if o.job.mutant is None:
            verdict = "passed" if o.code == 0 else f"FAILED (exit {o.code})"
        else:
            verdict = "killed" if o.killed else "SURVIVED"
        where = o.first_failure() if o.killed else ""
        print(f"{o.job.label:45} {verdict:18} {o.seconds:5.1f}s  {where}", file=sys.stderr if args.json else sys.stdout, flush=True)

    report = serve(jobs(args.only), args.jobs or os.cpu_count() or 1, show)
    if args.json:
        print(json.dumps([o.to_json() for o in report.outcomes]))
    else:
        print("\n".join(report.lines()))
    return 0 if not report.survivors and not report.broken_baselines else 1


if __name__ == "__main__":
    sys.exit(main())
