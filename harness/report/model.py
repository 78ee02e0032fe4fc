"""The one model of a run that every report format is written from.

A case's result is decided here and nowhere else, from pytest's phase reports in
their serialized form (`pytest_report_to_serializable`): the plugin feeds the reports
of a live session, `compare` and `lava` feed the lines of a finished results.jsonl,
and both get the same cases.

What pytest does not know travels in each report's `user_properties` (xdist carries
them from the worker that ran the case to the controller): the case's area and id,
and for a case that failed, the calls it made with the rule, input, expected and
actual answer (`harness.session.engine.Outcome`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from harness.host.backend import errno_name
from harness.session.engine import Outcome
from harness.session.target import Target

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

CASE_PROPERTY = "kvmconf.case"
CALLS_PROPERTY = "kvmconf.calls"
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


def call_of(o: Outcome) -> Call:
    """The report's view of a case's outcome, with errno names."""
    actual = errno_name(o.result) if o.result < 0 else ("success" if o.result == 0 else f"success (returned {o.result})")
    if o.diff_outside:
        actual += f", and wrote {len(o.diff_outside)} bytes outside the struct"
    if o.trace:
        actual += f", and left a trace: {o.trace}"
    matched = o.expect.matches(o.result) and not o.diff_outside and not o.trace
    return Call(f"{o.label} on {o.fd_label}", o.expect.rule, o.expect.clause, o.input_text(), str(o.expect), actual, matched)


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


def run_info(target: Target, *, run_id: str, started: float, expectations: str, exitstatus: int,
             not_run: Sequence[str]) -> RunInfo:
    """The run's header from the session's target (ABI facts and probed caps)."""
    facts = target.facts
    ioctls = tuple(
        IoctlFact(io.name, io.number, io.direction.macro, io.struct,
                  facts.structs[io.struct].size if io.struct is not None and io.struct in facts.structs else None, tuple(io.fds))
        for io in sorted(facts.ioctls.values(), key=lambda i: i.name)
    )
    caps = target.caps
    numbers = {**facts.model_caps, **facts.caps} if target.model else dict(facts.caps)
    names = sorted(caps.system, key=lambda n: (numbers.get(n, 1 << 30), n))
    rows = tuple(CapRow(n, numbers.get(n), caps.system.get(n), tuple(caps.vm.get(t, {}).get(n) for t in caps.vm_types))
                 for n in names)
    return RunInfo(
        run_id=run_id, started=started, duration=time.time() - started, kernel=target.kernel, how=target.how,
        abi_source=facts.source, profile=facts.profile, backend=target.backend.name, arch=os.uname().machine,
        expectations=expectations,
        ioctls=ioctls, structs=tuple(sorted((s.name, s.size) for s in facts.structs.values())),
        vm_types=tuple(caps.vm_types), caps=rows, vm_errors=tuple(sorted(caps.vm_errors.items())),
        exitstatus=exitstatus, not_run=tuple(not_run),
    )


# -- what a worker attaches to a report ------------------------------------------------


def case_property(area: str, case: str) -> tuple[str, str]:
    return CASE_PROPERTY, json.dumps({"area": area, "case": case}, separators=(",", ":"))


def calls_property(outcomes: Iterable[Outcome]) -> tuple[str, str]:
    return CALLS_PROPERTY, json.dumps([call_of(o).to_json() for o in outcomes], separators=(",", ":"))


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


def _properties(phases: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    props: dict[str, str] = {}
    for rep in phases:
        for name, value in rep.get("user_properties") or ():
            props[str(name)] = str(value)
    return props


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
        props = _properties(phases.values())
        area, test, case = split_nodeid(nodeid)
        if CASE_PROPERTY in props:
            meta = json.loads(props[CASE_PROPERTY])
            area, case = str(meta["area"]), str(meta["case"])
        calls = tuple(Call.from_json(c) for c in json.loads(props.get(CALLS_PROPERTY, "[]")))
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
