"""Bench part 3: the suite against a kernel booted under QEMU, in both modes (the suite on
the host with the executor in the guest, and the suite in the guest)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from harness.cli.bench.runs import cli_argv
from harness.paths import ROOT
from harness.report.bench import BootTimes, Progress, Row, Section, Settings, boot_rows, boot_times, runs_phrase

KERNEL_CACHE = Path.home() / ".cache" / "kvm-kernels"


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


VM_MODES: tuple[tuple[str, tuple[str, ...]], ...] = (("executor", ()), ("in guest", ("--in-guest",)))


def vm_mode_section(settings: Settings, reports: Path, progress: Progress) -> Section:
    """Part 3: `kvmconf run --kernel DIR` in both modes, side by side: start to guest ready,
    first case and written report, and the cost of each further case."""
    measure = f"wall s from start, {runs_phrase(settings.long_runs)} per mode"
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
            code, lines = stream(cli_argv("run", "--kernel", str(kernel), *options, "--reports", str(reports)), progress)
            if code not in (0, 1):
                tail = lines[-1][1][:80] if lines else "no output"
                rows.append(Row(label, note=f"failed: exit {code}: {tail}"))
                break
            runs.append(boot_times(lines))
        else:
            rows += boot_rows(label, runs)
    return Section("vm_mode", "VM mode under QEMU", "s", measure, tuple(rows))
