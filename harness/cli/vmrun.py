"""`kvmconf run --kernel PATH`: the same suite, inside a kernel booted under QEMU.

The host checks the inputs, probes the header (so the guest reads the probe from the
shared cache instead of running gcc under emulation), creates the run folder and
boots the kernel; the guest runs `kvmconf run --output-dir` against its own /dev/kvm
and writes the reports straight into the run folder, which the host then publishes.
"""

from __future__ import annotations

import argparse
import compileall
import re
import sys
import time
from pathlib import Path

from harness.cli.runs import RunFolder
from harness.paths import ROOT
from harness.qemu.errors import GuestError, NotBootableKernelError
from harness.qemu.kernel import find_kernel
from harness.qemu.runner import build_init, qemu_binary, run_in_qemu

_FIRST_CASE = re.compile(r"^1/\d+ cases$")


def kernel_header(args: argparse.Namespace) -> str | None:
    """--kvm-header, else the header of a kernel folder as debian-kernel writes it."""
    if args.kvm_header:
        return str(Path(args.kvm_header).resolve())
    folder = Path(args.kernel)
    header = folder / "include" / "linux" / "kvm.h"
    return str(header.resolve()) if folder.is_dir() and header.is_file() else None


def validate_kernel(args: argparse.Namespace) -> None:
    """The kernel is bootable, QEMU is there and gcc built the guest's init (once, cached),
    all before a run folder exists; the header found in the kernel's folder is used."""
    kernel = Path(args.kernel)
    if kernel.exists() and not (kernel.is_file() or kernel.is_dir()):  # a FIFO would block the read forever
        raise NotBootableKernelError(f"{kernel}: not a regular file or a folder, so not a kernel image")
    find_kernel(kernel)
    qemu_binary()
    build_init()
    args.kvm_header = kernel_header(args)


def guest_argv(args: argparse.Namespace, out: Path) -> list[str]:
    """`kvmconf run` for the guest: the same options, reports into the shared folder."""
    argv = [sys.executable, "-m", "harness.cli", "run", f"--output-dir={out}", f"--profile={args.profile}",
            f"--workers={args.guest_workers}", f"--case-timeout={args.case_timeout:g}"]
    if args.kvm_header:
        argv.append(f"--kvm-header={args.kvm_header}")
    if args.expectations:
        exp = args.expectations if args.expectations == "none" else str(Path(args.expectations).resolve())
        argv.append(f"--expectations={exp}")
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.fuzz_examples:
        argv.append(f"--fuzz-examples={args.fuzz_examples}")
    if args.pytest_args:
        argv += ["--", *args.pytest_args]
    return argv


class _Console:
    """Prints the runner's progress, and when the first case finished."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.first_case_s: float | None = None

    def __call__(self, line: str) -> None:
        if self.first_case_s is None and _FIRST_CASE.match(line):
            self.first_case_s = time.monotonic() - self.start
            print(f"first case finished {self.first_case_s:.1f} s after QEMU started", flush=True)
        print(line, flush=True)


def run_under_qemu(args: argparse.Namespace) -> int:
    """Boot, run, publish; a boot failure is one line, its exit code, and the folder
    kept as incomplete with the console log."""
    # the guest sees the tree read-only and interprets 16 times slower: give it bytecode
    for tree in ("harness", "suites"):
        compileall.compile_dir(ROOT / tree, quiet=1)
    compileall.compile_file(ROOT / "conftest.py", quiet=1)
    run = RunFolder(Path(args.reports))
    console = _Console()
    try:
        result = run_in_qemu(Path(args.kernel), guest_argv(args, run.path), run.path, accel=args.accel,
                             timeout_s=args.guest_timeout, progress=console)
    except GuestError as e:
        kept = run.mark_incomplete(str(e))
        raise type(e)(f"{e.message} (console log: {kept / 'console.log'})") from None
    except BaseException:
        run.mark_incomplete("the QEMU run stopped before the guest finished")
        raise
    code = result.exit_status
    report_s = time.monotonic() - console.start
    first = f"{console.first_case_s:.1f} s" if console.first_case_s is not None else "n/a"
    print(f"{result.kernel_release} under QEMU ({result.accel}): guest ready after {result.ready_s:.1f} s, "
          f"first case after {first}, report written after {report_s:.1f} s")
    if code in (0, 1) and (run.path / "report.html").is_file():
        print(f"reports: {run.finish()}")
    else:
        print(f"reports (incomplete): {run.mark_incomplete(f'the suite in the guest ended with exit status {code}')}")
    return code


