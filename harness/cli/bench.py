"""`kvmconf bench`: how fast the suite is, measured against a C baseline and printed.

Reviewers rerun the suite on every patch revision and CI on every kernel, so its speed
matters; a timed assertion would only make tests flaky, so the figures are measured,
printed and saved (reports/bench/<run>/bench.json) instead. Four parts:

1. one harness ioctl (`KvmFd.raw`, the path every case takes) against the same ioctl
   in a C loop generated from the ABI facts and built here with gcc -O2, and the cost
   of creating and closing a VM, which a case needing a fresh VM pays;
2. the whole suite, serial and on all cores, with the collection apart;
3. the suite against a kernel booted under QEMU (`kvmconf run --kernel`), in both modes:
   the suite on the host with the executor in the guest, and the suite in the guest;
4. the suite on the model backend, and the mutation run.

Per-ioctl costs are the calling thread's CPU time on both sides: on a shared machine
the time spent waiting for a core is nobody's cost, and CPU time leaves it out. What
can sleep (VM creation, whole runs) is wall time. Each figure is the minimum and the
median over the runs.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from harness.abi.facts import AbiFacts
from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import DEFAULT_PROFILE
from harness.cli.runs import RunFolder
from harness.errors import GccMissing
from harness.host.backend import KernelBackend, describe
from harness.host.device import check_device
from harness.host.fds import Kvm, KvmFd
from harness.paths import REPORTS, ROOT
from harness.session.backends import backend_names
from harness.session.target import load_facts

DEFAULT_RUNS = 5
DEFAULT_CALLS = 200_000
DEFAULT_VMS = 1_000
DEFAULT_SUITE_RUNS = 3
DEFAULT_LONG_RUNS = 1
RATIO_TARGET = 3.0
SUITE_TARGET_S = 10.0
KERNEL_CACHE = Path.home() / ".cache" / "kvm-kernels"
ALL_ONES = (1 << 64) - 1
TABLE_WIDTH = 100

Progress = Callable[[str], None]


# ---- what a bench run produces -------------------------------------------------


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


def this_machine() -> Machine:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return Machine(cores=os.cpu_count() or 1, kernel=os.uname().release, cpu=cpu_model(cpuinfo))


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


# ---- the table and its JSON ----------------------------------------------------

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


# ---- part 1: one ioctl, the harness against C ----------------------------------


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
        ("KVM_CREATE_GUEST_MEMFD", "kvm_create_guest_memfd", {"size": PAGE_SIZE, "flags": ALL_ONES}),
        ("KVM_SET_MEMORY_ATTRIBUTES", "kvm_memory_attributes", {"size": PAGE_SIZE, "flags": ALL_ONES}),
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
            arg = f"{loop.arg & ALL_ONES:#x}UL"
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


def build_c(source: str, workdir: Path) -> Path:
    """Compile the generated baseline with gcc -O2; GccMissing says why it could not."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise GccMissing("gcc not found (apt-get install gcc libc6-dev)")
    src = workdir / "bench_loop.c"
    exe = workdir / "bench_loop"
    src.write_text(source)
    built = subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(src)], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        last = (built.stderr.strip().splitlines() or ["no message"])[-1]
        raise GccMissing(f"gcc could not build the C baseline: {last}")
    return exe


def parse_c_output(text: str, calls: int) -> tuple[int, list[float]]:
    """The C loop's first result, and its µs per call for each run it printed."""
    runs = [line.split() for line in text.splitlines() if line.strip()]
    if not runs:
        raise ValueError("the C loop printed nothing")
    return int(runs[0][1]), [int(ns) / calls / 1000 for ns, _ in runs]


class CUnavailable(Exception):
    """The C side of a row cannot be measured; the message says why."""


@dataclass(frozen=True)
class CBaseline:
    """The built C loop, or why there is none (its rows then show the harness alone)."""

    exe: Path | None
    why_not: str
    device: str

    def run_once(self, loop: str, calls: int) -> tuple[int, float]:
        """One run of a loop: its first result and µs per call."""
        if self.exe is None:
            raise CUnavailable(self.why_not)
        done = subprocess.run([str(self.exe), self.device, "1", str(calls), loop], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise CUnavailable(f"C loop {loop} failed: {done.stderr.strip() or f'exit {done.returncode}'}")
        try:
            first, samples = parse_c_output(done.stdout, calls)
        except (ValueError, IndexError) as e:
            raise CUnavailable(f"C loop {loop}: {e}") from None
        return first, samples[0]


def raw_run(fd: KvmFd, number: int, arg: int, calls: int) -> float:
    """CPU µs per call of `fd.raw(number, arg)`, the path every case takes."""
    start = time.thread_time_ns()
    for _ in itertools.repeat(None, calls):
        fd.raw(number, arg)
    return (time.thread_time_ns() - start) / calls / 1000


def vm_cycle_run(kvm: Kvm, vms: int) -> float:
    """Wall µs to create a VM through the harness and close it."""
    start = time.perf_counter_ns()
    for _ in itertools.repeat(None, vms):
        kvm.create_vm(0).close()
    return (time.perf_counter_ns() - start) / vms / 1000


@dataclass(frozen=True)
class Paired:
    ours: Figure
    c: Figure | None
    c_first: int | None
    why_no_c: str


def paired(ours: Callable[[], float], c: Callable[[], tuple[int, float]], runs: int) -> Paired:
    """Runs of C and the harness in turn, so load that comes and goes hits both alike."""
    mine: list[float] = []
    theirs: list[float] = []
    first: int | None = None
    why_no_c = ""
    for _ in range(runs):
        if not why_no_c:
            try:
                first, sample = c()
                theirs.append(sample)
            except CUnavailable as e:
                why_no_c = str(e)
        mine.append(ours())
    return Paired(Figure(tuple(mine)), None if why_no_c else Figure(tuple(theirs)), first, why_no_c)


def ioctl_sections(settings: Settings, facts: AbiFacts, source: str, workdir: Path, progress: Progress) -> list[Section]:
    """Part 1: per-ioctl cost against C (`source`, from `c_source`), and the cost of a fresh VM."""
    measured = loops(facts)
    try:
        c = CBaseline(build_c(source, workdir), "", settings.device)
    except GccMissing as e:
        c = CBaseline(None, str(e), settings.device)
    rows = []
    with Kvm.open(KernelBackend(), facts, settings.device) as kvm, kvm.create_vm(0) as vm:
        for i, loop in enumerate(measured):
            progress(f"{loop.label}: {settings.runs} runs × {settings.calls:,} calls, C and kvmconf in turn")
            fd: KvmFd = kvm if loop.scope == "system" else vm
            buf = ctypes.create_string_buffer(loop.arg, len(loop.arg)) if isinstance(loop.arg, bytes) else None
            arg = ctypes.addressof(buf) if buf is not None else int(loop.arg)
            first = fd.raw(loop.request, arg)
            got = paired(partial(raw_run, fd, loop.request, arg, settings.calls), partial(c.run_once, str(i), settings.calls),
                         settings.runs)
            note = f"C: n/a ({got.why_no_c})" if got.why_no_c else ""
            if first == -errno.ENOTTY:
                note = note or "ENOTTY: this kernel lacks the ioctl, so it refuses it before reading the struct"
            if got.c_first is not None and got.c_first != first:
                note = f"not the same call: the C loop got {describe(got.c_first)}, kvmconf {describe(first)}"
            rows.append(Row(f"{loop.label} → {_answer(first)}", got.ours, got.c, note))
        progress(f"KVM_CREATE_VM + close: {settings.runs} runs × {settings.vms:,} VMs, C and kvmconf in turn")
        vms = paired(partial(vm_cycle_run, kvm, settings.vms), partial(c.run_once, "vm", settings.vms), settings.runs)
    calls = f"{settings.runs} runs × {settings.calls:,} calls"
    return [
        Section("ioctl", "Per-ioctl cost", "µs", f"CPU µs per call, {calls}", tuple(rows)),
        Section("vm", "A fresh VM", "µs", f"wall µs per VM, {settings.runs} runs × {settings.vms:,} VMs",
                (Row("KVM_CREATE_VM + close", vms.ours, vms.c, f"C: n/a ({vms.why_no_c})" if vms.why_no_c else ""),)),
    ]


def _answer(result: int) -> str:
    """`1` or `EINVAL`: the label of what the measured call answers."""
    return describe(result).removesuffix(" (success)")


# ---- parts 2 and 4: whole runs in a subprocess ---------------------------------

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


@dataclass(frozen=True)
class Timed:
    """One finished command: wall seconds, exit code, stdout then stderr."""

    seconds: float
    code: int
    output: str


def timed(argv: Sequence[str]) -> Timed:
    """Wall time of a command run from the project root, with its combined output."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, check=False)
    return Timed(time.perf_counter() - start, done.returncode, done.stdout + done.stderr)


def _last_line(output: str) -> str:
    return (output.strip().splitlines() or ["no output"])[-1][:80]


def cases_detail(output: str) -> str:
    """`1086 cases` from a run's pytest summary; empty when it printed none."""
    cases = case_count(parse_summary(output))
    return f"{cases} cases" if cases else ""


def mutation_detail(output: str) -> str:
    """`44/46 killed` from the mutation run's score line."""
    found = re.search(r"mutation score: (\d+)/(\d+) mutants killed", output)
    return f"{found.group(1)}/{found.group(2)} killed" if found else ""


def run_row(label: str, argv: Sequence[str], runs: int, progress: Progress,
            detail: Callable[[str], str] = cases_detail, exit_1: str = "exit 1: some cases failed") -> Row:
    """A command timed `runs` times, in wall s. Exit 1 is a verdict (failed cases,
    surviving mutants), so the time still counts; any other failure is shown instead."""
    results = []
    for i in range(runs):
        progress(f"{label}: run {i + 1} of {runs}")
        results.append(timed(argv))
        if results[-1].code not in (0, 1):
            return Row(label, note=f"failed: exit {results[-1].code}: {_last_line(results[-1].output)}")
    what = detail(results[-1].output)
    note = exit_1 if any(r.code == 1 for r in results) else ""
    return Row(f"{label} · {what}" if what else label, Figure(tuple(r.seconds for r in results)), note=note)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def suite_section(settings: Settings, reports: Path, progress: Progress) -> Section:
    """Part 2: collection alone, then the suite as `kvmconf run` runs it, serial and on all cores."""
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
               f"--kvm-device={settings.device}", "suites/"]
    progress("collection: pytest --collect-only")
    runs = [timed(collect) for _ in range(settings.suite_runs)]
    if runs[-1].code != 0:
        first = Row("pytest --collect-only", note=f"failed: exit {runs[-1].code}: {_last_line(runs[-1].output)}")
    else:
        cases = parse_collected(runs[-1].output)
        first = Row(f"collection only · {cases} cases", Figure(tuple(r.seconds for r in runs)))
    device = f"--kvm-device={settings.device}"
    rows = (
        first,
        run_row("kvmconf run -n 0", _cli("run", "-n", "0", device, "--reports", str(reports)), settings.suite_runs, progress),
        run_row(f"kvmconf run -n auto ({os.cpu_count() or 1} workers)", _cli("run", "-n", "auto", device, "--reports", str(reports)),
                settings.suite_runs, progress),
    )
    return Section("suite", "Whole suite on this machine", "s", f"wall s, {_runs(settings.suite_runs)}", rows)


def model_section(settings: Settings, reports: Path, progress: Progress) -> Section:
    """Part 4: the suite on the model backend, and the whole mutation run."""
    measure = f"wall s, {_runs(settings.suite_runs)}; mutation run: {_runs(settings.long_runs)}"
    if "model" not in backend_names():
        absent = Row("kvmconf run --backend model", note="n/a: model backend not available")
        return Section("model", "Model backend", "s", measure, (absent, mutation_row(settings, progress)))
    argv = _cli("run", "--backend", "model", "-n", "auto", "--reports", str(reports))
    return Section("model", "Model backend", "s", measure, (
        run_row("kvmconf run --backend model -n auto", argv, settings.suite_runs, progress),
        mutation_row(settings, progress),
    ))


def mutation_row(settings: Settings, progress: Progress) -> Row:
    """Every profile's faithful model and every mutant, as harness.model.mutation runs them."""
    label = "mutation run"
    if not settings.mutation:
        return Row(label, note="skipped: --no-mutation")
    if not (ROOT / "harness" / "model" / "mutation.py").exists():
        return Row(label, note="n/a: no mutation runner (harness/model/mutation.py)")
    return run_row(label, [sys.executable, "-m", "harness.model.mutation"], settings.long_runs, progress,
                   detail=mutation_detail, exit_1="exit 1: survivors or a failing baseline (see the mutation run)")


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


# ---- part 3: the suite in a kernel under QEMU ----------------------------------

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


def find_test_kernel() -> Path | None:
    """The kernel for VM mode: $KVMCONF_TEST_KERNEL, else one in ~/.cache/kvm-kernels,
    Debian's as tools/debian-kernel writes it (a `vmlinuz`) before a built bzImage."""
    given = os.environ.get("KVMCONF_TEST_KERNEL")
    if given:
        return Path(given)
    found = sorted(p for p in KERNEL_CACHE.glob("*") if p.is_dir()) if KERNEL_CACHE.is_dir() else []
    return next((p for p in found if (p / "vmlinuz").is_file()), found[0] if found else None)


def stream(argv: Sequence[str], progress: Progress) -> tuple[int, list[tuple[float, str]]]:
    """Run a command, stamping each output line with the seconds since it started."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(list(argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.append((time.perf_counter() - start, text.rstrip("\n")))
            progress(f"  {lines[-1][0]:6.1f} s  {lines[-1][1][:70]}")
    return proc.returncode, lines


# the suite on the host with the executor in the guest (the default), and all in the guest
VM_MODES: tuple[tuple[str, tuple[str, ...]], ...] = (("executor", ()), ("in guest", ("--in-guest",)))


def vm_mode_section(settings: Settings, reports: Path, progress: Progress) -> Section:
    """Part 3: `kvmconf run --kernel DIR` in both modes, side by side: start to guest ready,
    first case and written report, and the cost of each further case."""
    measure = f"wall s from start, {_runs(settings.long_runs)} per mode"
    kernel = find_test_kernel()
    if kernel is None:
        why = f"skipped: no kernel (set KVMCONF_TEST_KERNEL or put one in {KERNEL_CACHE})"
        return Section("vm_mode", "VM mode under QEMU", "s", measure, (Row("kvmconf run --kernel", note=why),))
    rows: list[Row] = []
    for mode, options in VM_MODES:
        label = f"{kernel.name} {mode}"
        runs: list[BootTimes] = []
        for i in range(settings.long_runs):
            progress(f"VM mode: run {i + 1} of {settings.long_runs}, {label}")
            code, lines = stream(_cli("run", "--kernel", str(kernel), *options, "--reports", str(reports)), progress)
            if code not in (0, 1):
                tail = lines[-1][1][:80] if lines else "no output"
                rows.append(Row(label, note=f"failed: exit {code}: {tail}"))
                break
            runs.append(boot_times(lines))
        else:
            rows += boot_rows(label, runs)
    return Section("vm_mode", "VM mode under QEMU", "s", measure, tuple(rows))


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


# ---- the command ---------------------------------------------------------------


def skipped(key: str, title: str, why: str) -> Section:
    return Section(key, title, "s", "not measured", (Row(why),))


def bench(settings: Settings, progress: Progress) -> BenchReport:
    """Measure everything the settings ask for; no figure is compared to a limit here."""
    started = time.strftime("%Y-%m-%d %H:%M")
    facts = load_facts(DEFAULT_PROFILE, None)
    source = c_source(loops(facts), facts.ioctls["KVM_CREATE_VM"].number)
    with tempfile.TemporaryDirectory(prefix="kvmconf-bench-") as tmp:
        work = Path(tmp)
        sections = ioctl_sections(settings, facts, source, work, progress)
        runs_dir = work / "reports"  # the runs' own report folders: thrown away with tmp
        if settings.suite:
            sections.append(suite_section(settings, runs_dir, progress))
        else:
            sections.append(skipped("suite", "Whole suite", "skipped: --no-suite"))
        if settings.vm_mode:
            sections.append(vm_mode_section(settings, runs_dir, progress))
        else:
            sections.append(skipped("vm_mode", "VM mode under QEMU", "skipped: --no-vm"))
        if settings.suite:
            sections.append(model_section(settings, runs_dir, progress))
        else:
            sections.append(skipped("model", "Model backend", "skipped: --no-suite"))
    return BenchReport(this_machine(), started, settings, tuple(sections), source)


def _positive(text: str) -> int:
    value = int(text.replace(",", "").replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`kvmconf bench` and its options (registered by harness/cli.py)."""
    p = sub.add_parser(
        "bench", help="measure the suite's speed against a C baseline (prints a table, saves JSON)",
        description="Measure the harness's ioctl cost against a C loop built with gcc -O2 (CPU µs per call), "
                    "a VM's creation (wall µs), the whole suite serial and on all cores (wall s), the suite "
                    "under QEMU (wall s) and on the model backend (wall s). Each figure is the minimum and "
                    "median over its runs. The table goes to stdout and, as JSON, to REPORTS/bench/<run>/.")
    p.add_argument("--runs", type=_positive, default=DEFAULT_RUNS, metavar="N",
                   help=f"runs of each per-ioctl and VM-creation figure (default: {DEFAULT_RUNS})")
    p.add_argument("--calls", type=_positive, default=DEFAULT_CALLS, metavar="N",
                   help=f"ioctl calls per run, timed together (default: {DEFAULT_CALLS:,})")
    p.add_argument("--vms", type=_positive, default=DEFAULT_VMS, metavar="N",
                   help=f"VMs created and closed per run (default: {DEFAULT_VMS:,})")
    p.add_argument("--suite-runs", type=_positive, default=DEFAULT_SUITE_RUNS, metavar="N",
                   help=f"runs of each whole-suite figure: collection, serial, all cores, model (default: {DEFAULT_SUITE_RUNS})")
    p.add_argument("--long-runs", type=_positive, default=DEFAULT_LONG_RUNS, metavar="N",
                   help=f"runs of the figures that take minutes: the suite under QEMU, the mutation run (default: {DEFAULT_LONG_RUNS})")
    p.add_argument("--no-suite", action="store_true", help="skip every whole-suite run: serial, all cores, model, mutation")
    p.add_argument("--no-vm", action="store_true", help="skip the run under QEMU (slow: TCG)")
    p.add_argument("--no-mutation", action="store_true", help="skip the mutation run (minutes)")
    p.add_argument("--kvm-device", default="/dev/kvm", metavar="PATH", help="KVM device node (default: /dev/kvm)")
    p.add_argument("--reports", default=str(REPORTS), metavar="DIR", help="the JSON goes to DIR/bench/<run>/ (default: reports/)")


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure, print the table, then publish it with its JSON: a bench that breaks leaves no folder."""
    check_device(args.kvm_device)
    settings = Settings(device=args.kvm_device, runs=args.runs, calls=args.calls, vms=args.vms,
                        suite_runs=args.suite_runs, long_runs=args.long_runs, suite=not args.no_suite, vm_mode=not args.no_vm,
                        mutation=not args.no_mutation)
    folder = RunFolder(Path(args.reports) / "bench")  # apart from the conformance runs and their `latest`

    def progress(text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    try:
        report = bench(settings, progress)
    except BaseException:
        folder.abandon()
        raise
    table = format_table(report)
    (folder.path / "bench.json").write_text(json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n")
    (folder.path / "bench.txt").write_text(table)
    (folder.path / "bench_loop.c").write_text(report.c_source)
    print(table, end="")
    print(f"bench: {folder.finish() / 'bench.json'}")
    return 0

