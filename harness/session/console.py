"""The console's end of a run: what was found (the start is `console_header`'s).

A reviewer reads the end of a run first: results per area, known findings by reason
with their counts, and failures grouped by the rule clause they broke, each in a few
lines (a property case's reproduction line, not hypothesis's whole explanation).
"""

from __future__ import annotations

from typing import Any

from harness.report.model import COLUMNS, LABELS, CaseResult, RunModel, by_area, by_clause, count

REPRODUCE = "reproduce:"  # suites/test_properties.py's line that reruns the drawn example
SHOWN_PER_CLAUSE = 3  # failing cases printed per clause; the HTML lists them all
COLOUR: dict[str, dict[str, bool]] = {
    "fail": {"red": True, "bold": True}, "error": {"red": True, "bold": True}, "xpass": {"red": True, "bold": True},
    "skip": {"yellow": True}, "xfail": {"yellow": True}, "pass": {"green": True},
}


def failure_lines(case: CaseResult) -> list[str]:
    """One failing case in a few lines: its id, each wrong call's expected and actual
    answer, and the line that reproduces a drawn example."""
    lines = [f"  {case.label}: {case.nodeid}"]
    calls = case.wrong_calls
    lines += [f"      {c.what}: input {c.input or '(the baseline)'}; expected {c.expected}, got {c.actual}" for c in calls]
    if not calls:
        lines.append(f"      {case.reason}")
    lines += [f"      {line.strip()}" for line in case.message.splitlines() if line.strip().startswith(REPRODUCE)][:1]
    return lines


def print_summary(tr: Any, model: RunModel) -> None:
    """Results per area, known findings, failures by clause; colour when the terminal has it."""
    heads = ["cases", *(LABELS[r] for r in COLUMNS)]
    groups = [*by_area(model.cases).items(), ("all", list(model.cases))]
    width = max(len(a) for a, _ in groups) + 2
    tr.write_sep("-", "results by area")
    tr.write_line(" " * width + "  ".join(f"{h:>{max(len(h), 5)}}" for h in heads))
    for area, cases in groups:
        n = count(cases)
        tr.write(f"{area:<{width}}" + f"{len(cases):>5}")
        for r, h in zip(COLUMNS, heads[1:], strict=True):
            tr.write("  ")
            tr.write(f"{n[r]:>{max(len(h), 5)}}", **(COLOUR[r] if n[r] else {}))
        tr.line("")
    findings = model.findings()
    if findings:
        tr.write_sep("-", f"known findings ({model.info.expectations})")
        for reason, cases in findings.items():
            tr.write_line(f"{len(cases):>5}  {reason}", yellow=True)
    failures = model.failures()
    if failures:
        tr.write_sep("-", f"failures by rule clause ({len(failures)})", red=True)
        for clause, cases in by_clause(failures).items():
            tr.write_line(f"{clause} ({len(cases)})", red=True, bold=True)
            for case in cases[:SHOWN_PER_CLAUSE]:
                for line in failure_lines(case):
                    tr.write_line(line)
            if len(cases) > SHOWN_PER_CLAUSE:
                tr.write_line(f"  ... and {len(cases) - SHOWN_PER_CLAUSE} more (report.html lists them all)")
    not_run = model.info.not_run
    if not model.info.complete:
        first = f", first {not_run[0]}" if not_run else ""
        tr.write_line(f"interrupted: {len(not_run)} cases did not finish{first}", red=True)
