"""What changed from run A (say, the base kernel) to run B (the patched one), the
reviewer's question: pure functions of two runs read back into the model, so a case's
result means here what it meant in the run (`harness.cli.compare` reads the files and
writes the page).

Both sides' kernel, profile, backend and expectations head the output, with a warning
when the profile, backend or expectations differ: then a changed result may say more
about the two runs than about the two kernels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape

from harness.report.html import explain, page, result_span
from harness.report.model import FAILING, CaseResult, area_rank, clause_of

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
SIDE_FIELDS = ("kernel", "profile", "backend", "expectations")  # what a run says of itself (junit.xml's kvmconf.* properties)
MUST_MATCH = ("profile", "backend", "expectations")  # a difference here is warned about; kernels differ on purpose
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Run:
    """One side of a comparison: where it came from, what it ran, its cases by node id."""

    label: str
    path: str
    cases: dict[str, CaseResult]
    about: Mapping[str, str] = field(default_factory=dict)  # SIDE_FIELDS → value

    def said(self, name: str) -> str:
        return self.about.get(name, UNKNOWN)

    @property
    def kernel(self) -> str:
        return self.said("kernel")


def warnings(a: Run, b: Run) -> list[str]:
    """One line per way the two runs differ other than in the kernel."""
    return [f"the runs differ in {name}: A {a.said(name)}, B {b.said(name)}" for name in MUST_MATCH if a.said(name) != b.said(name)]


def _side(run: Run, letter: str) -> str:
    about = ", ".join(f"{name} {run.said(name)}" for name in SIDE_FIELDS)
    return f"{letter}: {run.label} ({about}; {len(run.cases)} cases)"


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


def _detail(change: Change) -> str:
    """One line on what B's result means, for the console."""
    b = change.after
    if b is None:
        return ""
    if b.result in FAILING or b.result == "xfail":
        calls = b.wrong_calls
        if calls:
            c = calls[0]
            return f"{c.what}: expected {c.expected}, got {c.actual} ({c.rule}: {c.clause})"
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
    lines = [_side(a, "A"), _side(b, "B")]
    lines += [ansi(f"warning: {w}; a changed result may come from that, not from the kernel", "1;33") for w in warnings(a, b)]
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
                detail = detail or clause_of(ch.case)
                lines.append(f"    {ch.case.name}: {before} -> {after}; {detail}")
            if len(in_area) > CONSOLE_LIMIT:
                lines.append(f"    ... and {len(in_area) - CONSOLE_LIMIT} more (the compare page lists them all)")
    new = sum(1 for c in found if c.kind == NEW_FAILURE)
    lines.append("")
    lines.append(ansi(f"B has {new} new failure{'s' if new != 1 else ''} against A", "1;31") if new
                 else ansi("B has no new failure against A", "32"))
    return "\n".join(lines) + "\n"


def render_html(a: Run, b: Run, found: list[Change]) -> str:
    def side(run: Run, letter: str) -> str:
        cells = [f"<code>{escape(run.label)}</code>", *(escape(run.said(n)) for n in SIDE_FIELDS), f"{len(run.cases)} cases"]
        return f"<tr><th>{letter}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    new = sum(1 for c in found if c.kind == NEW_FAILURE)
    verdict = (f'<p class="kvmconf-fail">B has {new} new failure{"s" if new != 1 else ""} against A.</p>' if new
               else '<p class="kvmconf-pass">B has no new failure against A.</p>')
    head = "<thead><tr><th></th><th>run</th>" + "".join(f"<th>{n}</th>" for n in SIDE_FIELDS) + "<th></th></tr></thead>"
    warned = "".join(f'<p class="kvmconf-warning">Warning: {escape(w)}; a changed result may come from that, not from '
                     "the kernel.</p>" for w in warnings(a, b))
    body = [f'<table class="kvmconf-table" id="kvmconf-sides">{head}{side(a, "A")}{side(b, "B")}</table>', warned, verdict]
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
                cells = [f"<code>{escape(ch.case.name)}</code>", escape(clause_of(ch.case)),
                         result_span(ch.before.result if ch.before else None), result_span(ch.after.result if ch.after else None), why]
                rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            head = "".join(f"<th>{h}</th>" for h in ("case", "rule clause", "A", "B", "why, in B"))
            body.append(f'<h3>{escape(area)}</h3><table class="kvmconf-table"><thead><tr>{head}</tr></thead>'
                        f'<tbody>{"".join(rows)}</tbody></table>')
        body.append("</section>")
    return page(f"kvmconf compare: {a.label} → {b.label}", "".join(body))
