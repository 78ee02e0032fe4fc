"""The report as a reviewer sees it: report.html of a run with a failure and known
findings, opened in headless Chromium (Debian's `chromium`, installed when missing and
root). The caps table, the findings section and the failure's rule, input, expected
and actual render; the page logs no JavaScript error; a screenshot of the whole page
is saved into the run folder as report.png."""

from __future__ import annotations

import time

import pytest

from tests.chromium import Page, browser, ensure_chromium
from tests.reportrun import FINDING, Run


def _text(page: Page, selector: str) -> str:
    """The visible text of the first match ("" when absent or not shown)."""
    return str(page.evaluate(f"(() => {{ const e = document.querySelector({selector!r}); "
                             "return e && e.getClientRects().length ? e.innerText : ''; })()"))


def _rendered_rows(page: Page, timeout: float = 20.0) -> int:
    """pytest-html builds its results table in JavaScript after load."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = int(page.evaluate("document.querySelectorAll('#results-table tbody.results-table-row').length"))
        if rows:
            return rows
        time.sleep(0.2)
    return 0


def test_report_renders_in_chromium(failing_run: Run) -> None:
    why = ensure_chromium()
    if why:
        pytest.skip(why)
    with browser() as page:
        page.open((failing_run.folder / "report.html").as_uri())
        assert _rendered_rows(page) >= 20, "pytest-html's results table did not render"

        assert page.evaluate("document.title").startswith("kvmconf: Linux ")
        run = _text(page, "#kvmconf-run")
        assert "Kernel under test" in run and "this machine" in run and "profile released" in run

        caps = _text(page, "#kvmconf-caps-table")
        assert "/dev/kvm" in caps and "VM of type 0" in caps and "KVM_CAP_GUEST_MEMFD" in caps, caps

        findings = _text(page, "#kvmconf-findings")
        assert "Known findings (1 finding, 18 cases)" in findings and FINDING in findings, findings

        failure = _text(page, "#kvmconf-failures .kvmconf-failure")
        for words in ("bound=1", "rule", "already bound", "input", "expected", "ENOSPC", "actual", "EINVAL"):
            assert words in failure, f"{words!r} missing from the failure's explanation:\n{failure}"
        in_table = _text(page, "#results-table .kvmconf-why-fail")
        assert "ENOSPC" in in_table and "EINVAL" in in_table, "the failed row of the results table does not explain itself"

        areas = _text(page, "#kvmconf-area-table")
        assert "guest_memfd" in areas and "all areas" in areas

        page.screenshot(failing_run.folder / "report.png")
        assert page.errors == [], "the page logged JavaScript errors"
    assert (failing_run.folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
