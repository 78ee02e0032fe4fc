"""One `kvmconf run` writes the five report files from one model: report.html,
junit.xml, results.jsonl, results.ktap and kcidb.json (valid under kcidb-io's schema),
with nothing half-written left behind; the console shows no temporary path and ends
with the report folder; `kvmconf compare` finds the forced failure and exits 1."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import kcidb_io
import pytest

from harness.report.model import read_jsonl
from tests.reportrun import BOUND_CASE, FINDING, Run, kvmconf

FILES = ("report.html", "junit.xml", "results.jsonl", "results.ktap", "kcidb.json")
RESULT_LINE = re.compile(r"^(ok|not ok) (\d+)(?: ([^#]*?))?(?: # (SKIP|XFAIL|ERROR)(?: (.*))?)?$")


def test_run_writes_the_five_files_and_nothing_partial(failing_run: Run) -> None:
    assert failing_run.code == 1, failing_run.out
    for name in FILES:
        assert (failing_run.folder / name).stat().st_size > 0, name
    leftovers = [p.name for p in failing_run.folder.iterdir() if p.name.startswith(".") or p.name.endswith(".partial")]
    assert leftovers == []
    assert not [p for p in failing_run.folder.parent.iterdir() if p.name.endswith(".partial")]


def test_console_shows_areas_and_ends_with_the_report_folder(failing_run: Run) -> None:
    out = failing_run.out
    assert ".partial" not in out, "the console names the temporary run folder"
    assert "results by area" in out and re.search(r"^guest_memfd +\d+ +\d+ +1 +0 ", out, re.M), out  # the one failed case is its area's
    assert re.search(r"^kernel: +\S+\nruns on: +this machine\nABI: +profile released\nprofile: +released .*\nbackend: +kernel\n"
                     r"expectations: +\S*forced-failure.toml$", out, re.M), out
    assert re.search(r"^ +18  " + re.escape(FINDING), out, re.M), "known findings by reason with their counts"
    assert re.search(r"^failures by rule clause \(1\)|-+ failures by rule clause \(1\) -+$", out, re.M), out
    failure = r"^  failed: .*bound=1\]\n      KVM_SET_USER_MEMORY_REGION2 on a VM of type 0: .*expected ENOSPC, got EINVAL$"
    assert re.search(failure, out, re.M), out
    assert "Traceback" not in out and "FAILED " not in out, "pytest's own failure report repeats the summary"
    assert out.rstrip().splitlines()[-1] == f"reports: {failing_run.folder}"
    assert not re.search(r"\b(INFO|WARNING|DEBUG)\b|\d\d:\d\d:\d\d", out), "timestamps or log levels on the console"


def test_kcidb_validates_with_kcidb_io(failing_run: Run) -> None:
    data = json.loads((failing_run.folder / "kcidb.json").read_text())
    kcidb_io.schema.LATEST.validate_exactly(data)
    assert kcidb_io.schema.LATEST.is_compatible_exactly(data)
    tests = {t["misc"]["nodeid"]: t for t in data["tests"]}
    bound = tests[BOUND_CASE]
    assert (bound["status"], bound["path"].split(".")[:2]) == ("FAIL", ["kvmconf", "guest_memfd"])
    assert "expected: ENOSPC" in bound["log_excerpt"]
    finding_tests = {t["id"] for t in data["tests"] if t["misc"]["result"] == "xfail"}
    assert finding_tests and {i["test_id"] for i in data["incidents"]} == finding_tests
    assert [i["comment"] for i in data["issues"]] == [FINDING]
    assert {t["status"] for t in data["tests"]} == {"PASS", "FAIL", "SKIP"}


def _check_level(lines: list[str], indent: str) -> int:
    """Validate one KTAP block at `indent`; return how many results it had."""
    own = [ln[len(indent):] for ln in lines if ln.startswith(indent) and not ln[len(indent):].startswith(" ")]
    assert own[0] == "KTAP version 1"
    plan = next(ln for ln in own if ln.startswith("1.."))
    results = [RESULT_LINE.match(ln) for ln in own if ln.startswith(("ok ", "not ok "))]
    assert all(results), [ln for ln in own if ln.startswith(("ok ", "not ok ")) and not RESULT_LINE.match(ln)]
    assert [int(m.group(2)) for m in results if m] == list(range(1, int(plan[3:]) + 1))
    return len(results)


def test_ktap_is_version_1_with_one_subtest_per_area(failing_run: Run) -> None:
    text = (failing_run.folder / "results.ktap").read_text()
    lines = text.splitlines()
    areas = _check_level(lines, "")
    blocks = text.split("\n  KTAP version 1\n")[1:]
    assert len(blocks) == areas == 3  # sizing, reserved, guest_memfd
    for block in blocks:
        nested = ["  KTAP version 1", *(ln for ln in block.splitlines() if ln.startswith("  "))]
        _check_level(nested, "  ")
    xfail = r"^  ok \d+ test_reserved_word\[KVM_CREATE_GUEST_MEMFD/vm0/reserved\[0\]=1\] # XFAIL "
    assert re.search(xfail + re.escape(FINDING), text, re.M)
    assert re.search(r"^  ok \d+ test_number_encodes_struct\[KVM_SET_MEMORY_ATTRIBUTES2\] # SKIP .+", text, re.M)
    assert re.search(r"^  # .*bound=1.*expected ENOSPC, got EINVAL", text, re.M)
    assert re.search(r"^not ok \d+ guest_memfd$", text, re.M) and re.search(r"^ok \d+ reserved$", text, re.M)


def test_junit_has_the_run_as_global_properties(failing_run: Run) -> None:
    root = ET.parse(failing_run.folder / "junit.xml").getroot()
    props = {p.get("name"): p.get("value") for p in root.find("testsuite/properties") or []}
    assert {"kvmconf.kernel", "kvmconf.how", "kvmconf.abi_source"} <= set(props)
    assert props["kvmconf.how"] == "this machine" and props["kvmconf.abi_source"] == "profile released"


def test_results_jsonl_reads_back_into_the_model(failing_run: Run) -> None:
    with (failing_run.folder / "results.jsonl").open() as fh:
        cases = {c.nodeid: c for c in read_jsonl(fh)}
    bound = cases[BOUND_CASE]
    assert (bound.result, bound.area) == ("fail", "guest_memfd")
    (call,) = bound.wrong_calls
    assert (call.expected, call.actual, call.what) == ("ENOSPC", "EINVAL", "KVM_SET_USER_MEMORY_REGION2 on a VM of type 0")
    assert "already bound" in call.clause
    findings = [c for c in cases.values() if c.result == "xfail"]
    assert findings and all(c.reason == FINDING and c.area == "reserved" and c.calls for c in findings)
    assert any(c.result == "skip" and "KVM_SET_MEMORY_ATTRIBUTES2" in c.reason for c in cases.values())


def test_compare_reports_the_new_failure_and_exits_1(base_run: Run, failing_run: Run, tmp_path: Path) -> None:
    with (base_run.folder / "results.jsonl").open() as fh:
        base = {c.nodeid: c for c in read_jsonl(fh)}
    if base[BOUND_CASE].result != "pass":
        pytest.skip(f"the base run needs this kernel's range_bound_errno in expectations/: {base[BOUND_CASE].reason}")
    page = tmp_path / "compare.html"
    done = kvmconf("compare", str(base_run.folder), str(failing_run.folder), "-o", str(page))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "new failures (1)" in done.stdout
    assert re.search(r"^  guest_memfd\n    test_binding\[.*bound=1\]: passed -> failed; .*expected ENOSPC, got EINVAL", done.stdout, re.M)
    assert "B has 1 new failure against A" in done.stdout
    html = page.read_text()
    assert "new failures (1)" in html and "ENOSPC" in html


def test_compare_of_a_run_with_itself_exits_0_and_writes_next_to_b(base_run: Run) -> None:
    jsonl = base_run.folder / "results.jsonl"
    done = kvmconf("compare", str(jsonl), str(jsonl))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "B has no new failure against A" in done.stdout
    written = Path(done.stdout.strip().splitlines()[-1].removeprefix("compare page: "))
    assert written.parent == base_run.folder and written.exists()
    written.unlink()


def test_compare_of_a_missing_run_is_one_line_and_its_own_code(tmp_path: Path) -> None:
    done = kvmconf("compare", str(tmp_path / "nope"), str(tmp_path / "nope"))
    assert done.returncode == 70
    assert done.stderr.strip().count("\n") == 0 and "neither a run folder" in done.stderr
