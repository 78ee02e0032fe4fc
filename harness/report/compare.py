"""`kvmconf compare A B`: what changed from run A (say, the base kernel) to run B (the
patched one), the reviewer's question. Exit 0 when B has no new failure against A, 1
when it has.

A and B are run folders or results.jsonl files; both are read back into the model
(`model.read_jsonl`), so a case's result means here what it meant in the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html import escape
from pathlib import Path

from harness.errors import KvmconfError
from harness.host.files import write_atomic
from harness.report.html import explain, page, result_span
from harness.report.model import FAILING, CaseResult, area_rank, read_jsonl

# Kinds of change, in the order they are shown; only the first makes the exit code 1.
NEW_FAILURE = "new failures"
KINDS = (
    NEW_FAILURE,
    "fixed",
    "known findings no longer seen",
    "new known findings",
    "new skips",
    "no longer skipped",
    "new cases",
    "vanished cases",
    "other changes",
)


CONSOLE_LIMIT = 20  # cases per area and kind on the console


class CompareInputError(KvmconfError):
    exit_code = 70


@dataclass(frozen=True)
class Run:
    """One side of a comparison: where it came from and its cases by node id."""

    label: str
    path: Path
    kernel: str
    cases: dict[str, CaseResult]


@dataclass(frozen=True)
class Change:
    kind: str
    before: CaseResult | None
    after: CaseResult | None

    @property
    def case(self) -> CaseResult:
        case = self.after or self.before
        assert case is not None
        return case


def classify(a: CaseResult | None, b: CaseResult | None) -> str | None:
    """The kind of change from A's result to B's; None when there is none."""
    if a is None:
        return NEW_FAILURE if b is not None and b.result in FAILING else "new cases"
    if b is None:
        return "vanished cases"
    if a.result == b.result:
        return None
    if a.result == "xfail" and b.result in ("pass", "xpass"):
        return "known findings no longer seen"
    if b.result in FAILING and a.result not in FAILING:
        return NEW_FAILURE
    if a.result in FAILING and b.result == "pass":
        return "fixed"
    if b.result == "xfail":
        return "new known findings"
    if b.result == "skip":
        return "new skips"
    if a.result == "skip":
        return "no longer skipped"
    return "other changes"


def changes(a: Run, b: Run) -> list[Change]:
    out = []
    for nodeid in [*a.cases, *(n for n in b.cases if n not in a.cases)]:
        before, after = a.cases.get(nodeid), b.cases.get(nodeid)
        kind = classify(before, after)
        if kind is not None:
            out.append(Change(kind, before, after))
    return out


def by_area(found: list[Change]) -> dict[str, list[Change]]:
    groups: dict[str, list[Change]] = {}
    for ch in found:
        groups.setdefault(ch.case.area, []).append(ch)
    return {area: groups[area] for area in sorted(groups, key=area_rank)}


def _kernel(folder: Path) -> str:
    """The kernel a run folder tested, from its JUnit global properties."""
    try:
        for prop in ET.parse(folder / "junit.xml").iter("property"):
            if prop.get("name") == "kvmconf.kernel":
                return str(prop.get("value"))
    except (OSError, ET.ParseError):
        pass
    return "kernel unknown"


def whole_records(jsonl: Path, text: str) -> list[str]:
    """The lines of a results.jsonl that pytest-reportlog wrote to the end: each a JSON
    object with a `$report_type`, from SessionStart to SessionFinish, each line ended.
    An empty or cut-short file is no run, and saying so beats comparing half of one."""
    lines = text.split("\n")
    if lines[-1]:
        raise CompareInputError(f"{jsonl}: cut short (its last line is not ended); not a whole results.jsonl")
    lines.pop()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as e:
            raise CompareInputError(f"{jsonl}:{number}: not JSON ({e.args[0]}); not a results.jsonl that pytest-reportlog wrote") from None
        if not isinstance(record, dict) or not isinstance(record.get("$report_type"), str):
            raise CompareInputError(f"{jsonl}:{number}: not a pytest-reportlog record (a JSON object with $report_type)")
    kinds = [json.loads(lines[0])["$report_type"], json.loads(lines[-1])["$report_type"]] if lines else []
    if kinds != ["SessionStart", "SessionFinish"]:
        raise CompareInputError(f"{jsonl}: {'empty' if not lines else 'cut short'} (a run's results.jsonl goes from SessionStart "
                                "to SessionFinish); not a whole run")
    return lines


def load(path: Path) -> Run:
    """A run folder (its results.jsonl) or a results.jsonl file."""
    folder = path if path.is_dir() else path.parent
    jsonl = path / "results.jsonl" if path.is_dir() else path
    try:
        text = jsonl.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CompareInputError(f"{path}: neither a run folder with results.jsonl nor a results.jsonl file") from None
    except UnicodeDecodeError:
        raise CompareInputError(f"{jsonl}: not UTF-8; not a results.jsonl that pytest-reportlog wrote") from None
    except OSError as e:
        raise CompareInputError(f"{jsonl}: cannot be read ({e.strerror})") from None
    try:
        cases = read_jsonl(whole_records(jsonl, text))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # a record of the right shape with wrong contents
        raise CompareInputError(f"{jsonl}: not a results.jsonl that pytest-reportlog wrote ({type(e).__name__}: {e})") from None
    name = folder.resolve().name if path.is_dir() else str(path)
    return Run(name, path, _kernel(folder), {c.nodeid: c for c in cases})


def _detail(change: Change) -> str:
    """One line on what B's result means, for the console."""
    b = change.after
    if b is None:
        return ""
    if b.result in FAILING or b.result == "xfail":
        calls = b.wrong_calls
        if calls:
            c = calls[0]
            return f"{c.what}: expected {c.expected}, got {c.actual} ({c.rule})"
        return b.reason
    return b.reason if b.result == "skip" else ""


class _Ansi:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text


KIND_COLOUR = {NEW_FAILURE: "1;31", "fixed": "32", "known findings no longer seen": "32", "new known findings": "33",
               "new skips": "33", "vanished cases": "33"}


def render_console(a: Run, b: Run, found: list[Change], colour: bool) -> str:
    ansi = _Ansi(colour)
    lines = [f"A: {a.label} ({a.kernel}, {len(a.cases)} cases)", f"B: {b.label} ({b.kernel}, {len(b.cases)} cases)"]
    for kind in KINDS:
        of_kind = [c for c in found if c.kind == kind]
        if not of_kind:
            continue
        lines.append("")
        lines.append(ansi(f"{kind} ({len(of_kind)})", KIND_COLOUR.get(kind, "1")))
        for area, in_area in by_area(of_kind).items():
            lines.append(f"  {area}")
            for ch in in_area[:CONSOLE_LIMIT]:
                before = ch.before.label if ch.before else "absent"
                after = ch.after.label if ch.after else "absent"
                detail = _detail(ch)
                lines.append(f"    {ch.case.name}: {before} -> {after}" + (f"; {detail}" if detail else ""))
            if len(in_area) > CONSOLE_LIMIT:
                lines.append(f"    ... and {len(in_area) - CONSOLE_LIMIT} more (the compare page lists them all)")
    new = sum(1 for c in found if c.kind == NEW_FAILURE)
    lines.append("")
    lines.append(ansi(f"B has {new} new failure{'s' if new != 1 else ''} against A", "1;31") if new
                 else ansi("B has no new failure against A", "32"))
    return "\n".join(lines) + "\n"


def render_html(a: Run, b: Run, found: list[Change]) -> str:
    def side(run: Run, letter: str) -> str:
        cells = [f"<code>{escape(str(run.path))}</code>", escape(run.kernel), f"{len(run.cases)} cases"]
        return f"<tr><th>{letter}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    new = sum(1 for c in found if c.kind == NEW_FAILURE)
    verdict = (f'<p class="kvmconf-fail">B has {new} new failure{"s" if new != 1 else ""} against A.</p>' if new
               else '<p class="kvmconf-pass">B has no new failure against A.</p>')
    body = [f'<table class="kvmconf-table" id="kvmconf-sides">{side(a, "A")}{side(b, "B")}</table>', verdict]
    if not found:
        body.append("<p>No case changed its result.</p>")
    for kind in KINDS:
        of_kind = [c for c in found if c.kind == kind]
        if not of_kind:
            continue
        body.append(f'<section class="kvmconf-change" id="{kind.replace(" ", "-")}"><h2>{escape(kind)} ({len(of_kind)})</h2>')
        for area, in_area in by_area(of_kind).items():
            rows = []
            for ch in in_area:
                why = explain(ch.after) if ch.after is not None and ch.after.result in (*FAILING, "xfail") else escape(_detail(ch))
                cells = [f"<code>{escape(ch.case.name)}</code>", result_span(ch.before.result if ch.before else None),
                         result_span(ch.after.result if ch.after else None), why]
                rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            body.append(f'<h3>{escape(area)}</h3><table class="kvmconf-table"><thead><tr><th>case</th><th>A</th><th>B</th>'
                        f'<th>why, in B</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
        body.append("</section>")
    return page(f"kvmconf compare: {a.label} → {b.label}", "".join(body))


def default_output(a: Run, b: Run) -> Path:
    """Next to B: beside the run folder, or beside the results.jsonl file."""
    b_path = b.path.resolve()
    name = f"compare-{Path(a.label).name.removesuffix('.jsonl')}-vs-{Path(b.label).name.removesuffix('.jsonl')}.html"
    return b_path.parent / name


def _absolute(text: str) -> Path:
    """Resolved against the caller's directory, before `kvmconf` changes into its own."""
    return Path(os.path.abspath(text))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("compare", help="what changed from run A to run B; exit 1 when B has a new failure",
                       description="Cases whose result differs between two runs, grouped by area, on the console "
                                   "and as an HTML page. Exit 0 when B has no new failure against A, 1 when it has.")
    p.add_argument("a", type=_absolute, metavar="A", help="the base run: a run folder or its results.jsonl")
    p.add_argument("b", type=_absolute, metavar="B", help="the run to judge: a run folder or its results.jsonl")
    p.add_argument("-o", "--output", type=_absolute, metavar="PATH",
                   help="where to write the HTML page (default: next to B, compare-<A>-vs-<B>.html)")


def run(args: argparse.Namespace) -> int:
    a, b = load(args.a), load(args.b)
    found = changes(a, b)
    sys.stdout.write(render_console(a, b, found, colour=sys.stdout.isatty()))
    out: Path = args.output or default_output(a, b)
    try:
        write_atomic(out, render_html(a, b, found))
    except OSError as e:
        raise CompareInputError(f"{out}: cannot write the compare page ({e.strerror})") from None
    print(f"compare page: {out}")
    return 1 if any(c.kind == NEW_FAILURE for c in found) else 0
