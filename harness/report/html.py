"""The HTML the reports add to pytest-html's page, and the compare page: pure functions
of the model, returning markup strings (every value escaped)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape
from pathlib import Path

from harness.report.model import (
    COLUMNS,
    FAILING,
    LABELS,
    Call,
    CaseResult,
    Result,
    RunInfo,
    RunModel,
    by_area,
    by_clause,
    count,
    skip_reasons,
)

CSS = Path(__file__).with_name("report.css")
SHOWN_PER_CLAUSE = 1  # failure cards per clause before the rest fold away
# pytest-html's own table: failures only and folded, until the reader ticks a box
# (its documented URL parameters `visible` and `collapsed`); its labels in ours.
TABLE_SCRIPT = """<script>
(() => {
  const url = new URL(window.location.href);
  if (!url.searchParams.has("visible")) { url.searchParams.set("visible", "failed,error,xpassed"); }
  if (!url.searchParams.has("collapsed")) { url.searchParams.set("collapsed", "all"); }
  window.history.replaceState({}, "", url.href);
  document.addEventListener("DOMContentLoaded", () => {
    for (const [cls, word] of [["xfailed", "known findings"], ["xpassed", "findings not seen"]]) {
      const span = document.querySelector(`.filters span.${cls}`);
      if (span) { span.textContent = span.textContent.replace(/Unexpected passes|Expected failures/, word); }
    }
  });
})();
</script>"""


def title(info: RunInfo) -> str:
    if info.model:
        return f"kvmconf: the model of profile {info.profile} (not a kernel)"
    return f"kvmconf: Linux {info.kernel}, {info.how}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _e(value: object) -> str:
    return escape(str(value))


def _table(table_id: str, head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "kvmconf-table") -> str:
    """Cells are markup already."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}" class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def cap_value(value: int | None) -> str:
    if value is None:
        return '<span class="kvmconf-muted" title="its number is unknown to the ABI source, so it was not asked">not asked</span>'
    return _e(value) if value < 2 else f"{value} <span class=\"kvmconf-muted\">0x{value:x}</span>"


def _run_section(model: RunModel) -> str:
    info = model.info
    state = "complete" if info.complete else (
        f'<span class="kvmconf-fail">incomplete: the run was interrupted; {len(info.not_run)} cases did not finish</span>')
    rows = [
        ("Kernel under test", f"<strong>{_e(info.kernel)}</strong>"),
        ("How it ran", _e(info.how)),
        ("ABI source", _e(info.abi_source)),
        ("Profile", f"{_e(info.profile)}" + (f' <span class="kvmconf-muted">({_e(info.profile_reason)})</span>'
                                             if info.profile_reason else "")),
        ("Backend", _e(info.backend)),
        ("Known findings listed in", _e(info.expectations) if info.expectations != "none" else "no expectations file"),
        ("Cases", f"{len(model.cases)}"),
        ("Run", f"{_e(info.run_id)}, started {_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.started)))}, "
                f"{info.duration:.1f} s, {state}"),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    heading = "Model under test" if info.model else "Kernel under test"
    return f'<section id="kvmconf-run"><h2>{heading}</h2><table class="kvmconf-kv">{body}</table></section>'


def _count_cell(result: Result, n: int) -> str:
    return f'<span class="kvmconf-{result}">{n}</span>' if n else '<span class="kvmconf-zero">0</span>'


def _area_section(model: RunModel) -> str:
    groups = by_area(model.cases)
    rows = []
    for area, cases in [*groups.items(), ("all areas", list(model.cases))]:
        n = count(cases)
        rows.append([f"<strong>{_e(area)}</strong>", str(len(cases)), *(_count_cell(r, n[r]) for r in COLUMNS)])
    head = ["area", "cases", *(LABELS[r] for r in COLUMNS)]
    note = ('<p class="kvmconf-note">A <em>known finding</em> is a rule the kernel breaks and its expectations file lists '
            '(a strict xfail). <em>Finding not seen</em>: a listed finding that this kernel no longer shows, so the file '
            'needs updating; it fails the run like a failure.</p>')
    return f'<section id="kvmconf-areas"><h2>Results by area</h2>{_table("kvmconf-area-table", head, rows)}{note}</section>'


def explain_call(call: Call) -> str:
    rows = [
        ("rule", f"{_e(call.rule)}: {_e(call.clause)}"),
        ("input", f"<code>{_e(call.input) or '(the baseline)'}</code>"),
        ("expected", f'<span class="kvmconf-expected">{_e(call.expected)}</span>'),
        ("actual", f'<span class="kvmconf-actual">{_e(call.actual)}</span>'),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="kvmconf-call"><div class="kvmconf-what">{_e(call.what)}</div><table class="kvmconf-kv">{body}</table></div>'


def explain(case: CaseResult) -> str:
    """Why a case failed (or is a known finding): each wrong call's rule, input,
    expected and actual answer; the failure text when no call explains it."""
    if case.result == "xpass":
        inner = (f"<p>This known finding did not reproduce: <em>{_e(case.reason)}</em>. "
                 "The kernel now follows the rule; remove the finding from the expectations file.</p>")
    elif case.calls:
        problem = _e(case.reason) if case.result != "xfail" else f"known finding: {_e(case.reason)}"
        inner = f'<p class="kvmconf-problem">{problem}</p>' + "".join(explain_call(c) for c in case.wrong_calls)
    else:
        inner = f"<pre>{_e(case.message or case.reason)}</pre>"
    return f'<div class="kvmconf-why kvmconf-why-{case.result}">{inner}</div>'


def _failure_card(c: CaseResult) -> str:
    return (f'<div class="kvmconf-failure"><h4><span class="kvmconf-{c.result}">{_e(c.label)}</span> '
            f'<span class="kvmconf-area">{_e(c.area)}</span> <code>{_e(c.name)}</code></h4>{explain(c)}</div>')


def _failures_section(model: RunModel) -> str:
    failures = model.failures()
    if not failures:
        none = "None: every case that ran met its rule or is a known finding."
        return f'<section id="kvmconf-failures"><h2>Failures</h2><p>{none}</p></section>'
    groups = []
    for clause, cases in by_clause(failures).items():
        cards = "".join(_failure_card(c) for c in cases[:SHOWN_PER_CLAUSE])
        rest = cases[SHOWN_PER_CLAUSE:]
        if rest:
            cards += (f"<details><summary>{_plural(len(rest), 'more case')} breaking this clause</summary>"
                      + "".join(_failure_card(c) for c in rest) + "</details>")
        groups.append(f'<div class="kvmconf-clause"><h3>{_e(clause)} ({len(cases)})</h3>{cards}</div>')
    heading = f"Failures ({_plural(len(failures), 'case')}, {_plural(len(groups), 'rule clause')})"
    return f'<section id="kvmconf-failures"><h2>{heading}</h2>{"".join(groups)}</section>'


def _matrix_section(model: RunModel) -> str:
    """One row per rule clause: how its cases came out; the cases fold out."""
    head = ["rule clause", "cases", *(LABELS[r] for r in COLUMNS)]
    parts = []
    for area, cases in by_area(model.cases).items():
        rows = []
        for clause, in_clause in by_clause(cases).items():
            n = count(in_clause)
            names = "".join(f'<li><span class="kvmconf-{c.result}">{_e(c.label)}</span> <code>{_e(c.name)}</code></li>'
                            for c in in_clause)
            cell = f"<details><summary>{_e(clause)}</summary><ul>{names}</ul></details>"
            rows.append([cell, str(len(in_clause)), *(_count_cell(r, n[r]) for r in COLUMNS)])
        # an area folds to one line (open when a case of it failed): a reviewer of a green run
        # reads the counts, and opens an area for its clauses
        totals = count(cases)
        line = ", ".join(f"{totals[r]} {LABELS[r]}" for r in COLUMNS if totals[r])
        failed = any(totals[r] for r in FAILING)
        parts.append(f'<details id="kvmconf-matrix-{_e(area)}"{" open" if failed else ""}><summary><strong>{_e(area)}</strong>: '
                     f'{_plural(len(rows), "clause")}; {_e(line)}</summary>'
                     + _table(f"kvmconf-matrix-table-{_e(area)}", head, rows, "kvmconf-table kvmconf-matrix") + "</details>")
    note = ('<p class="kvmconf-note">A case is counted under the clause of its first wrong call, or of its first call '
            "when it passed; a case that made no call (skipped before it, or a plain test) under its area and test.</p>")
    return f'<section id="kvmconf-matrix"><h2>Conformance by rule clause</h2>{note}{"".join(parts)}</section>'


def _skips_section(model: RunModel) -> str:
    reasons = skip_reasons(model.cases)
    if not reasons:
        return '<section id="kvmconf-skips"><h2>Skipped</h2><p>No case was skipped.</p></section>'
    rows = [[str(n), _e(reason)] for reason, n in reasons]
    total = sum(n for _, n in reasons)
    table = (f"<details><summary>the {_plural(len(reasons), 'reason')}, most cases first</summary>"
             + _table("kvmconf-skips-table", ["cases", "why they were skipped"], rows) + "</details>")
    return f'<section id="kvmconf-skips"><h2>Skipped ({_plural(total, "case")}, {_plural(len(reasons), "reason")})</h2>{table}</section>'


def _findings_section(model: RunModel) -> str:
    findings = model.findings()
    listed = (f"listed in <code>{_e(model.info.expectations)}</code>" if model.info.expectations != "none"
              else "none listed: the run used no expectations file")
    intro = (f"<p>Rules this kernel is known to break, {listed}. "
             "They are reported apart from passes and failures: a known finding does not fail the run, and a new "
             "one is a failure.</p>")
    if not findings:
        return f'<section id="kvmconf-findings"><h2>Known findings</h2>{intro}<p>None in this run.</p></section>'
    blocks = []
    for reason, cases in findings.items():
        answers = sorted({f"expected {c.expected}, kernel answered {c.actual}" for case in cases for c in case.wrong_calls})
        rows = "".join(
            f"<li><code>{_e(c.name)}</code> ({_e(c.area)})"
            + "".join(f": {_e(w.expected)} expected, {_e(w.actual)} seen" for w in c.wrong_calls[:1]) + "</li>"
            for c in cases
        )
        blocks.append(
            f'<div class="kvmconf-finding"><h3>{_e(reason)}</h3>'
            f'<p>{_plural(len(cases), "case")}: {_e("; ".join(answers))}</p>'
            f"<details><summary>the {_plural(len(cases), 'case')}</summary><ul>{rows}</ul></details></div>"
        )
    n = sum(len(c) for c in findings.values())
    heading = f"Known findings ({_plural(len(findings), 'finding')}, {_plural(n, 'case')})"
    return f'<section id="kvmconf-findings"><h2>{heading}</h2>{intro}{"".join(blocks)}</section>'


def _abi_section(info: RunInfo) -> str:
    ioctl_rows = [
        [f"<code>{_e(i.name)}</code>", f"<code>0x{i.number:08x}</code>", _e(i.macro),
         f"<code>struct {_e(i.struct)}</code>" if i.struct else "", _e(i.size) if i.size is not None else "", _e(", ".join(i.fds))]
        for i in info.ioctls
    ]
    ioctls = _table("kvmconf-ioctls", ["ioctl", "number", "direction", "argument", "sizeof", "fds"], ioctl_rows)
    struct_rows = [[f"<code>struct {_e(name)}</code>", _e(size)] for name, size in info.structs]
    structs = _table("kvmconf-structs", ["struct", "size (bytes)"], struct_rows)
    return (f'<section id="kvmconf-abi"><h2>ABI facts ({_e(info.abi_source)})</h2>'
            f"<details><summary>{_plural(len(ioctl_rows), 'ioctl')} and {_plural(len(struct_rows), 'struct')}</summary>"
            f'<div class="kvmconf-side">{ioctls}{structs}</div></details></section>')


def _caps_section(info: RunInfo) -> str:
    head = ["cap", "number", "/dev/kvm", *(f"VM of type {t}" for t in info.vm_types)]
    rows = [[f"<code>{_e(c.name)}</code>", _e(c.number) if c.number is not None else "", cap_value(c.system),
             *(cap_value(v) for v in c.vm)] for c in info.caps]
    errors = "".join(f'<p class="kvmconf-fail">VM type {t}: {_e(why)}</p>' for t, why in info.vm_errors)
    note = ("<p class=\"kvmconf-note\">KVM_CHECK_EXTENSION asked once per session on /dev/kvm and on a fresh VM of each "
            "type in KVM_CAP_VM_TYPES; only caps whose number the ABI source gives are asked.</p>")
    table = f"<details><summary>{_plural(len(rows), 'cap')} at each scope</summary>{_table('kvmconf-caps-table', head, rows)}</details>"
    return f'<section id="kvmconf-caps"><h2>Capabilities by scope</h2>{errors}{table}{note}</section>'


NAV = (("kvmconf-run", "run"), ("kvmconf-areas", "areas"), ("kvmconf-failures", "failures"), ("kvmconf-findings", "known findings"),
       ("kvmconf-matrix", "by rule clause"), ("kvmconf-skips", "skipped"), ("kvmconf-caps", "caps"), ("kvmconf-abi", "ABI facts"),
       ("results-table", "every case"))


def _nav() -> str:
    links = " · ".join(f'<a href="#{anchor}">{_e(text)}</a>' for anchor, text in NAV)
    return f'<nav id="kvmconf-nav">{links}</nav>'


def summary_sections(model: RunModel) -> list[str]:
    """What pytest-html shows above its results table, in reading order."""
    table_note = ('<p class="kvmconf-note" id="kvmconf-table-note">The table below lists failures, folded; tick '
                  "the boxes to show passed, skipped and known-finding cases, and click a row to unfold it.</p>")
    return [TABLE_SCRIPT, _nav(), _run_section(model), _area_section(model), _failures_section(model), _findings_section(model),
            _matrix_section(model), _skips_section(model), _caps_section(model.info), _abi_section(model.info), table_note]


def row_details(case: CaseResult) -> str:
    """What a row of pytest-html's table unfolds to: the explanation, or the skip reason;
    never the raw log (the worker line, the repeated rule text)."""
    if case.result in ("fail", "error", "xfail", "xpass"):
        return explain(case)
    if case.result == "skip":
        return f'<div class="kvmconf-why"><p>skipped: {_e(case.reason)}</p></div>'
    return ""


def area_cell(area: str) -> str:
    return f'<td class="col-area">{_e(area)}</td>'


def area_header() -> str:
    return '<th class="sortable" data-column-type="area">Area</th>'


def page(heading: str, body: str) -> str:
    """A small self-contained page (the compare page) in the report's style."""
    css = CSS.read_text(encoding="utf-8")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(heading)}</title>'
            f"<style>{css}</style></head><body class=\"kvmconf-page\"><h1>{_e(heading)}</h1>{body}</body></html>\n")


def result_span(result: Result | None) -> str:
    if result is None:
        return '<span class="kvmconf-muted">absent</span>'
    return f'<span class="kvmconf-{result}">{_e(LABELS[result])}</span>'

