"""Each format fed to its real consumer, and kept byte for byte.

junit.xml validates against Jenkins' xUnit plugin schema (tests/data/junit/junit-10.xsd)
and keeps properties at the suite level; KTAP goes through kunit_tool's parser when a
kernel tree provides it; the model run's results.ktap and junit.xml, a hand-made
kernel run's kcidb.json and the compare output equal the golden files under
tests/data/golden/ once times, host names and run ids are normalised. Set
KVMCONF_UPDATE_GOLDEN=1 to rewrite the golden files from what the code writes now.
"""

from __future__ import annotations

import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import kcidb_io
import pytest
import xmlschema

from harness.cli.compare import load, resolve
from harness.report import kcidb
from harness.report.compare import Run as Side
from harness.report.compare import changes, render_console, warnings
from harness.report.model import Checkout, RunInfo, RunModel, read_jsonl
from tests.reportrun import Run, kvmconf
from tests.test_report_model import MODEL

DATA = Path(__file__).with_name("data")
GOLDEN = DATA / "golden"
SCHEMA = xmlschema.XMLSchema10(DATA / "junit" / "junit-10.xsd")


def normalise_junit(text: str) -> str:
    """Times, the host's name and the run id are not the format's content."""
    text = re.sub(r'\btime="[0-9.]+"', 'time="0.000"', text)
    text = re.sub(r'\btimestamp="[^"]*"', 'timestamp="T"', text)
    text = re.sub(r'\bhostname="[^"]*"', 'hostname="H"', text)
    # a skip's location: the checkout's path and a line number, neither the format's
    text = re.sub(r'>[^<>"]*?/((?:suites|harness)/[\w/]+\.py):\d+: ', r'>\1:N: ', text)
    root = ET.fromstring(re.sub(r'(name="kvmconf.run_id" value=)"[^"]*"', r'\1"RUN"', text))
    ET.indent(root)  # one element a line, so a change reads as a diff
    return ET.tostring(root, encoding="unicode") + "\n"


def same_as_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("KVMCONF_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == text, f"{name} differs from {golden}; KVMCONF_UPDATE_GOLDEN=1 rewrites it"


def test_junit_of_a_kernel_run_validates_against_junit_10_xsd(failing_run: Run) -> None:
    path = failing_run.folder / "junit.xml"
    errors = [f"{e.path}: {e.reason}" for e in SCHEMA.iter_errors(str(path))]
    assert errors == []
    root = ET.parse(path).getroot()
    assert [s.get("name") for s in root.iter("testsuite")] == ["kvmconf"]
    assert root.findall("testsuite/testcase/properties") == []


def test_model_run_junit_is_golden(model_run: Run) -> None:
    text = (model_run.folder / "junit.xml").read_text(encoding="utf-8")
    assert SCHEMA.is_valid(text)
    same_as_golden("model-run.junit.xml", normalise_junit(text))


def test_model_run_ktap_is_golden(model_run: Run) -> None:
    same_as_golden("model-run.ktap", (model_run.folder / "results.ktap").read_text(encoding="utf-8"))


def test_model_run_posts_no_kernel_build(model_run: Run) -> None:
    data = json.loads((model_run.folder / "kcidb.json").read_text())
    kcidb_io.schema.LATEST.validate_exactly(data)
    assert set(data) == {"version"}


def test_kcidb_is_golden_and_has_the_checkout_fields() -> None:
    info: RunInfo = replace(MODEL.info, checkout=Checkout("kvm-next", "https://git.kernel.org/pub/scm/virt/kvm/kvm.git",
                                                           "0123456789abcdef0123456789abcdef01234567", "config-6.18.0"),
                            abi_source="header /home/someone/linux/include/uapi/linux/kvm.h (semantics: profile released)")
    data = kcidb.render(RunModel(info, MODEL.cases))
    kcidb_io.schema.LATEST.validate_exactly(data)
    (checkout,), (build,) = data["checkouts"], data["builds"]
    assert (checkout["tree_name"], checkout["git_commit_hash"], build["config_name"], build["status"]) == (
        "kvm-next", "0123456789abcdef0123456789abcdef01234567", "config-6.18.0", "PASS")
    other_run = kcidb.render(RunModel(replace(info, run_id="another", started=info.started + 60), MODEL.cases))
    assert other_run["checkouts"][0]["id"] == checkout["id"] and other_run["builds"][0]["id"] == build["id"]
    assert "/home/" not in json.dumps(data)
    same_as_golden("kcidb.json", json.dumps(data, indent=1) + "\n")


def _sides() -> tuple[Side, Side]:
    cases = {c.nodeid: c for c in MODEL.cases}
    flipped = {n: c for n, c in cases.items() if c.result != "skip"}
    a_case = next(c for c in MODEL.cases if c.result == "pass")
    flipped[a_case.nodeid] = replace(a_case, result="fail", reason="answer differs from the rule", calls=MODEL.cases[4].calls)
    a = Side("run-a", "reports/run-a", cases, {"kernel": "6.18.0", "profile": "released", "backend": "kernel",
                                                "expectations": "expectations/6.18-kvm_pvm.toml"})
    b = Side("run-b", "reports/run-b", flipped, {"kernel": "model-released", "profile": "released", "backend": "model",
                                                  "expectations": "none"})
    return a, b


def test_compare_console_is_golden_and_warns() -> None:
    a, b = _sides()
    assert warnings(a, b) == ["the runs differ in backend: A kernel, B model",
                              "the runs differ in expectations: A expectations/6.18-kvm_pvm.toml, B none"]
    same_as_golden("compare.txt", render_console(a, b, changes(a, b), colour=False))


def test_compare_of_a_kernel_run_with_a_model_run_warns(base_run: Run, model_run: Run) -> None:
    done = kvmconf("compare", str(base_run.folder), str(model_run.folder), "-o", str(model_run.folder / "compare.html"))
    assert "warning: the runs differ in backend: A kernel, B model" in done.stdout, done.stdout + done.stderr
    assert "Warning: the runs differ in backend" in (model_run.folder / "compare.html").read_text()


def test_compare_finds_a_run_id_under_reports(model_run: Run) -> None:
    reports = model_run.folder.parent
    assert resolve(model_run.folder.name, reports) == reports / model_run.folder.name
    side = load(resolve(model_run.folder.name, reports))
    assert side.said("backend") == "model" and side.said("profile") == "released"


def _kunit_tool() -> Path | None:
    """tools/testing/kunit of a kernel tree that ../shared/kernels/linux-source extracted."""
    trees = sorted((Path.home() / ".cache" / "kvm-kernels" / "src").glob("linux-source-*/tools/testing/kunit"))
    return next((t for t in reversed(trees) if (t / "kunit_parser.py").exists()), None)


def test_ktap_parses_with_kunit_tool(model_run: Run, failing_run: Run) -> None:
    """kunit_tool's own parser reads our KTAP: every area and case, no parse error,
    and the failure where the run had one."""
    tool = _kunit_tool()
    if tool is None:
        pytest.skip("kunit_tool is not here: ../shared/kernels/linux-source extracts a kernel tree that has it")
    sys.path.insert(0, str(tool))
    try:
        import kunit_parser  # type: ignore[import-not-found]
        import kunit_printer  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tool))
    for run, status in ((model_run, "SUCCESS"), (failing_run, "FAILURE")):
        lines = (run.folder / "results.ktap").read_text().splitlines()
        test = kunit_parser.parse_run_tests(lines, kunit_printer.null_printer)
        assert (test.counts.errors, test.status.name) == (0, status), [str(e) for e in test.log]
        with (run.folder / "results.jsonl").open() as fh:
            cases = read_jsonl(fh)
        assert sum(len(t.subtests) for t in test.subtests) == len(cases)
