"""Bench part 1: one harness ioctl (`KvmFd.raw`, the path every case takes) against the
same ioctl in a C loop built from the ABI facts with gcc -O2, and a VM's creation."""

from __future__ import annotations

import ctypes
import errno
import itertools
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from harness.abi.facts import AbiFacts
from harness.errors import GccMissing
from harness.host.backend import KernelBackend, describe
from harness.host.fds import Kvm, KvmFd
from harness.report.bench import Figure, Progress, Row, Section, Settings, loops, parse_c_output


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
