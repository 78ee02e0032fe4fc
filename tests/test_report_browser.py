"""The report as a reviewer sees it: report.html of a run with a failure and known
findings, opened in headless Chromium (Debian's `chromium`, installed when missing and
root) at 1400 px wide. The caps table, the findings section and the failure's rule,
input, expected and actual render; every section is one anchor away; the page is under
MAX_HEIGHT and no wider than the window; no visible text is below WCAG AA contrast
(tests/contrast.js); the page logs no JavaScript error; a screenshot of the whole page
is saved into the run folder as report.png."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.report.html import NAV
from tests.chromium import Page, browser, ensure_chromium
from tests.reportrun import FINDING, Run

MAX_HEIGHT = 10_000  # px at 1400 px wide: a reviewer scrolls a page, not a book
WIDTH = 1400
CONTRAST = (Path(__file__).with_name("contrast.js")).read_text()


def _text(page: Page, selector: str) -> str:
    """The visible text of the first match ("" when absent or not shown)."""
    return str(page.evaluate(f"(() => {{ const e = document.querySelector({selector!r}); "
                             "return e && e.getClientRects().length ? e.innerText : ''; })()"))


def _rendered_rows(page: Page, timeout: float = 20.0) -> int:
    """pytest-html builds its results table in JavaScript after load; by default it
    shows the failures only."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = int(page.evaluate("document.querySelectorAll('#results-table tbody.results-table-row').length"))
        if rows:
            return rows
        time.sleep(0.2)
    return 0


def _check_layout(page: Page) -> None:
    """The bounds a reviewer's screen puts on the page."""
    height = int(page.evaluate("document.documentElement.scrollHeight"))
    assert height < MAX_HEIGHT, f"report.html is {height} px tall at {WIDTH} px wide"
    width = int(page.evaluate("document.documentElement.scrollWidth"))
    assert width <= WIDTH, f"report.html overflows: {width} px wide in a {WIDTH} px window"
    for anchor, _ in NAV:
        assert page.evaluate(f"!!document.getElementById({anchor!r})"), f"#{anchor} is linked but missing"
    low = page.evaluate(CONTRAST)
    assert low == [], "text below WCAG AA contrast:\n" + "\n".join(low)


def test_report_renders_in_chromium(failing_run: Run) -> None:
    why = ensure_chromium()
    if why:
        pytest.skip(why)
    with browser() as page:
        page.open((failing_run.folder / "report.html").as_uri())
        assert _rendered_rows(page) >= 1, "pytest-html's results table did not render"
        _check_layout(page)

        assert page.evaluate("document.title").startswith("kvmconf: Linux ")
        run = _text(page, "#kvmconf-run")
        assert "Kernel under test" in run and "this machine" in run and "profile released" in run

        page.evaluate("document.querySelectorAll('#kvmconf-caps details').forEach(d => { d.open = true; })")  # folded by default
        caps = _text(page, "#kvmconf-caps-table")
        assert "/dev/kvm" in caps and "VM of type 0" in caps and "KVM_CAP_GUEST_MEMFD" in caps, caps

        findings = _text(page, "#kvmconf-findings")
        assert "Known findings (1 finding, 18 cases)" in findings and FINDING in findings, findings

        failure = _text(page, "#kvmconf-failures .kvmconf-failure")
        assert "already bound" in _text(page, "#kvmconf-failures .kvmconf-clause h3")
        for words in ("bound=1", "rule", "already bound", "input", "expected", "ENOSPC", "actual", "EINVAL"):
            assert words in failure, f"{words!r} missing from the failure's explanation:\n{failure}"
        page.evaluate("document.querySelector('#results-table tbody.failed .col-result').click()")
        in_table = _text(page, "#results-table .kvmconf-why-fail")
        assert "ENOSPC" in in_table and "EINVAL" in in_table, "the failed row of the results table does not explain itself"
        assert "[gw" not in _text(page, "#results-table"), "the table shows xdist's worker line"

        areas = _text(page, "#kvmconf-area-table")
        assert "guest_memfd" in areas and "all areas" in areas

        page.screenshot(failing_run.folder / "report.png")
        assert page.errors == [], "the page logged JavaScript errors"
    assert (failing_run.folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_passing_report_is_short_and_readable(full_run: Run) -> None:
    """The whole run's page, passing: under the bounds with every section reachable."""
    assert full_run.code == 0, full_run.out
    why = ensure_chromium()
    if why:
        pytest.skip(why)
    with browser() as page:
        page.open((full_run.folder / "report.html").as_uri())
        time.sleep(1)  # pytest-html renders after load; an empty table is what a passing run shows
        _check_layout(page)
        assert "skipped" in _text(page, "#kvmconf-skips").lower()
        assert page.errors == [], "the page logged JavaScript errors"
