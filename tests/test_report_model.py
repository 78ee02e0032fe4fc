"""The run model without a kernel: results decided from pytest's serialized phase
reports, and the formats written from a model made by hand (KTAP, KCIDB valid under
kcidb-io, compare's kinds of change, LAVA's results)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kcidb_io
import pytest

from harness.host.files import partial_name, write_atomic
from harness.report import kcidb, ktap
from harness.report.compare import NEW_FAILURE, classify
from harness.report.lava import commands
from harness.report.model import (
    REPORT_KEY,
    Call,
    CapRow,
    CaseResult,
    Collector,
    IoctlFact,
    Result,
    RunInfo,
    RunModel,
    read_jsonl,
    split_nodeid,
)

NODE = "suites/test_reserved.py::test_reserved_word[KVM_CREATE_GUEST_MEMFD/vm0/reserved[0]=1]"
CALL = Call("KVM_CREATE_GUEST_MEMFD on a VM of type 0", "KVM_CREATE_GUEST_MEMFD rules", "reserved[0] ≠ 0 → EINVAL",
            "size=0x1000 reserved[0]=1", "EINVAL", "success (returned 16)", False)
FAILED: dict[str, Any] = {
    "reprcrash": {"path": "x.py", "lineno": 1, "message": "Failed: answer differs from the rule\nKVM_CREATE_GUEST_MEMFD ..."},
    "reprtraceback": {}, "sections": [], "chain": None,
}


def phase(when: str, outcome: str, longrepr: Any = None, nodeid: str = NODE, **extra: Any) -> dict[str, Any]:
    """A serialized report; NODE's carry what the worker attaches, others nothing."""
    attached: dict[str, Any] = {"area": "reserved", "case": "KVM_CREATE_GUEST_MEMFD/vm0/reserved[0]=1"} if nodeid == NODE else {}
    if nodeid == NODE and when != "setup" and outcome != "passed":
        attached["calls"] = [CALL.to_json()]
    return {"$report_type": "TestReport", "nodeid": nodeid, "when": when, "outcome": outcome, "longrepr": longrepr,
            "duration": 0.25, "user_properties": [], REPORT_KEY: attached, **extra}


def one(*reports: dict[str, Any]) -> tuple[CaseResult, ...]:
    collector = Collector()
    for r in reports:
        collector.add(r)
    return collector.cases()


def test_split_nodeid() -> None:
    assert split_nodeid(NODE) == ("reserved", "test_reserved_word", "KVM_CREATE_GUEST_MEMFD/vm0/reserved[0]=1")
    assert split_nodeid("suites/test_guest_memfd.py::test_fstat[0]") == ("guest_memfd", "test_fstat", "0")
    assert split_nodeid("suites/test_sizing.py::test_x") == ("sizing", "test_x", "")


@pytest.mark.parametrize(("reports", "result", "reason"), [
    ([phase("setup", "passed"), phase("call", "passed"), phase("teardown", "passed")], "pass", ""),
    ([phase("setup", "passed"), phase("call", "skipped", ["t.py", 3, "Skipped: KVM_CAP_X is 0 on /dev/kvm"]),
      phase("teardown", "passed")], "skip", "KVM_CAP_X is 0 on /dev/kvm"),
    ([phase("setup", "passed"), phase("call", "skipped", FAILED, wasxfail="known finding: reserved[] unchecked"),
      phase("teardown", "passed")], "xfail", "reserved[] unchecked"),
    ([phase("setup", "passed"), phase("call", "failed", "[XPASS(strict)] known finding: reserved[] unchecked"),
      phase("teardown", "passed")], "xpass", "reserved[] unchecked"),
    ([phase("setup", "passed"), phase("call", "failed", FAILED), phase("teardown", "passed")], "fail", "answer differs from the rule"),
    ([phase("setup", "failed", FAILED), phase("teardown", "passed")], "error", "answer differs from the rule"),
    ([phase("setup", "passed"), phase("call", "passed"), phase("teardown", "failed", "boom")], "error", "boom"),
])
def test_result_decided_from_phase_reports(reports: list[dict[str, Any]], result: Result, reason: str) -> None:
    (case,) = one(*reports)
    assert (case.result, case.reason, case.area, case.case) == (result, reason, "reserved", "KVM_CREATE_GUEST_MEMFD/vm0/reserved[0]=1")
    assert case.duration == pytest.approx(0.25 * len(reports))
    if result in ("fail", "xfail"):
        assert case.wrong_calls == (CALL,)


def test_a_case_that_never_got_past_setup_is_not_a_result() -> None:
    assert one(phase("setup", "passed")) == ()


def test_collection_error_is_an_error_of_its_module() -> None:
    (case,) = one({"$report_type": "CollectReport", "nodeid": "suites/test_caps.py", "outcome": "failed", "longrepr": "ImportError: x"})
    assert (case.area, case.result, case.reason) == ("caps", "error", "ImportError: x")


def test_slugs_are_unique_and_plain() -> None:
    a = "suites/test_caps.py::test_a[x/y]"
    b = "suites/test_caps.py::test_a[x_y]"
    cases = one(*(phase(w, "passed", nodeid=n) for n in (a, b) for w in ("setup", "call", "teardown")))
    assert [c.slug for c in cases] == ["test_a_x_y", "test_a_x_y-2"]


def test_read_jsonl_skips_session_lines() -> None:
    lines = [json.dumps({"pytest_version": "9", "$report_type": "SessionStart"}),
             *(json.dumps(phase(w, "passed")) for w in ("setup", "call", "teardown")),
             json.dumps({"exitstatus": 0, "$report_type": "SessionFinish"})]
    (case,) = read_jsonl(lines)
    assert case.result == "pass"


def _case(result: Result, name: str, area: str = "reserved", reason: str = "", calls: tuple[Call, ...] = ()) -> CaseResult:
    return CaseResult(f"suites/test_{area}.py::test_x[{name}]", area, "test_x", name, result, reason,
                      reason, 0.01, calls, f"test_x_{name}")


MODEL = RunModel(
    RunInfo(run_id="20260101-000000-000-1", started=1.7e9, duration=1.0, kernel="6.18.0", how="QEMU (tcg)",
            abi_source="profile released", profile="released", backend="kernel", arch="x86_64",
            expectations="expectations/x.toml",
            ioctls=(IoctlFact("KVM_CREATE_GUEST_MEMFD", 0xC040AED4, "_IOWR", "kvm_create_guest_memfd", 64, ("vm",)),),
            structs=(("kvm_create_guest_memfd", 64),), vm_types=(0,),
            caps=(CapRow("KVM_CAP_GUEST_MEMFD", 234, 1, (1,)),), vm_errors=(), exitstatus=1, not_run=()),
    (
        _case("pass", "a", "sizing"),
        _case("skip", "b", "sizing", "KVM_CAP_X is 0 on /dev/kvm"),
        _case("xfail", "c", reason="reserved[] unchecked", calls=(CALL,)),
        _case("xpass", "d", reason="pad unchecked"),
        _case("fail", "e", "caps", "answer differs from the rule", (CALL,)),
        _case("error", "f", "caps", "fixture broke"),
    ),
)


def test_kcidb_of_every_result_validates_with_kcidb_io() -> None:
    data = kcidb.render(MODEL)
    kcidb_io.schema.LATEST.validate_exactly(data)
    status = {t["comment"]: t["status"] for t in data["tests"]}
    assert status == {"test_x[a]": "PASS", "test_x[b]": "SKIP", "test_x[c]": "FAIL", "test_x[d]": "PASS",
                      "test_x[e]": "FAIL", "test_x[f]": "ERROR"}
    assert {(i["test_id"].rsplit(":", 1)[1], i["present"]) for i in data["incidents"]} == {("test_x_c", True), ("test_x_d", False)}
    assert len(data["issues"]) == 2 and all(i["culprit"] == {"code": True} for i in data["issues"])
    assert {t["path"] for t in data["tests"]} >= {"kvmconf.sizing.test_x_a", "kvmconf.caps.test_x_e"}


def test_ktap_directives() -> None:
    text = ktap.render(MODEL)
    assert text.startswith("KTAP version 1\n")
    assert "\n1..3\n" in text  # sizing, reserved, caps
    assert "  ok 2 test_x[b] # SKIP KVM_CAP_X is 0 on /dev/kvm\n" in text
    assert "  ok 1 test_x[c] # XFAIL reserved[] unchecked\n" in text
    assert "  # test_x[c]: KVM_CREATE_GUEST_MEMFD on a VM of type 0: expected EINVAL, got success (returned 16)" in text
    assert "  not ok 2 test_x[d]\n" in text and "  not ok 2 test_x[f] # ERROR fixture broke\n" in text
    assert "\nok 1 sizing\nok" not in text  # the area's totals come between
    assert "\nnot ok 2 reserved\n" in text and "\nnot ok 3 caps\n" in text and "\nok 1 sizing\n" in text
    assert "# Totals: pass:1 fail:1 xfail:1 xpass:1 skip:1 error:1\n" in text


def test_lava_results() -> None:
    calls = [cmd for _, cmd in commands(MODEL.cases)]
    results = {cmd[1]: cmd[3] for cmd in calls if cmd[0] == "lava-test-case"}
    assert results == {"test_x_a": "pass", "test_x_b": "skip", "test_x_c": "pass",
                       "test_x_d": "fail", "test_x_e": "fail", "test_x_f": "fail"}
    assert [c for c in calls if c[0] == "lava-test-set"] == [
        ["lava-test-set", "start", "sizing"], ["lava-test-set", "stop"], ["lava-test-set", "start", "reserved"],
        ["lava-test-set", "stop"], ["lava-test-set", "start", "caps"], ["lava-test-set", "stop"]]


@pytest.mark.parametrize(("a", "b", "kind"), [
    ("pass", "fail", NEW_FAILURE), ("skip", "error", NEW_FAILURE), (None, "fail", NEW_FAILURE), ("pass", "xpass", NEW_FAILURE),
    ("fail", "pass", "fixed"), ("xfail", "pass", "known findings no longer seen"), ("xfail", "xpass", "known findings no longer seen"),
    ("pass", "xfail", "new known findings"), ("pass", "skip", "new skips"), ("skip", "pass", "no longer skipped"),
    ("pass", None, "vanished cases"), (None, "pass", "new cases"), ("fail", "error", "other changes"), ("pass", "pass", None),
])
def test_compare_kinds(a: Result | None, b: Result | None, kind: str | None) -> None:
    def side(r: Result | None) -> CaseResult | None:
        return _case(r, "a") if r is not None else None

    assert classify(side(a), side(b)) == kind


def test_write_atomic_leaves_only_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "results.ktap"
    write_atomic(target, "KTAP version 1\n")
    assert target.read_text() == "KTAP version 1\n" and not partial_name(target).exists()
    assert partial_name(target).name == ".results.ktap.partial"


FORBIDDEN = ("harness.session", "harness.host", "harness.model", "harness.qemu", "harness.cli", "ctypes", "pytest", "subprocess")


def test_report_imports_no_io() -> None:
    """harness/report/ is pure: saved results render anywhere, and a reader of it meets no I/O."""
    import ast

    from harness.paths import ROOT

    found = []
    for path in sorted((ROOT / "harness" / "report").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    assert found == []
