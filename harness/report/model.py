"""The one model of a run that every report format is written from.

A case's result is decided here and nowhere else, from pytest's phase reports in
their serialized form (`pytest_report_to_serializable`): the plugin feeds the reports
of a live session, `compare` and `lava` feed the lines of a finished results.jsonl,
and both get the same cases.

What pytest does not know travels as one attribute of each report, `REPORT_KEY`
(xdist carries a report's attributes from the worker that ran the case to the
controller, and pytest-reportlog writes them into results.jsonl): the case's area and
id, and for a case that failed, the calls it made with the rule, input, expected and
actual answer, as plain `Call` records (the worker's plugin makes them).

This module is pure: it imports nothing of the harness's I/O, so saved results can be
read and rendered anywhere.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

Result = Literal["pass", "fail", "error", "xpass", "xfail", "skip"]
LABELS: dict[Result, str] = {
    "pass": "passed",
    "fail": "failed",
    "error": "error",
    "xpass": "finding not seen",
    "xfail": "known finding",
    "skip": "skipped",
}
COLUMNS: tuple[Result, ...] = ("pass", "fail", "error", "xfail", "xpass", "skip")  # summary tables' order
FAILING: frozenset[Result] = frozenset({"fail", "error", "xpass"})  # what makes the run exit 1
AREAS = ("sizing", "reserved", "alignment", "caps", "parity", "guest_memfd")  # spec/uapi.md's order

REPORT_KEY = "kvmconf"  # {"area": ..., "case": ..., "calls": [Call.to_json(), ...]}
FINDING_PREFIX = "known finding: "  # harness.session.plugin's xfail reason
XPASS_STRICT = "[XPASS(strict)] "


@dataclass(frozen=True)
class Call:
    """One call a case made: what, the rule that decided the expected answer, and the answer."""

    what: str  # "KVM_CREATE_GUEST_MEMFD on a VM of type 0"
    rule: str
    clause: str
    input: str
    expected: str  # "EINVAL" or "success"
    actual: str  # "EINVAL", "success", or "success (returned 16)" for a call that returns an fd
    matched: bool

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "rule": self.rule, "clause": self.clause, "input": self.input,
                "expected": self.expected, "actual": self.actual, "matched": self.matched}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Call:
        return cls(str(d["what"]), str(d["rule"]), str(d["clause"]), str(d["input"]),
                   str(d["expected"]), str(d["actual"]), bool(d["matched"]))


@dataclass(frozen=True)
class CaseResult:
    """One collected test and what became of it."""

    nodeid: str
    area: str
    test: str  # the test function
    case: str  # the case id (`Case.id`), or the parametrize id; "" for a plain test
    result: Result
    reason: str = ""  # skip reason, finding, or the failure's first line
    message: str = ""  # the whole failure text
    duration: float = 0.0
    calls: tuple[Call, ...] = ()
    slug: str = ""  # unique in the run, [A-Za-z0-9_-]: KCIDB test paths and LAVA test case names

    @property
    def name(self) -> str:
        return f"{self.test}[{self.case}]" if self.case else self.test

    @property
    def label(self) -> str:
        return LABELS[self.result]

    @property
    def wrong_calls(self) -> tuple[Call, ...]:
        """The calls whose answer broke their rule; all calls when none did (the case
        failed on something else, such as a leaked fd)."""
        return tuple(c for c in self.calls if not c.matched) or self.calls


@dataclass(frozen=True)
class IoctlFact:
    name: str
    number: int
    macro: str  # "_IOWR"
    struct: str | None
    size: int | None
    fds: tuple[str, ...]


@dataclass(frozen=True)
class CapRow:
    """A cap's number and its value at each scope (None: not asked there)."""

    name: str
    number: int | None
    system: int | None
    vm: tuple[int | None, ...]  # one per RunInfo.vm_types


@dataclass(frozen=True)
class Checkout:
    """Where the kernel's source came from, when the run was told (KCIDB's checkout)."""

    tree_name: str = ""  # "mainline", "kvm-next"
    git_url: str = ""
    git_commit: str = ""  # 40 hex digits
    config: str = ""  # the build's .config name or path relative to the kernel folder, when it has one


@dataclass(frozen=True)
class RunInfo:
    """What was tested, and how: the header of every report."""

    run_id: str
    started: float  # seconds since the epoch
    duration: float
    kernel: str
    how: str  # "this machine" or "QEMU (tcg)"
    abi_source: str  # "profile released", "header /x/kvm.h (...)"
    profile: str
    backend: str
    arch: str
    expectations: str  # the known-findings file, or "none"
    ioctls: tuple[IoctlFact, ...]
    structs: tuple[tuple[str, int], ...]
    vm_types: tuple[int, ...]
    caps: tuple[CapRow, ...]
    vm_errors: tuple[tuple[int, str], ...]
    exitstatus: int
    not_run: tuple[str, ...]  # collected, but the run ended before they finished
    profile_reason: str = ""  # why this profile: "given with --profile", "the header's KVM_CAP_... " (set by the chooser)
    model: bool = False  # the model answered, not a kernel: no kernel build to report
    checkout: Checkout = Checkout()

    @property
    def complete(self) -> bool:
        return self.exitstatus != 2 and not self.not_run


@dataclass(frozen=True)
class RunModel:
    info: RunInfo
    cases: tuple[CaseResult, ...]

    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if c.result in FAILING]

    def findings(self) -> dict[str, list[CaseResult]]:
        """Known findings (strict xfails), by the finding's reason."""
        out: dict[str, list[CaseResult]] = {}
        for c in self.cases:
            if c.result == "xfail":
                out.setdefault(c.reason, []).append(c)
        return out


# -- deciding a case's result from its phase reports ----------------------------------


def split_nodeid(nodeid: str) -> tuple[str, str, str]:
    """("sizing", "test_copy_size", "KVM_.../vm0/exact") from a node id."""
    path, _, rest = nodeid.partition("::")
    stem = PurePosixPath(path).stem
    test, bracket, param = rest.rpartition("::")[2].partition("[")
    return stem.removeprefix("test_"), test or stem, param[:-1] if bracket and param.endswith("]") else ""


def slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "_"


def _text(report: Mapping[str, Any]) -> str:
    """A report's longrepr as text: the failure message, or the skip reason."""
    lr = report.get("longrepr")
    if lr is None:
        return ""
    if isinstance(lr, str):
        return lr
    if isinstance(lr, list | tuple):  # a skip: (path, lineno, "Skipped: reason")
        return str(lr[2]).removeprefix("Skipped: ")
    crash = lr.get("reprcrash") if isinstance(lr, Mapping) else None
    return str(crash.get("message", "")) if isinstance(crash, Mapping) else str(lr)


def _failure_text(report: Mapping[str, Any]) -> str:
    return _text(report).removeprefix("Failed: ")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _finding(reason: str) -> str:
    return reason.removeprefix(FINDING_PREFIX)


def _skipped(report: Mapping[str, Any]) -> tuple[Result, str, str]:
    if report.get("wasxfail") is not None:
        return "xfail", _finding(str(report["wasxfail"])), _failure_text(report)
    return "skip", _text(report), ""


def decide(phases: Mapping[str, Mapping[str, Any]]) -> tuple[Result, str, str] | None:
    """(result, reason, message) from a test's setup/call/teardown reports; None when
    it never got past setup (the run ended first)."""
    setup, call, teardown = phases.get("setup"), phases.get("call"), phases.get("teardown")
    if setup is not None and setup["outcome"] == "failed":
        text = _failure_text(setup)
        return "error", _first_line(text), text
    for rep in (setup, call):
        if rep is not None and rep["outcome"] == "skipped":
            return _skipped(rep)
    if call is None:
        return None
    if call["outcome"] == "failed":
        text = _failure_text(call)
        if text.startswith(XPASS_STRICT):
            return "xpass", _finding(text.removeprefix(XPASS_STRICT)), text
        return "fail", _first_line(text), text
    if call.get("wasxfail") is not None:
        return "xpass", _finding(str(call["wasxfail"])), ""
    if teardown is not None and teardown["outcome"] == "failed":
        text = _failure_text(teardown)
        return "error", _first_line(text), text
    return "pass", "", ""


def _attached(phases: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What the worker attached to the case's reports, merged over its phases."""
    out: dict[str, Any] = {}
    for rep in phases:
        out.update(rep.get(REPORT_KEY) or {})
    return out


class Collector:
    """Phase reports (as dicts) in, cases out."""

    def __init__(self) -> None:
        self._phases: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._done: dict[str, CaseResult] = {}

    def add(self, report: Mapping[str, Any]) -> CaseResult | None:
        """Take one report; return the case it finished, if it finished one."""
        kind = report.get("$report_type", "TestReport")
        nodeid = str(report.get("nodeid", ""))
        if kind == "CollectReport" and report.get("outcome") == "failed":
            text = _failure_text(report)
            area, _, _ = split_nodeid(nodeid)
            case = CaseResult(nodeid, area, "collection", "", "error", _first_line(text), text)
            self._done[nodeid] = case
            return case
        if kind != "TestReport":
            return None
        self._phases.setdefault(nodeid, {})[str(report["when"])] = report
        if report["when"] != "teardown":
            return None
        return self._close(nodeid)

    def _close(self, nodeid: str) -> CaseResult | None:
        phases = self._phases.pop(nodeid)
        verdict = decide(phases)
        if verdict is None:
            return None
        result, reason, message = verdict
        attached = _attached(phases.values())
        area, test, case = split_nodeid(nodeid)
        area, case = str(attached.get("area", area)), str(attached.get("case", case))
        calls = tuple(Call.from_json(c) for c in attached.get("calls", ()))
        duration = sum(float(p.get("duration", 0.0)) for p in phases.values())
        done = CaseResult(nodeid, area, test, case, result, reason, message, duration, calls)
        self._done[nodeid] = done
        return done

    def case(self, nodeid: str) -> CaseResult | None:
        return self._done.get(nodeid)

    def cases(self, order: Sequence[str] = ()) -> tuple[CaseResult, ...]:
        """Every finished case, by area and then collection order, each with a unique slug.
        Tests that never got past setup (the run ended first) are left out."""
        for nodeid in list(self._phases):
            self._close(nodeid)
        rank = {n: i for i, n in enumerate(order)}
        arrival = {n: i for i, n in enumerate(self._done)}
        ordered = sorted(self._done.values(), key=lambda c: (area_rank(c.area), rank.get(c.nodeid, len(rank) + arrival[c.nodeid])))
        seen: set[str] = set()
        out = []
        for c in ordered:
            base = slugify(c.name)
            slug, n = base, 1
            while slug in seen:
                n += 1
                slug = f"{base}-{n}"
            seen.add(slug)
            out.append(CaseResult(c.nodeid, c.area, c.test, c.case, c.result, c.reason, c.message, c.duration, c.calls, slug))
        return tuple(out)


def area_rank(area: str) -> tuple[int, str]:
    return (AREAS.index(area) if area in AREAS else len(AREAS), area)


def by_area(cases: Iterable[CaseResult]) -> dict[str, list[CaseResult]]:
    """Cases grouped by area, areas in the spec's order."""
    groups: dict[str, list[CaseResult]] = {}
    for c in cases:
        groups.setdefault(c.area, []).append(c)
    return {a: groups[a] for a in sorted(groups, key=area_rank)}


def count(cases: Iterable[CaseResult]) -> Counter[Result]:
    return Counter(c.result for c in cases)


def read_jsonl(lines: Iterable[str]) -> tuple[CaseResult, ...]:
    """The cases of a results.jsonl (pytest-reportlog), decided as in a live run."""
    collector = Collector()
    for line in lines:
        if line.strip():
            collector.add(json.loads(line))
    return collector.cases()


def clause_of(case: CaseResult) -> str:
    """The rule clause a case is judged by: its first wrong call's (or first call's);
    for a case that made no call, what it tested."""
    calls = case.wrong_calls
    if calls:
        return f"{calls[0].rule}: {calls[0].clause}"
    return f"{case.area}: {case.test}"


def by_clause(cases: Iterable[CaseResult]) -> dict[str, list[CaseResult]]:
    """Cases grouped by rule clause, in the order the clauses first appear."""
    groups: dict[str, list[CaseResult]] = {}
    for c in cases:
        groups.setdefault(clause_of(c), []).append(c)
    return groups


def skip_reasons(cases: Iterable[CaseResult]) -> list[tuple[str, int]]:
    """Why cases were skipped, most common first."""
    n = Counter(c.reason for c in cases if c.result == "skip")
    return sorted(n.items(), key=lambda kv: (-kv[1], kv[0]))
