"""pytest plugin: the run's model, collected where the results meet, and the report
folder written from it at session end.

Active with `--kvmconf-run-dir DIR` (what `kvmconf run` passes). Workers attach each
case's area, id and, for failures, its calls to the report's `user_properties`, which
xdist carries to the controller. The controller (or the only process) decides each
case in `model.Collector`, builds the model in `pytest_sessionfinish`, writes
results.ktap and kcidb.json, feeds pytest-html's hooks and JUnit's global properties,
and prints the per-area summary. pytest-html, JUnit and pytest-reportlog are pointed at
DIR under temporary names that are renamed when the session is over, so a run that
dies leaves no file that looks whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import xml_key

from harness.host.files import partial_name, publish, write_atomic
from harness.report import html, kcidb, ktap
from harness.report.model import (
    COLUMNS,
    LABELS,
    Collector,
    RunModel,
    by_area,
    calls_property,
    case_property,
    count,
    run_info,
    split_nodeid,
)
from harness.session.engine import Case, take_outcomes
from harness.session.plugin import EXPECT_KEY, TARGET_KEY

HTML, JUNIT, JSONL, KTAP, KCIDB = "report.html", "junit.xml", "results.jsonl", "results.ktap", "kcidb.json"
PLUGIN_NAME = "kvmconf-report"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("kvmconf").addoption(
        "--kvmconf-run-dir", metavar="DIR", default=None,
        help=f"write the run's reports into DIR: {HTML}, {JUNIT}, {JSONL}, {KTAP}, {KCIDB}",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-html, JUnit and reportlog read their options: point them at DIR."""
    run_dir = config.getoption("kvmconf_run_dir")
    if not run_dir or hasattr(config, "workerinput"):
        return
    path = Path(run_dir).resolve()
    option = config.option
    option.htmlpath = str(partial_name(path / HTML))
    option.self_contained_html = True
    option.css = [*(option.css or []), str(html.CSS)]
    option.xmlpath = str(partial_name(path / JUNIT))
    option.report_log = str(partial_name(path / JSONL))
    reporter = Reporter(config, path)
    config.pluginmanager.register(reporter, PLUGIN_NAME)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistOrder(reporter), f"{PLUGIN_NAME}-xdist")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In the process that ran the case: what pytest does not know, for the controller."""
    if item.config.getoption("kvmconf_run_dir"):
        if call.when == "setup":
            take_outcomes()  # nothing an earlier case left behind
            item.user_properties.append(case_property(*_area_and_case(item)))
        elif call.when == "call":
            outcomes = take_outcomes()
            if outcomes and call.excinfo is not None:
                item.user_properties.append(calls_property(outcomes))
    return (yield)


def _area_and_case(item: pytest.Item) -> tuple[str, str]:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec is not None else None
    if isinstance(case, Case):
        return case.area, case.id
    area, _, param = split_nodeid(item.nodeid)
    return area, param


class _XdistOrder:
    """With xdist the controller collects nothing itself; the workers say what they collected."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.reporter.order:
            self.reporter.order = list(ids)


class Reporter:
    """The controller's side: one model, every format written from it once."""

    def __init__(self, config: pytest.Config, run_dir: Path) -> None:
        self.config = config
        self.run_dir = run_dir
        self.collector = Collector()
        self.started = time.time()
        self.order: list[str] = []
        self.model: RunModel | None = None
        self._html_report: Any = None

    # -- collecting -------------------------------------------------------------------

    def _add(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        if data is not None:
            self.collector.add(data)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:
            self.order = [item.nodeid for item in session.items]

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._add(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._add(report)

    # -- the model and the formats written from it ------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Before JUnit and pytest-html write theirs (they run later, and read the model)."""
        target = self.config.stash.get(TARGET_KEY, None)
        if target is None:  # nothing was collected against a kernel: no run to report
            return
        cases = self.collector.cases(self.order)
        finished = {c.nodeid for c in cases}
        expectations = self.config.stash.get(EXPECT_KEY, None)
        info = run_info(
            target, run_id=run_id(self.run_dir), started=self.started,
            expectations=(expectations.path if expectations is not None else None) or "none",
            exitstatus=int(exitstatus), not_run=[n for n in self.order if n not in finished],
        )
        self.model = model = RunModel(info, cases)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / KTAP, ktap.render(model))
        write_atomic(self.run_dir / KCIDB, json.dumps(kcidb.render(model), indent=1) + "\n")
        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            for name, value in (("kernel", info.kernel), ("how", info.how), ("abi_source", info.abi_source),
                                ("backend", info.backend), ("expectations", info.expectations), ("run_id", info.run_id)):
                xml.add_global_property(f"kvmconf.{name}", value)

    @pytest.hookimpl(wrapper=True)
    def pytest_unconfigure(self, config: pytest.Config) -> Generator[None, None, None]:
        """After every writer closed its file (reportlog closes in unconfigure)."""
        try:
            return (yield)
        finally:
            for name in (HTML, JUNIT, JSONL):
                publish(self.run_dir / name)

    # -- pytest-html ------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        self._html_report = report  # titled at the end, when the kernel is known

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session) -> None:
        if self.model is None:
            return
        if self._html_report is not None:
            self._html_report.title = html.title(self.model.info)
        prefix.extend(html.summary_sections(self.model))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(1, html.area_header())

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        case = self.collector.case(report.nodeid)
        cells.insert(1, html.area_cell(case.area if case is not None else split_nodeid(report.nodeid)[0]))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        case = self.collector.case(report.nodeid)
        if case is not None and report.when == "call" and case.result in ("fail", "error", "xfail", "xpass"):
            data.insert(0, html.explain(case))

    # -- the console ------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Lines that name the temporary folder (pytest-html's and JUnit's "generated
        ... file") are dropped: `kvmconf run` prints the published folder last."""
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None:
            return
        write_sep = terminal.write_sep
        hidden = str(self.run_dir)

        def filtered(sep: str, title: str | None = None, fullwidth: int | None = None, **markup: bool) -> None:
            if title is None or hidden not in title:
                write_sep(sep, title, fullwidth, **markup)

        terminal.write_sep = filtered

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.model is not None:
            print_summary(terminalreporter, self.model)


def run_id(run_dir: Path) -> str:
    """The id of reports/.<id>.partial is <id>."""
    name = run_dir.name
    return name[1:].removesuffix(".partial") if name.startswith(".") else name


def print_summary(tr: Any, model: RunModel) -> None:
    """Results per area, failures and skips in colour when the terminal has it."""
    columns = COLUMNS
    colour = {"fail": {"red": True, "bold": True}, "error": {"red": True, "bold": True}, "xpass": {"red": True, "bold": True},
              "skip": {"yellow": True}, "xfail": {"yellow": True}, "pass": {"green": True}}
    heads = ["cases", *(LABELS[r] for r in columns)]
    groups = [*by_area(model.cases).items(), ("all", list(model.cases))]
    width = max(len(a) for a, _ in groups) + 2
    tr.write_sep("-", "results by area")
    tr.write_line(" " * width + "  ".join(f"{h:>{max(len(h), 5)}}" for h in heads))
    for area, cases in groups:
        n = count(cases)
        tr.write(f"{area:<{width}}" + f"{len(cases):>5}")
        for r, h in zip(columns, heads[1:], strict=True):
            tr.write("  ")
            tr.write(f"{n[r]:>{max(len(h), 5)}}", **(colour[r] if n[r] else {}))
        tr.line("")
    not_run = model.info.not_run
    if not model.info.complete:
        first = f", first {not_run[0]}" if not_run else ""
        tr.write_line(f"interrupted: {len(not_run)} cases did not finish{first}", red=True)
