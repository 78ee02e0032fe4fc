"""`kvmconf bench`: how fast the suite is, measured against a C baseline and printed.

Reviewers rerun the suite on every patch revision and CI on every kernel, so its speed
matters; a timed assertion would only make tests flaky, so the figures are measured,
printed and saved (reports/bench/<run>/bench.json) instead. Four parts, one module each
beside this command: `ioctls` (one harness ioctl against the same ioctl in a C loop, and
a VM's creation), `runs` (the whole suite serial and on all cores; the model backend
and the mutation run), `vm` (the suite against a kernel under QEMU, both modes); the
figures, their table and JSON, and the parsing of what the programs print are pure
(`harness.report.bench`).

Per-ioctl costs are the calling thread's CPU time on both sides: on a shared machine
the time spent waiting for a core is nobody's cost, and CPU time leaves it out. What
can sleep (VM creation, whole runs) is wall time. Each figure is the minimum and the
median over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from harness.abi.profile import DEFAULT_PROFILE
from harness.cli.bench.ioctls import ioctl_sections
from harness.cli.bench.runs import model_section, suite_section
from harness.cli.bench.vm import vm_mode_section
from harness.cli.runs import RunFolder
from harness.host.device import check_device
from harness.paths import REPORTS
from harness.report.bench import (
    DEFAULT_CALLS,
    DEFAULT_LONG_RUNS,
    DEFAULT_RUNS,
    DEFAULT_SUITE_RUNS,
    DEFAULT_VMS,
    BenchReport,
    Machine,
    Progress,
    Settings,
    c_source,
    cpu_model,
    format_table,
    loops,
    skipped,
    to_json,
)
from harness.session.target import load_facts


def this_machine() -> Machine:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return Machine(cores=os.cpu_count() or 1, kernel=os.uname().release, cpu=cpu_model(cpuinfo))


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
