"""pytest plugin: the run's model, collected where the results meet, and the report
folder written from it at session end.

Active with `--kvmconf-run-dir DIR` (what `kvmconf run` passes). Workers turn each
case's outcomes into plain `Call` records and attach them, with the case's area and id,
to the report as one JSON-able attribute (`model.REPORT_KEY`): xdist and
pytest-reportlog carry a report's attributes, and JUnit never sees them, so junit.xml
keeps properties at the suite level, where junit-10.xsd allows them. The controller (or
the only process) decides each case in `model.Collector`, builds the model in
`pytest_sessionfinish`, writes results.ktap and kcidb.json, feeds pytest-html's hooks
and JUnit's suite properties, and prints the console summary (`console`). pytest-html,
JUnit and pytest-reportlog are pointed at DIR under temporary names that are renamed
when the session is over, so a run that dies leaves no file that looks whole.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import xml_key

from harness.abi.errnos import errno_name
from harness.abi.profile import DEFAULT_PROFILE
from harness.host.files import partial_name, publish, write_atomic
from harness.paths import shown_path
from harness.report import html, kcidb, ktap
from harness.report.model import (
    REPORT_KEY,
    Call,
    CapRow,
    Checkout,
    Collector,
    IoctlFact,
    RunInfo,
    RunModel,
    split_nodeid,
)
from harness.session.console import print_summary
from harness.session.engine import Case, Outcome, recording, take_outcomes
from harness.session.plugin import EXPECT_KEY, TARGET_KEY
from harness.session.target import Target

HTML, JUNIT, JSONL, KTAP, KCIDB = "report.html", "junit.xml", "results.jsonl", "results.ktap", "kcidb.json"
PLUGIN_NAME = "kvmconf-report"
SUITE_NAME = "kvmconf"  # junit.xml's testsuite: what a CI dashboard lists the run under


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kvmconf")
    g.addoption("--kvmconf-run-dir", metavar="DIR", default=None,
                help=f"write the run's reports into DIR: {HTML}, {JUNIT}, {JSONL}, {KTAP}, {KCIDB}")
    g.addoption("--tree-name", metavar="NAME", default="", help="KCIDB checkout: the kernel tree's name, e.g. mainline, kvm-next")
    g.addoption("--git-url", metavar="URL", default="", help="KCIDB checkout: the kernel tree's git repository URL")
    g.addoption("--git-commit", metavar="SHA", default="", help="KCIDB checkout: the commit the kernel was built from (40 hex digits)")
    g.addoption("--kernel-config", metavar="NAME", default="", help="KCIDB build: the kernel's config (its name, e.g. config-7.3.0-amd64)")


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
    if option.tbstyle == "auto":  # the console summary explains each failure in a few lines, grouped by clause
        option.tbstyle = "no"
        option.reportchars = option.reportchars.replace("f", "").replace("E", "") or "N"
    option.report_log = str(partial_name(path / JSONL))
    reporter = Reporter(config, path)
    config.pluginmanager.register(reporter, PLUGIN_NAME)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistOrder(reporter), f"{PLUGIN_NAME}-xdist")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Each case's outcomes live in its own stash while it runs."""
    with recording(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In the process that ran the case: what pytest does not know, as plain values
    on the report (xdist and reportlog carry a report's attributes)."""
    report = yield
    if item.config.getoption("kvmconf_run_dir"):
        area, case = _area_and_case(item)
        extra: dict[str, Any] = {"area": area, "case": case}
        outcomes = take_outcomes() if call.when == "call" else []
        if outcomes:  # every case's: the HTML's matrix counts passes per clause too
            extra["calls"] = [call_of(o).to_json() for o in outcomes]
        setattr(report, REPORT_KEY, extra)
    return report


def call_of(o: Outcome) -> Call:
    """The report's plain record of one outcome, with errno names."""
    actual = errno_name(o.result) if o.result < 0 else ("success" if o.result == 0 else f"success (returned {o.result})")
    if o.diff_outside:
        actual += f", and wrote {len(o.diff_outside)} bytes outside the struct"
    if o.trace:
        actual += f", and left a trace: {o.trace}"
    matched = o.expect.matches(o.result) and not o.diff_outside and not o.trace
    return Call(f"{o.label} on {o.fd_label}", o.expect.rule, o.expect.clause, o.input_text(), str(o.expect), actual, matched)


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
        info = run_info(self.config, target, run_id=run_id(self.run_dir), started=self.started, exitstatus=int(exitstatus),
                        not_run=[n for n in self.order if n not in finished])
        self.model = model = RunModel(info, cases)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / KTAP, ktap.render(model))
        write_atomic(self.run_dir / KCIDB, json.dumps(kcidb.render(model), indent=1) + "\n")
        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            xml.suite_name = SUITE_NAME
            for name, value in junit_properties(info):
                xml.add_global_property(name, value)

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
        if case is not None:
            data[:] = [html.row_details(case)]

    # -- the console ------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Lines that name the temporary folder (pytest-html's and JUnit's "generated
        ... file") are dropped: `kvmconf run` prints the published folder last. What is
        tested is said before any case by `harness.session.console_header`."""
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


def profile_reason(config: pytest.Config) -> str:
    """Why the run's rules are this profile's: as `kvmconf run` chose it (from a header,
    say), or from the options."""
    given = config.getoption("profile_reason")
    if given:
        return str(given)
    if config.getoption("kvm_header"):
        return "numbers and layouts from the kernel's header, semantics from this profile"
    if config.getoption("profile") == DEFAULT_PROFILE:
        return "the default profile: the released uAPI"
    return "chosen with --profile"


def run_info(config: pytest.Config, target: Target, *, run_id: str, started: float, exitstatus: int,
             not_run: Sequence[str]) -> RunInfo:
    """The run's header, as plain values taken from the session's target and options."""
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
    expectations = config.stash.get(EXPECT_KEY, None)
    path = expectations.path if expectations is not None else None
    opt = config.getoption
    return RunInfo(
        run_id=run_id, started=started, duration=time.time() - started, kernel=target.kernel, how=target.how,
        abi_source=facts.source, profile=facts.profile, backend=target.backend.name, arch=os.uname().machine,
        expectations=shown_path(str(path)) if path else "none",
        ioctls=ioctls, structs=tuple(sorted((s.name, s.size) for s in facts.structs.values())),
        vm_types=tuple(caps.vm_types), caps=rows, vm_errors=tuple(sorted(caps.vm_errors.items())),
        exitstatus=exitstatus, not_run=tuple(not_run), profile_reason=profile_reason(config), model=target.model,
        checkout=Checkout(opt("tree_name"), opt("git_url"), opt("git_commit"), opt("kernel_config")),
    )


def junit_properties(info: RunInfo) -> list[tuple[str, str]]:
    """What was tested, as the suite's properties (junit-10.xsd has none per case)."""
    return [(f"kvmconf.{name}", value) for name, value in (
        ("kernel", info.kernel), ("how", info.how), ("abi_source", info.abi_source), ("profile", info.profile),
        ("backend", info.backend), ("expectations", info.expectations), ("run_id", info.run_id))]


def run_id(run_dir: Path) -> str:
    """The id of reports/.<id>.partial is <id>."""
    name = run_dir.name
    return name[1:].removesuffix(".partial") if name.startswith(".") else name
