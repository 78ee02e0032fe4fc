"""lava/kvmconf.yaml, dry-run: it parses as a Lava-Test Test Definition 1.0, and its
install and run steps, run by bash as LAVA's test shell would (one script, from the
repository's root, params as shell variables) with stand-ins for `lava-test-case`,
`lava-test-set`, `lava-test-reference` and `curl` on PATH, report every case of the
run with its result, and the report folder as a reference."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.paths import ROOT
from harness.report.lava import RESULT, RUN_CASE
from harness.report.model import read_jsonl
from tests.kvmdev import child_env, device_problem

DEFINITION = ROOT / "lava" / "kvmconf.yaml"
ARTIFACT_URL = "https://artifacts.example.invalid/kvmconf/report.tar.gz"
STAND_IN = """#!/bin/sh
# records how it was called, one call a line
printf '%s' "$(basename "$0")" >> "$LAVA_CALLS"
for arg in "$@"; do printf '\\t%s' "$arg" >> "$LAVA_CALLS"; done
printf '\\n' >> "$LAVA_CALLS"
"""
FAKE_CURL = STAND_IN + f'echo "{ARTIFACT_URL}"\n'
NAME_FORBIDDEN = re.compile(r"""[$& "'`()<>/\\|;]""")  # LAVA's rule for metadata.name


def load() -> dict[str, Any]:
    data = yaml.safe_load(DEFINITION.read_text())
    assert isinstance(data, dict)
    return data


def test_definition_is_lava_test_definition_1_0() -> None:
    data = load()
    meta = data["metadata"]
    assert meta["format"] == "Lava-Test Test Definition 1.0"
    assert meta["name"] and not NAME_FORBIDDEN.search(meta["name"]) and meta["name"].isascii()
    assert meta["description"]
    assert all(isinstance(step, str) for step in data["install"]["steps"] + data["run"]["steps"])
    assert set(data["params"]) == {"KVMCONF_ARGS", "KVMCONF_REPORTS", "ARTIFACTS_URL", "ARTIFACTS_TOKEN"}


def test_run_steps_report_every_case(tmp_path: Path) -> None:
    problem = device_problem()
    if problem:
        pytest.skip(problem)
    data = load()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, text in (("lava-test-case", STAND_IN), ("lava-test-set", STAND_IN), ("lava-test-reference", STAND_IN),
                       ("curl", FAKE_CURL)):
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    reports = tmp_path / "reports"
    params = {**data["params"], "KVMCONF_ARGS": "-n 0 -k test_binding", "KVMCONF_REPORTS": str(reports),
              "ARTIFACTS_URL": "https://artifacts.example.invalid/upload/"}
    script = "\n".join([*(f"{k}={shlex.quote(str(v))}" for k, v in params.items()),
                        *data["install"]["steps"], *data["run"]["steps"]])
    env = {**child_env(), "PATH": f"{bin_dir}:{child_env()['PATH']}", "LAVA_CALLS": str(calls)}
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    recorded = [line.split("\t") for line in calls.read_text().splitlines()]
    cases = {c[1]: c[3] for c in recorded if c[0] == "lava-test-case"}
    with (reports / "latest" / "results.jsonl").open() as fh:
        expected = {c.slug: RESULT[c.result] for c in read_jsonl(fh)}
    assert len(expected) >= 5, expected
    assert {k: v for k, v in cases.items() if k not in (RUN_CASE, "kvmconf-report")} == expected
    assert cases[RUN_CASE] == "pass"
    assert sum(1 for c in recorded if c[0] == "lava-test-case") == len(expected) + 1, "a case was reported twice"
    assert ["lava-test-set", "start", "guest_memfd"] in recorded and ["lava-test-set", "stop"] in recorded
    assert ["lava-test-reference", "kvmconf-report", "--result", "pass", "--reference", ARTIFACT_URL] in recorded
    (upload,) = (c for c in recorded if c[0] == "curl")
    (tarball,) = (a.removeprefix("path=@") for a in upload if a.startswith("path=@"))
    assert tarball.endswith(".tar.gz")
    Path(tarball).unlink()
