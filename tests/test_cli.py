"""`kvmconf`'s command line as a user meets it: usage errors are one line and exit 4
(a hint where a pytest option came before `--`), --version, no run folder when no case
runs, -x exits 1, --lf reads a cache of our own, -v passes through, --keep prunes.

Runs use the model backend, a few cases (-k) and no workers, with reports in tmp_path.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.cli.runs import prune
from harness.paths import ROOT

KVMCONF = ROOT / "kvmconf"
FAILING = ("--profile", "rfc-v4", "--mutant", "attr-size-unaligned")  # a mutant that fails 8 cases
FEW = ("-k", "test_attribute_range and vm0")


def kvmconf(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KVMCONF), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "HOME": str(tmp_path)})


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return kvmconf(tmp_path, "run", "--reports", str(tmp_path / "reports"), "--backend", "model", "-n", "0", *args)


def folders(tmp_path: Path) -> list[str]:
    reports = tmp_path / "reports"
    return sorted(p.name for p in reports.iterdir() if p.name not in ("latest", ".cache")) if reports.exists() else []


@pytest.mark.parametrize(("args", "words"), [
    (["-n", "abc"], "argument -n/--workers: 'abc' is not auto or a whole number"),
    (["-n", "-1"], "argument -n/--workers: '-1'"),
    (["--case-timeout", "inf"], "argument --case-timeout: 'inf' is not a number of seconds"),
    (["--case-timeout", "1e308"], "argument --case-timeout: '1e308'"),
    (["--case-timeout", "nan"], "argument --case-timeout: 'nan'"),
    (["--fuzz-examples", "0"], "argument --fuzz-examples: '0' is not a whole number from 1 up"),
    (["--fuzz-examples", "-1"], "argument --fuzz-examples: '-1'"),
    (["-k", "and ("], "argument -k: 'and (' is not a pytest -k expression"),
    (["--keep", "0"], "argument --keep: '0'"),
    (["-x"], "unrecognized arguments: -x; pytest's options go after --: kvmconf run -- -x"),
], ids=["workers-abc", "workers-negative", "timeout-inf", "timeout-huge", "timeout-nan", "fuzz-0", "fuzz-negative",
        "bad-k", "keep-0", "pytest-option-without-dashes"])
def test_a_usage_error_is_one_line_and_exit_4(tmp_path: Path, args: list[str], words: str) -> None:
    r = run(tmp_path, *args)
    assert r.returncode == 4, r.stdout + r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and r.stderr.startswith("kvmconf: "), r.stderr
    assert words in r.stderr
    assert folders(tmp_path) == []


def test_version(tmp_path: Path) -> None:
    r = kvmconf(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.startswith("kvmconf "), r.stdout + r.stderr


def test_reports_given_a_file(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("")
    r = kvmconf(tmp_path, "run", "--backend", "model", "--reports", str(plain))
    assert r.returncode == 60 and r.stderr == f"kvmconf: {plain}: not a folder; give --reports DIR, a folder for the run folders\n"


def test_kernel_given_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = kvmconf(tmp_path, "run", "--kernel", str(fifo), "--reports", str(tmp_path / "reports"))
    assert r.returncode == 21 and "not a regular file" in r.stderr, r.stderr


def test_a_k_that_selects_nothing_makes_no_folder(tmp_path: Path) -> None:
    r = run(tmp_path, "-k", "no_such_case_anywhere")
    assert r.returncode == 5, r.stdout + r.stderr
    assert r.stderr.startswith("kvmconf: -k 'no_such_case_anywhere' selects no case") and r.stderr.count("\n") == 1
    assert folders(tmp_path) == []


def test_collect_only_lists_and_makes_no_folder(tmp_path: Path) -> None:
    r = run(tmp_path, *FEW, "--", "--collect-only", "-q")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test_attribute_range[KVM_SET_MEMORY_ATTRIBUTES/vm0/" in r.stdout and "results by area" not in r.stdout
    assert folders(tmp_path) == []


@pytest.mark.parametrize("workers", ["0", "2"])
def test_x_stops_with_exit_1_not_130(tmp_path: Path, workers: str) -> None:
    r = run(tmp_path, *FAILING, "-n", workers, "--", "-x")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "interrupted by" not in r.stdout + r.stderr
    (folder,) = folders(tmp_path)
    assert folder.endswith(".incomplete")
    assert (tmp_path / "reports" / folder / "INCOMPLETE").read_text().startswith("pytest stopped early")


def test_last_failed_reruns_only_the_failures(tmp_path: Path) -> None:
    first = run(tmp_path, *FAILING, *FEW)
    summary = re.search(r"^(\d+) failed, (\d+) passed", first.stdout, re.M)
    assert first.returncode == 1 and summary is not None, first.stdout
    again = run(tmp_path, *FAILING, *FEW, "--", "--lf")
    assert again.returncode == 1, again.stdout + again.stderr
    assert re.search(rf"^{summary[1]} failed(, \d+ deselected)? in ", again.stdout, re.M), again.stdout


def test_verbosity_passes_through(tmp_path: Path) -> None:
    r = run(tmp_path, *FEW, "--", "-v")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED" in r.stdout


def test_keep_prunes_old_and_dead_folders(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    made = ["20200101-000000-000-1", "20200101-000001-000-2.incomplete", "20200101-000002-000-3",
            f".20200101-000003-000-{dead.pid}.partial", f".20200101-000004-000-{os.getpid()}.partial"]
    for name in made:
        (reports / name).mkdir()
    (reports / "latest").symlink_to("20200101-000000-000-1")  # the oldest, yet named by latest
    (reports / ".cache").mkdir()
    r = run(tmp_path, *FEW, "--keep", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    this_run = Path(r.stdout.splitlines()[-1].removeprefix("reports: ")).name
    # kept: the newest two (this run and 000002), the live run's .partial, the cache and latest (now this run)
    assert sorted(p.name for p in reports.iterdir()) == sorted(
        [".cache", f".20200101-000004-000-{os.getpid()}.partial", "20200101-000002-000-3", this_run, "latest"])


def test_prune_never_removes_what_latest_names(tmp_path: Path) -> None:
    for name in ("20200101-000000-000-1", "20200101-000001-000-2", "20200101-000002-000-3"):
        (tmp_path / name).mkdir()
    (tmp_path / "latest").symlink_to("20200101-000000-000-1")
    removed = prune(tmp_path, 1)
    assert sorted(p.name for p in removed) == ["20200101-000001-000-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["20200101-000000-000-1", "20200101-000002-000-3", "latest"]
