"""Kernel health around each case: kernel log trouble, new taint, leaked KVM fds and mappings.

A case can get every errno right and still make the kernel WARN, oops or taint itself,
or leave a VM, a guest_memfd or a mapping of one behind; each of those is a finding
of that case, so its report is turned into a failure that says what happened. Checked
around every case that uses the `target` fixture (the ones that talk to the kernel).
The kernel log and the taint file are options (`--kmsg`, `--taint-file`) so that tests
can inject fakes; the same files exist inside a QEMU guest. With the remote backend both
are the guest's, as the executor returns them with every reply. A hang (pytest-timeout) is
reported as one, in words, also when hypothesis calls it flaky (a property case
whose draw hung is replayed, and the replay does not hang the same way).

What the kernel logs or taints between two watched cases (a VM's teardown finishing
after its case, another worker's case) is no one case's: it fails no case, but it is
kept, named with the cases on either side, shown at the end of the run, in report.html
and in junit.xml, and it makes the run's exit code 1. So is the notice that the kernel
log cannot be read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from html import escape
from typing import Any

import pytest
from _pytest.junitxml import xml_key

from harness.remote.backend import ExecutorError, RemoteBackend
from harness.session.plugin import TARGET_KEY

KMSG = "/dev/kmsg"
TAINTED = "/proc/sys/kernel/tainted"

# Documentation/admin-guide/tainted-kernels.rst, "Table for decoding tainted state": bit n is letter n.
TAINT_FLAGS: tuple[tuple[str, str], ...] = (
    ("P", "proprietary module was loaded"),
    ("F", "module was force loaded"),
    ("S", "kernel running on an out of specification system"),
    ("R", "module was force unloaded"),
    ("M", "processor reported a Machine Check Exception"),
    ("B", "bad page referenced or some unexpected page flags"),
    ("U", "taint requested by userspace application"),
    ("D", "kernel died recently, i.e. there was an OOPS or BUG"),
    ("A", "an ACPI table was overridden by user"),
    ("W", "kernel issued warning"),
    ("C", "staging driver was loaded"),
    ("I", "workaround for bug in platform firmware applied"),
    ("O", "externally-built (out-of-tree) module was loaded"),
    ("E", "unsigned module was loaded"),
    ("L", "soft lockup occurred"),
    ("K", "kernel has been live patched"),
    ("X", "auxiliary taint, defined for and used by distros"),
    ("T", "kernel was built with the struct randomization plugin"),
    ("N", "an in-kernel test has been run"),
    ("J", "userspace used a mutating debug operation in fwctl"),
)

# What the kernel prints when it is in trouble: WARN(), BUG(), an oops, a sanitizer report.
TROUBLE = re.compile(r"^(?:WARNING:|kernel BUG at |Oops|general protection fault|UBSAN:|Kernel panic)|\bBUG: |\bKASAN\b")
CUT_HERE = "[ cut here ]"
# /dev/kmsg record: "priority,sequence,microseconds,flags[,...];message"; continuation lines start with a space.
KMSG_RECORD = re.compile(r"^(\d+),\d+,\d+,[^;]*;")
# Files that belong to KVM: anon inodes (kvm-vm, [kvm-gmem], kvm-vcpu:N, stats) and the device node.
KVM_ANON = re.compile(r"^anon_inode:\[?kvm")
HANG = re.compile(r"Timeout \(>([0-9.]+)s\) from pytest-timeout\.")  # its whole message
LOG_SHOWN = 8
LOG_KEPT = 200
BETWEEN_PROPERTY = "kvmconf.between_cases"  # on the next case's setup report, for the controller


def taint_letters(bits: int) -> list[str]:
    """`W (kernel issued warning)` for each set bit; bits newer than the table by number."""
    names = []
    for bit in range(bits.bit_length()):
        if bits >> bit & 1:
            if bit < len(TAINT_FLAGS):
                letter, meaning = TAINT_FLAGS[bit]
                names.append(f"{letter} ({meaning})")
            else:
                names.append(f"bit {bit}")
    return names


def kernel_message(line: str) -> str | None:
    """The text of a kernel-facility log line; None for continuation and userspace lines.

    Plain lines (a fake log, a console capture) count as kernel lines.
    """
    if line.startswith(" ") or not line:
        return None
    m = KMSG_RECORD.match(line)
    if m is None:
        return line
    if int(m[1]) >> 3 != 0:  # facility 0 is the kernel; others are userspace writes to /dev/kmsg
        return None
    return line[m.end() :]


def trouble(lines: list[str]) -> tuple[str, list[str]] | None:
    """The first trouble line, and the lines that show it (from `cut here` when there is one)."""
    for i, line in enumerate(lines):
        if TROUBLE.search(line):
            start = i - 1 if i > 0 and CUT_HERE in lines[i - 1] else i
            return line, lines[start : start + LOG_SHOWN]
    return None


class KernelLog:
    """Kernel log lines written since the last `take()`; /dev/kmsg, or any file that grows.

    Opened non-blocking at the current end: only what the kernel logs from now on counts.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self.fd, 0, os.SEEK_END)

    def take(self) -> list[str]:
        """The kernel's lines since the last call (userspace writes and continuations dropped)."""
        chunks = []
        while True:
            try:
                data = os.read(self.fd, 8192)  # /dev/kmsg gives one record per read
            except BlockingIOError:
                break
            except BrokenPipeError:  # records overwritten before they were read; the next read goes on
                continue
            if not data:
                break
            chunks.append(data)
        text = b"".join(chunks).decode(errors="replace")
        return [msg for line in text.splitlines() if (msg := kernel_message(line)) is not None]

    def close(self) -> None:
        os.close(self.fd)


def read_taint(path: str) -> int | None:
    """The taint mask; None when it cannot be read (the taint check is then off)."""
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Resources:
    """The KVM fds (number, link target) and the mappings of KVM files a process holds."""

    fds: frozenset[tuple[int, str]]
    maps: frozenset[str]

    def new_since(self, before: Resources, held: set[int]) -> list[str]:
        """What this snapshot holds that `before` did not, in words; `held` fds are the session's."""
        fds = sorted((fd, link) for fd, link in self.fds - before.fds if fd not in held)
        maps = sorted(self.maps - before.maps)
        return [f"fd {fd} -> {link}" for fd, link in fds] + [f"mapping {m}" for m in maps]


class KvmFiles:
    """Finds this process's KVM fds and mappings: only those, so pytest's and Python's own
    files, xdist's pipes and the allocator's anonymous arenas never count.

    Checked four times per case, so kept cheap: an fd's link is read once per open file
    (fstat tells a new one), and /proc/self/maps, which costs the kernel about half a
    millisecond in a pytest process, is read again only when the process's virtual size
    changed since the last read (a few times per run). The one thing that slips through:
    a KVM mapping that replaces a mapping of exactly its size between two checks
    (MAP_FIXED over a placeholder that existed before the case) and is then left behind.
    """

    def __init__(self, devices: Iterable[str]) -> None:
        self.devices = frozenset(devices)
        self.needles = {"kvm", *(d for d in self.devices if "kvm" not in d)}
        self._vsize = -1
        self._maps: frozenset[str] = frozenset()
        self._links: dict[tuple[int, int, int], str] = {}  # an open file keeps its link: readlink once

    def is_kvm(self, name: str) -> bool:
        return bool(KVM_ANON.match(name)) or name in self.devices

    def snapshot(self) -> Resources:
        fds = set()
        links = {}
        for entry in os.listdir("/proc/self/fd"):
            fd = int(entry)
            try:
                st = os.fstat(fd)
                key = (fd, st.st_dev, st.st_ino)
                link = self._links.get(key) or os.readlink(f"/proc/self/fd/{entry}")
            except OSError:  # the fd that listed the directory, already closed
                continue
            links[key] = link
            if self.is_kvm(link):
                fds.add((fd, link))
        self._links = links
        with open("/proc/self/statm") as fh:
            vsize = int(fh.read().split()[0])
        if vsize != self._vsize:
            self._vsize, self._maps = vsize, self._read_maps()
        return Resources(frozenset(fds), self._maps)

    def _read_maps(self) -> frozenset[str]:
        with open("/proc/self/maps") as fh:
            return self.kvm_maps(fh.read())

    def kvm_maps(self, text: str) -> frozenset[str]:
        """The lines of a maps file that map a KVM file, as "range perms file"."""
        maps = set()
        for line in self._lines_with_needles(text):
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and self.is_kvm(parts[5]):
                maps.add(f"{parts[0]} {parts[1]} {parts[5]}")
        return frozenset(maps)

    def _lines_with_needles(self, text: str) -> Iterator[str]:
        """The few lines that can name a KVM file, found with str.find rather than by
        parsing each of the hundreds of lines."""
        for needle in self.needles:
            pos = text.find(needle)
            while pos != -1:
                start = text.rfind("\n", 0, pos) + 1
                end = text.find("\n", pos)
                end = len(text) if end == -1 else end
                yield text[start:end]
                pos = text.find(needle, end)


class ExecutorFiles(KvmFiles):
    """The KVM fds and mappings of the executor, which holds them for the remote backend."""

    def __init__(self, devices: Iterable[str], backend: RemoteBackend) -> None:
        super().__init__(devices)
        self.backend = backend
        self._last: tuple[int, Resources] | None = None

    def snapshot(self) -> Resources:
        """Asked again only after a call went to the executor since (one batch, which also
        carries the calls still queued, and brings the kernel log and taint with it)."""
        if self._last is not None and self._last[0] == self.backend.batches and not self.backend.pending:
            return self._last[1]
        fds, maps = self.backend.files()
        now = Resources(frozenset((fd, link) for fd, link in fds if self.is_kvm(link)), self.kvm_maps(maps))
        self._last = (self.backend.batches, now)
        return now


def fail_report(report: pytest.TestReport, text: str) -> None:
    """Make `report` a failure whose message is `text`, keeping any failure it already had."""
    if report.failed and report.longrepr is not None:
        text += f"\n\nthe case also failed:\n{report.longrepr}"
    if hasattr(report, "wasxfail"):  # a known finding is no excuse for a kernel in trouble
        text += f"\n\nthe case was expected to fail ({report.wasxfail})"
        del report.wasxfail
    report.outcome = "failed"
    report.longrepr = text


def _hang_seconds(exc: BaseException | None, seen: set[int] | None = None) -> float | None:
    """The timeout of pytest-timeout's failure in `exc`, or in what it wraps: hypothesis
    reports a hang inside a property case as FlakyFailure or FlakyStrategyDefinition,
    an exception group with the timeout inside or behind it."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return None
    seen.add(id(exc))
    if isinstance(exc, pytest.fail.Exception) and (m := HANG.fullmatch(str(exc))) is not None:
        return float(m[1])
    for inner in [*getattr(exc, "exceptions", ()), exc.__cause__, exc.__context__]:
        found = _hang_seconds(inner, seen)
        if found is not None:
            return found
    return None


def name_hang(report: pytest.TestReport, call: pytest.CallInfo[None]) -> None:
    """pytest-timeout's failure, said as what it is: the kernel (or the case) did not answer."""
    if not report.failed or call.excinfo is None:
        return
    seconds = _hang_seconds(call.excinfo.value)
    if seconds is None:
        return
    if call.excinfo.errisinstance(pytest.fail.Exception):
        report.longrepr = f"hang: no answer within {seconds:g} s\n{report.longrepr}"
    else:  # hypothesis's account of a replay that did not hang again is about hypothesis, not the kernel
        report.longrepr = (f"hang: no answer within {seconds:g} s (in a drawn example; hypothesis, replaying it, "
                           f"called it {call.excinfo.typename})")


@dataclass
class _CaseState:
    start: Resources
    taint: int | None
    before_call: Resources | None = None
    reported: frozenset[str] = frozenset()
    between: str | None = None  # trouble found as this case began: the time before it, not it


STATE_KEY = pytest.StashKey[_CaseState]()


class KernelHealth:
    """The per-case checks; one instance per pytest process (each xdist worker has its own)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.kernel = config.getoption("backend") == "kernel"
        device = config.getoption("kvm_device")
        self.files = KvmFiles({device, os.path.realpath(device), "/dev/kvm"})
        self.taint_path: str = config.getoption("taint_file")
        self.log: KernelLog | None = None
        self.log_off: str | None = None
        self.worker = hasattr(config, "workerinput")
        self.last_taint: int | None = None  # as the last watched case left it
        self.last_case = "the start of the session"
        self.notes: list[str] = []  # the controller's: for the console, report.html and junit.xml
        self.between: list[str] = []  # kernel trouble between cases, as the controller heard of it

    def _open_log(self) -> None:
        path: str = self.config.getoption("kmsg")
        try:
            self.log = KernelLog(path)
        except OSError as e:
            why = errno.errorcode.get(e.errno or 0, str(e))
            self.log_off = f"{path} cannot be read ({why}; kernel.dmesg_restrict decides who may)"

    def _held(self) -> set[int]:
        """The /dev/kvm fd the session's target keeps open for every case (opened by the
        first case that needs it): not a leak of that case."""
        target = self.config.stash.get(TARGET_KEY, None)
        return target.held_fds() if target is not None else set()

    @pytest.hookimpl
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not self.kernel:
            return
        self._open_log()
        notes = []
        if self.log_off:
            notes.append(f"{self.log_off}: kernel log attribution is off")
        if read_taint(self.taint_path) is None:
            notes.append(f"{self.taint_path} cannot be read: the taint check is off")
        self.last_taint = read_taint(self.taint_path)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if notes and not self.worker:
            self.notes.append("; ".join(notes))
            if reporter is not None:
                reporter.write_line(f"kvmconf: {'; '.join(notes)}")

    def _remote(self) -> RemoteBackend | None:
        """The executor's backend, whose replies carry the guest kernel's log and taint."""
        target = self.config.stash.get(TARGET_KEY, None)
        backend = target.backend if target is not None else None
        return backend if isinstance(backend, RemoteBackend) else None

    def _snapshot(self) -> Resources:
        remote = self._remote()
        if remote is not None and not isinstance(self.files, ExecutorFiles):
            self.files = ExecutorFiles(self.files.devices, remote)
            with contextlib.suppress(ExecutorError):
                first = self.files.snapshot()
                self.last_taint = remote.taint  # the guest's from now on, not this host's
                return first
        try:
            return self.files.snapshot()
        except ExecutorError:  # the case's own call failed with it; the next case stops the run
            return Resources(frozenset(), frozenset())

    def _take_log(self) -> list[str]:
        remote = self._remote()
        if remote is not None:
            with contextlib.suppress(ExecutorError):
                remote.settle()
            return [msg for line in remote.take_log() if (msg := kernel_message(line)) is not None]
        return self.log.take() if self.log is not None else []

    def _stop_if_executor_gone(self) -> None:
        """A dead or stuck executor answers no later case: the run ends, saying why."""
        remote = self._remote()
        if remote is not None and remote.channel.broken is not None:
            pytest.exit(f"kvmconf: {remote.channel.broken}", returncode=remote.channel.broken.exit_code)

    def _taint(self) -> int | None:
        remote = self._remote()
        if remote is not None:
            return remote.taint
        return read_taint(self.taint_path) if self.kernel else None

    def _watched(self, item: pytest.Item) -> bool:
        return "target" in getattr(item, "fixturenames", ())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        if self._watched(item):
            self._stop_if_executor_gone()
            start = self._snapshot()  # first: for the remote backend its batch brings the log and taint
            taint = self._taint()
            between = self._between(item.nodeid, self._take_log(), taint)
            item.stash[STATE_KEY] = _CaseState(start, taint, between=between)
        return (yield)

    def _between(self, nodeid: str, log: list[str], taint: int | None) -> str | None:
        """What the kernel said or tainted since the last watched case ended, in one line."""
        problems = []
        if taint is not None and self.last_taint is not None and taint & ~self.last_taint:
            problems.append(f"kernel tainted: {', '.join(taint_letters(taint & ~self.last_taint))}")
        shown = trouble(log)
        if shown is not None:
            problems.append(f"kernel log: {shown[0]}")
        if taint is not None:
            self.last_taint = taint
        if not problems:
            return None
        return f"between {self.last_case} and {nodeid}: {'; '.join(problems)}"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        state = item.stash.get(STATE_KEY, None)
        if state is not None:
            state.before_call = self._snapshot()  # what setup (fixtures) opened is not the body's
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        name_hang(report, call)
        state = item.stash.get(STATE_KEY, None)
        if state is not None and call.when == "setup" and state.between is not None:
            report.user_properties.append((BETWEEN_PROPERTY, state.between))
        if state is not None and call.when == "teardown":
            self.last_case = item.nodeid
        if state is not None and call.when in ("call", "teardown"):
            problems, log = self._check(state, call.when)
            if problems:
                if log:
                    report.sections.append(("kernel log", "\n".join(log[-LOG_KEPT:])))
                fail_report(report, "\n".join(problems))
        return report

    def _check(self, state: _CaseState, when: str) -> tuple[list[str], list[str]]:
        """Problems since the case started (the call) or since the call ended (teardown)."""
        problems = []
        now = self._snapshot()  # first: for the remote backend its batch brings the log and taint
        log = self._take_log()
        shown = trouble(log)
        taint = self._taint()
        new_taint = taint & ~state.taint if taint is not None and state.taint is not None else 0
        state.taint = taint
        if taint is not None:
            self.last_taint = taint
        if new_taint:
            problems.append(f"kernel tainted during the case: {', '.join(taint_letters(new_taint))}")
        if shown is not None:
            problems.append(f"kernel log: {shown[0]}")
        before = state.before_call if when == "call" and state.before_call is not None else state.start
        leaked = [r for r in now.new_since(before, self._held()) if r not in state.reported]
        state.reported |= frozenset(leaked)
        if leaked:
            where = "the case" if when == "call" else "its fixtures"
            problems.append(f"leak: {where} left {len(leaked)} KVM resource(s) open: {'; '.join(leaked)}")
        if shown is not None:
            problems += ["first kernel log lines:", *(f"    {line}" for line in shown[1])]
        if (shown is not None or new_taint) and self.worker:
            problems.append("(the kernel log and taint are machine-wide: a case on another worker may have caused it)")
        return problems, log


    # -- the controller: what no case owns, kept in the run's outcome and reports -------------

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.between += [str(v) for k, v in report.user_properties if k == BETWEEN_PROPERTY and str(v) not in self.between]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before JUnit writes its file; a run with trouble between cases is no passing run."""
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.worker:
            return
        if self.between and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            for i, text in enumerate(self.between):
                xml.add_global_property(f"kvmconf.kernel_between_cases.{i + 1}", text)
            for text in self.notes:
                xml.add_global_property("kvmconf.kernel_health_notice", text)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str], session: Any) -> None:
        lines = [*self.notes, *(f"kernel trouble {text}" for text in self.between)]
        if lines:
            prefix.append('<section id="kvmconf-kernel-health"><h2>Kernel health</h2>'
                          + "".join(f"<p>{escape(line)}</p>" for line in lines) + "</section>")

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for text in self.between:
            terminalreporter.write_line(f"kvmconf: kernel trouble {text}", red=True)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("kvmconf")
    g.addoption("--kmsg", default=KMSG, metavar="PATH", help=f"kernel log read around each case for WARN/BUG/Oops/KASAN (default: {KMSG})")
    g.addoption("--taint-file", default=TAINTED, metavar="PATH", help=f"kernel taint mask checked around each case (default: {TAINTED})")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(KernelHealth(config), "kvmconf-health")
