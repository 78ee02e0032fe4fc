"""The HTML the reports add to pytest-html's page, and the compare page: pure functions
of the model, returning markup strings (every value escaped)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape
from pathlib import Path

from harness.report.model import COLUMNS, LABELS, Call, CaseResult, Result, RunInfo, RunModel, by_area, count

CSS = Path(__file__).with_name("report.css")


def title(info: RunInfo) -> str:
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
        ("Backend", _e(info.backend)),
        ("Known findings from", _e(info.expectations)),
        ("Run", f"{_e(info.run_id)}, started {_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info.started)))}, "
                f"{info.duration:.1f} s, {state}"),
    ]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<section id="kvmconf-run"><h2>Kernel under test</h2><table class="kvmconf-kv">{body}</table></section>'


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


def _failures_section(model: RunModel) -> str:
    failures = model.failures()
    if not failures:
        none = "None: every case that ran met its rule or is a known finding."
        return f'<section id="kvmconf-failures"><h2>Failures</h2><p>{none}</p></section>'
    items = "".join(
        f'<div class="kvmconf-failure"><h3><span class="kvmconf-{c.result}">{_e(c.label)}</span> '
        f'<span class="kvmconf-area">{_e(c.area)}</span> <code>{_e(c.name)}</code></h3>{explain(c)}</div>'
        for c in failures
    )
    return f'<section id="kvmconf-failures"><h2>Failures ({len(failures)})</h2>{items}</section>'


def _findings_section(model: RunModel) -> str:
    findings = model.findings()
    intro = (f"<p>Rules this kernel is known to break, listed in <code>{_e(model.info.expectations)}</code>. "
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
            f'<div class="kvmconf-side">{ioctls}{structs}</div></section>')


def _caps_section(info: RunInfo) -> str:
    head = ["cap", "number", "/dev/kvm", *(f"VM of type {t}" for t in info.vm_types)]
    rows = [[f"<code>{_e(c.name)}</code>", _e(c.number) if c.number is not None else "", cap_value(c.system),
             *(cap_value(v) for v in c.vm)] for c in info.caps]
    errors = "".join(f'<p class="kvmconf-fail">VM type {t}: {_e(why)}</p>' for t, why in info.vm_errors)
    note = ("<p class=\"kvmconf-note\">KVM_CHECK_EXTENSION asked once per session on /dev/kvm and on a fresh VM of each "
            "type in KVM_CAP_VM_TYPES; only caps whose number the ABI source gives are asked.</p>")
    return f'<section id="kvmconf-caps"><h2>Capabilities by scope</h2>{_table("kvmconf-caps-table", head, rows)}{errors}{note}</section>'


def summary_sections(model: RunModel) -> list[str]:
    """What pytest-html shows above its results table, in reading order."""
    return [_run_section(model), _area_section(model), _failures_section(model), _findings_section(model),
            _caps_section(model.info), _abi_section(model.info)]


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

