"""results.ktap: the run in KTAP version 1, as kselftest prints it.

One subtest per area, one result line per case. Encoding (Documentation/dev-tools/ktap.rst,
tools/testing/selftests/kselftest.h):

- pass: `ok N name`
- skip: `ok N name # SKIP reason`
- known finding (strict xfail): `ok N name # XFAIL finding`, preceded by diagnostic lines
  with the rule and the kernel's answer. XFAIL is a KTAP v1 directive ("used by some
  kselftest tests"); kselftest's `ksft_test_result_xfail()` prints `ok N # XFAIL msg`.
  A parser that does not know the directive falls back to the result, `ok`: an expected
  failure does not fail the area, as in kselftest.
- failure: diagnostic lines (rule, input, expected, actual), then `not ok N name`.
- error (setup or teardown broke): `not ok N name # ERROR message`.
- a known finding that no longer reproduces (strict xpass): `not ok N name`, with a
  diagnostic saying the expectations file needs updating.

An area is `not ok` when one of its cases is, and `ok ... # SKIP` when all were skipped.
Totals follow kselftest's `# Totals:` line. Cases that an interrupted run never finished
are listed as diagnostics at the end.
"""

from __future__ import annotations

import re

from harness.report.model import FAILING, CaseResult, RunModel, by_area, count

INDENT = "  "


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _description(case: CaseResult) -> str:
    """A result line's description: no `#`, which starts the directive."""
    return case.name.replace("#", "%23")


def _totals(cases: list[CaseResult]) -> str:
    n = count(cases)
    return (f"pass:{n['pass']} fail:{n['fail']} xfail:{n['xfail']} xpass:{n['xpass']} "
            f"skip:{n['skip']} error:{n['error']}")


def _case_lines(number: int, case: CaseResult) -> list[str]:
    name = _description(case)
    diagnostics = [f"# {name}: {c.what}: expected {c.expected}, got {c.actual} ({c.rule}: {_one_line(c.clause)}; input {c.input})"
                   for c in case.wrong_calls]
    if case.result == "pass":
        return [f"ok {number} {name}"]
    if case.result == "skip":
        return [f"ok {number} {name} # SKIP {_one_line(case.reason)}"]
    if case.result == "xfail":
        return [*diagnostics, f"ok {number} {name} # XFAIL {_one_line(case.reason)}"]
    if case.result == "error":
        return [f"not ok {number} {name} # ERROR {_one_line(case.reason)}"]
    if case.result == "xpass":
        return [f"# {name}: known finding not seen, update the expectations file: {_one_line(case.reason)}",
                f"not ok {number} {name}"]
    detail = diagnostics or [f"# {name}: {_one_line(line)}" for line in case.message.strip().splitlines()[:8]]
    return [*detail, f"not ok {number} {name}"]


def render(model: RunModel) -> str:
    info = model.info
    areas = by_area(model.cases)
    lines = [
        "KTAP version 1",
        f"# kvmconf: kernel {info.kernel} ({info.how}), ABI {info.abi_source}, backend {info.backend}",
        f"1..{len(areas)}",
    ]
    for number, (area, cases) in enumerate(areas.items(), 1):
        lines += [INDENT + "KTAP version 1", f"{INDENT}# Subtest: {area}", f"{INDENT}1..{len(cases)}"]
        for n, case in enumerate(cases, 1):
            lines += [INDENT + line for line in _case_lines(n, case)]
        lines.append(f"# {area}: {_totals(cases)}")
        if any(c.result in FAILING for c in cases):
            lines.append(f"not ok {number} {area}")
        elif all(c.result == "skip" for c in cases):
            lines.append(f"ok {number} {area} # SKIP every case skipped")
        else:
            lines.append(f"ok {number} {area}")
    lines.append(f"# Totals: {_totals(list(model.cases))}")
    if not info.complete:
        lines.append(f"# run interrupted: {len(info.not_run)} cases did not finish")
        lines += [f"# did not finish: {nodeid}" for nodeid in info.not_run]
    return "\n".join(lines) + "\n"
