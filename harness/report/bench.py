"""`kvmconf bench`'s figures and their table and JSON, and the parsing of what the
measured programs print: pure, so the report of a bench can be tested without timing anything."""

from __future__ import annotations

import re
import statistics
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.abi.facts import AbiFacts
from harness.abi.linux import PAGE_SIZE, U64

DEFAULT_RUNS = 5


DEFAULT_CALLS = 200_000


DEFAULT_VMS = 1_000


DEFAULT_SUITE_RUNS = 3


DEFAULT_LONG_RUNS = 1


RATIO_TARGET = 3.0


SUITE_TARGET_S = 10.0




TABLE_WIDTH = 100


Progress = Callable[[str], None]


@dataclass(frozen=True)
class Machine:
    """Where the figures were taken: they mean little without it."""

    cores: int
    kernel: str
    cpu: str


def cpu_model(cpuinfo: str) -> str:
    """The CPU's name from /proc/cpuinfo text (x86 "model name", arm64 "Model")."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model") and value.strip():
            return value.strip()
    return "unknown CPU"


@dataclass(frozen=True)
class Figure:
    """One quantity measured over several runs; min shows the floor, median the usual."""

    samples: tuple[float, ...]

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))


@dataclass(frozen=True)
class Row:
    """A line of the table: the harness's figure, the C baseline's, or why there is none."""

    label: str
    ours: Figure | None = None
    c: Figure | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """Harness median over C median: the target is at most RATIO_TARGET."""
        if self.ours is None or self.c is None or self.c.median <= 0:
            return None
        return self.ours.median / self.c.median


@dataclass(frozen=True)
class Section:
    """A part of the bench; `measure` says the unit, the clock and the run counts."""

    key: str
    title: str
    unit: str
    measure: str
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Settings:
    """What to measure and how often (the `kvmconf bench` options)."""

    device: str = "/dev/kvm"
    runs: int = DEFAULT_RUNS
    calls: int = DEFAULT_CALLS
    vms: int = DEFAULT_VMS
    suite_runs: int = DEFAULT_SUITE_RUNS
    long_runs: int = DEFAULT_LONG_RUNS
    suite: bool = True
    vm_mode: bool = True
    mutation: bool = True


@dataclass(frozen=True)
class BenchReport:
    """Everything one bench run measured; `c_source` is the C baseline it built, kept with it."""

    machine: Machine
    started: str
    settings: Settings
    sections: tuple[Section, ...]
    c_source: str = ""


_NUM_W = 8


_FIGURES_W = 2 + (2 * _NUM_W + 1) + 2 + (2 * _NUM_W + 1) + 2 + 6  # kvmconf min/median, C min/median, ratio


def fmt(value: float) -> str:
    """Three significant digits or so, whatever the magnitude (0.612, 47.3, 512)."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _figure_cells(fig: Figure | None) -> str:
    if fig is None:
        return f"{'':>{_NUM_W}} {'':>{_NUM_W}}"
    return f"{fmt(fig.minimum):>{_NUM_W}} {fmt(fig.median):>{_NUM_W}}"


def _note_lines(note: str) -> list[str]:
    return textwrap.wrap(note, TABLE_WIDTH, initial_indent="      ", subsequent_indent="      ")


def _row_lines(row: Row, width: int) -> list[str]:
    """A row in `width` label columns; a longer label gets a line of its own."""
    label = f"  {row.label}"
    if row.ours is None and row.c is None:
        line = f"{label:<{width}}  {row.note}".rstrip()
        return [line] if len(line) <= TABLE_WIDTH else [label, *_note_lines(row.note)]
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
    figures = f"  {_figure_cells(row.ours)}  {_figure_cells(row.c)}  {ratio:>6}".rstrip()
    head = [f"{label:<{width}}{figures}"] if len(label) <= width else [label, f"{'':<{width}}{figures}"]
    return head + _note_lines(row.note)


def format_table(report: BenchReport) -> str:
    """The table people read: fits 100 columns, units in the section headers."""
    m = report.machine
    labels = [len(r.label) + 2 for s in report.sections for r in s.rows if r.ours is not None or r.c is not None]
    width = min(max([44, *labels]), TABLE_WIDTH - _FIGURES_W)
    pair = 2 * _NUM_W + 1
    lines = [
        f"kvmconf bench, {report.started}",
        f"machine: {m.cpu}, {m.cores} cores, Linux {m.kernel}",
        "",
        f"{'':<{width}}  {'kvmconf':^{pair}}  {'C, gcc -O2':^{pair}}".rstrip(),
        f"{'':<{width}}  {'min':>{_NUM_W}} {'median':>{_NUM_W}}  {'min':>{_NUM_W}} {'median':>{_NUM_W}}  {'ratio':>6}",
    ]
    for section in report.sections:
        lines.append(f"{section.title} ({section.measure})")
        for row in section.rows:
            lines.extend(_row_lines(row, width))
    lines += [
        "",
        f"ratio = kvmconf median / C median (target ≤ {RATIO_TARGET:g}); "
        f"suite target ≤ {SUITE_TARGET_S:g} s with all cores.",
    ]
    return "\n".join(lines) + "\n"


def _figure_json(fig: Figure | None) -> dict[str, Any] | None:
    if fig is None:
        return None
    return {"min": fig.minimum, "median": fig.median, "samples": list(fig.samples)}


def to_json(report: BenchReport) -> dict[str, Any]:
    """The saved form: every sample, so later runs can be compared figure by figure."""
    return {
        "kind": "kvmconf-bench",
        "started": report.started,
        "machine": {"cores": report.machine.cores, "kernel": report.machine.kernel, "cpu": report.machine.cpu},
        "settings": {
            "device": report.settings.device,
            "runs": report.settings.runs,
            "calls_per_run": report.settings.calls,
            "vms_per_run": report.settings.vms,
            "suite_runs": report.settings.suite_runs,
            "long_runs": report.settings.long_runs,
        },
        "targets": {"ratio_max": RATIO_TARGET, "suite_all_cores_max_s": SUITE_TARGET_S},
        "sections": [
            {
                "key": s.key,
                "title": s.title,
                "unit": s.unit,
                "measure": s.measure,
                "rows": [
                    {"label": r.label, "kvmconf": _figure_json(r.ours), "c": _figure_json(r.c), "ratio": r.ratio, "note": r.note}
                    for r in s.rows
                ],
            }
            for s in report.sections
        ],
    }


@dataclass(frozen=True)
class Loop:
    """One measured ioctl: the same fd kind, number and argument on both sides.

    `scope` is "system" (/dev/kvm) or "vm" (a VM of type 0 made first); `arg` is an int
    passed as it is, or a struct's bytes passed by address.
    """

    label: str
    scope: str
    request: int
    arg: int | bytes


def loops(facts: AbiFacts) -> list[Loop]:
    """A cheap ioctl that succeeds, and rejected ones that copy a struct in first."""
    found = [Loop("KVM_CHECK_EXTENSION on /dev/kvm", "system", facts.ioctls["KVM_CHECK_EXTENSION"].number, 0)]
    for name, struct, values in (
        ("KVM_CREATE_GUEST_MEMFD", "kvm_create_guest_memfd", {"size": PAGE_SIZE, "flags": U64}),
        ("KVM_SET_MEMORY_ATTRIBUTES", "kvm_memory_attributes", {"size": PAGE_SIZE, "flags": U64}),
    ):
        if facts.missing(name) is None and facts.missing(struct) is None:
            found.append(Loop(f"{name}, flags ~0", "vm", facts.ioctls[name].number, facts.structs[struct].pack(values)))
    return found


def c_source(ioctl_loops: Sequence[Loop], create_vm: int) -> str:
    """The C baseline: each loop as the harness issues it, numbers from the ABI facts.

    Usage: `bench_loop DEVICE RUNS CALLS LOOP` (LOOP: a loop's index, or `vm` for
    KVM_CREATE_VM + close). One line per run: nanoseconds for CALLS calls, then the
    first call's result or -errno (what `raw()` returns), for checking both sides agree.
    """
    arrays: list[str] = []
    cases: list[str] = []
    for i, loop in enumerate(ioctl_loops):
        fd = "sys_fd" if loop.scope == "system" else "vm_fd(sys_fd)"
        if isinstance(loop.arg, bytes):
            data = ", ".join(f"0x{b:02x}" for b in loop.arg)
            arrays.append(f"static unsigned char arg_{i}[{len(loop.arg)}] __attribute__((aligned(8))) = {{ {data} }};")
            arg = f"(unsigned long)arg_{i}"
        else:
            arg = f"{loop.arg & U64:#x}UL"
        cases.append(f"\tcase {i}: /* {loop.label} */\n\t\treturn ioctl_loop({fd}, {loop.request:#x}UL, {arg}, runs, calls);")
    return _C_TEMPLATE.format(create_vm=create_vm, arrays="\n".join(arrays), cases="\n".join(cases))


_C_TEMPLATE = """\
/* Generated by harness/bench.py (kvmconf bench): the C baseline of the harness's ioctls. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define KVM_CREATE_VM_NR {create_vm:#x}UL

{arrays}

static long long now_ns(clockid_t clock)
{{
\tstruct timespec t;
\tclock_gettime(clock, &t);
\treturn t.tv_sec * 1000000000LL + t.tv_nsec;
}}

/* The result or -errno, as the harness's raw() gives it. */
static long call(int fd, unsigned long request, unsigned long arg)
{{
\tint r = ioctl(fd, request, arg);
\treturn r < 0 ? -errno : r;
}}

/* CPU time of this thread, as the harness measures its side. */
static int ioctl_loop(int fd, unsigned long request, unsigned long arg, long runs, long calls)
{{
\tvolatile long sink = 0;
\tlong first = call(fd, request, arg);
\tfor (long run = 0; run < runs; run++) {{
\t\tlong long start = now_ns(CLOCK_THREAD_CPUTIME_ID);
\t\tfor (long i = 0; i < calls; i++)
\t\t\tsink += call(fd, request, arg);
\t\tprintf("%lld %ld\\n", now_ns(CLOCK_THREAD_CPUTIME_ID) - start, first);
\t}}
\treturn 0;
}}

/* Wall time: creating and destroying a VM can sleep. */
static int vm_cycle(int sys_fd, long runs, long calls)
{{
\tfor (long run = 0; run < runs; run++) {{
\t\tlong long start = now_ns(CLOCK_MONOTONIC);
\t\tfor (long i = 0; i < calls; i++) {{
\t\t\tint vm = ioctl(sys_fd, KVM_CREATE_VM_NR, 0UL);
\t\t\tif (vm < 0) {{
\t\t\t\tperror("KVM_CREATE_VM");
\t\t\t\treturn 1;
\t\t\t}}
\t\t\tclose(vm);
\t\t}}
\t\tprintf("%lld 0\\n", now_ns(CLOCK_MONOTONIC) - start);
\t}}
\treturn 0;
}}

static int vm_fd(int sys_fd)
{{
\tint vm = ioctl(sys_fd, KVM_CREATE_VM_NR, 0UL);
\tif (vm < 0) {{
\t\tperror("KVM_CREATE_VM");
\t\texit(1);
\t}}
\treturn vm;
}}

int main(int argc, char **argv)
{{
\tif (argc != 5) {{
\t\tfprintf(stderr, "usage: %s DEVICE RUNS CALLS LOOP|vm\\n", argv[0]);
\t\treturn 2;
\t}}
\tint sys_fd = open(argv[1], O_RDWR | O_CLOEXEC);
\tif (sys_fd < 0) {{
\t\tperror(argv[1]);
\t\treturn 2;
\t}}
\tlong runs = atol(argv[2]), calls = atol(argv[3]);
\tif (strcmp(argv[4], "vm") == 0)
\t\treturn vm_cycle(sys_fd, runs, calls);
\tswitch (atoi(argv[4])) {{
{cases}
\t}}
\tfprintf(stderr, "no loop %s\\n", argv[4]);
\treturn 2;
}}
"""


def parse_c_output(text: str, calls: int) -> tuple[int, list[float]]:
    """The C loop's first result, and its µs per call for each run it printed."""
    runs = [line.split() for line in text.splitlines() if line.strip()]
    if not runs:
        raise ValueError("the C loop printed nothing")
    return int(runs[0][1]), [int(ns) / calls / 1000 for ns, _ in runs]


_SUMMARY_COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)\b")


_COLLECTED = re.compile(r"(\d+) tests? collected")


def parse_summary(output: str) -> dict[str, int]:
    """pytest's closing counts ("400 passed, 622 skipped, 64 xfailed in 3.49s")."""
    for line in reversed(output.splitlines()):
        if re.search(r" in [\d.]+s", line):
            counts = {kind: int(n) for n, kind in _SUMMARY_COUNT.findall(line)}
            if counts:
                return counts
    return {}


def case_count(counts: dict[str, int]) -> int:
    return sum(n for kind, n in counts.items() if kind != "deselected")


def parse_collected(output: str) -> int | None:
    found = _COLLECTED.search(output)
    return int(found.group(1)) if found else None


def last_line(output: str) -> str:
    return (output.strip().splitlines() or ["no output"])[-1][:80]


def cases_detail(output: str) -> str:
    """`1086 cases` from a run's pytest summary; empty when it printed none."""
    cases = case_count(parse_summary(output))
    return f"{cases} cases" if cases else ""


def mutation_detail(output: str) -> str:
    """`44/46 killed` from the mutation run's score line."""
    found = re.search(r"mutation score: (\d+)/(\d+) mutants killed", output)
    return f"{found.group(1)}/{found.group(2)} killed" if found else ""


def runs_phrase(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


_PYTEST_PROGRESS = re.compile(r"^\s*[.sxXFE]+(\s+\[\s*\d+%\])?\s*$")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # pytest colours its progress on the guest's serial console


@dataclass(frozen=True)
class BootTimes:
    """Seconds from `kvmconf run --kernel` starting to each milestone it printed."""

    ready: float | None
    first_case: float | None
    report: float | None
    cases: int | None = None  # from the last "N/M cases" progress line

    @property
    def per_case(self) -> float | None:
        """Seconds per case after the first: the part of a run that grows with the suite."""
        if self.first_case is None or self.report is None or not self.cases or self.cases < 2:
            return None
        return (self.report - self.first_case) / (self.cases - 1)


_CASES_LINE = re.compile(r"^\d+/(\d+) cases$")


def boot_times(lines: Sequence[tuple[float, str]]) -> BootTimes:
    """Milestones from the run's timestamped output lines.

    The guest is ready at the runner's "guest ready after" line; the first case is a
    "first case" line or the first pytest progress line; the report is written when
    `kvmconf run` prints "reports: PATH".
    """

    plain = [(t, _ANSI.sub("", text)) for t, text in lines]

    def first(matches: Callable[[str], bool]) -> float | None:
        return next((t for t, text in plain if matches(text)), None)

    totals = [int(m.group(1)) for _, text in plain if (m := _CASES_LINE.match(text))]
    return BootTimes(
        ready=first(lambda s: "guest ready after" in s),
        first_case=first(lambda s: "first case" in s or _PYTEST_PROGRESS.match(s) is not None),
        report=first(lambda s: s.startswith("reports: ")),
        cases=totals[-1] if totals else None,
    )


def boot_rows(label: str, runs: Sequence[BootTimes]) -> tuple[Row, ...]:
    """One row per milestone; n/a with the line that was missing when the run printed none."""
    milestones = (
        ("ready", "start → guest ready", "a 'guest ready after' line"),
        ("first_case", "start → first case", "a 'first case' or pytest progress line"),
        ("report", "start → report written", "a 'reports: PATH' line"),
        ("per_case", "per case after the first", "'N/M cases' progress lines"),
    )
    rows = []
    for attr, what, line in milestones:
        values = [getattr(r, attr) for r in runs]
        if any(v is None for v in values):
            rows.append(Row(f"{label}: {what}", note=f"n/a (kvmconf run --kernel printed no {line})"))
        else:
            rows.append(Row(f"{label}: {what}", Figure(tuple(values))))
    return tuple(rows)


def skipped(key: str, title: str, why: str) -> Section:
    return Section(key, title, "s", "not measured", (Row(why),))
