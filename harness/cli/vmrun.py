"""`kvmconf run --kernel PATH`: the same suite, against a kernel booted under QEMU.

Two modes. By default the suite stays on the host, at host speed: the guest's
initramfs starts only the executor, and `kvmconf run --backend remote` here makes its
system calls through it (harness/remote). With `--in-guest` (the older mode) the guest
mounts the host's root over 9p and runs the whole pytest session itself. Either way the
host checks the inputs, probes the header, creates the run folder and boots the kernel,
and the reports are written straight into the run folder, which the host publishes.
"""

from __future__ import annotations

import argparse
import compileall
import re
import sys
import time
from pathlib import Path

from harness.cases.expectations import for_release
from harness.cli.runs import RunFolder
from harness.host.backend import KernelBackend
from harness.paths import ROOT
from harness.qemu.errors import GuestError
from harness.qemu.kernel import find_kernel
from harness.qemu.runner import GuestResult, qemu_binary, run_in_qemu, run_with_executor

_FIRST_CASE = re.compile(r"^1/\d+ cases$")


def kernel_header(args: argparse.Namespace) -> str | None:
    """--kvm-header, else the header of a kernel folder as debian-kernel writes it."""
    if args.kvm_header:
        return str(Path(args.kvm_header).resolve())
    folder = Path(args.kernel)
    header = folder / "include" / "linux" / "kvm.h"
    return str(header.resolve()) if folder.is_dir() and header.is_file() else None


def validate_kernel(args: argparse.Namespace) -> None:
    """The kernel is bootable and QEMU is there; the header found in its folder is used."""
    find_kernel(Path(args.kernel))
    qemu_binary()
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


def host_argv(args: argparse.Namespace, out: Path) -> list[str]:
    """`kvmconf run` on the host against the guest's executor: the guest's argv with the
    remote backend, one process (the executor serves one channel), and the expectations
    file of the kernel's release, which the plugin picks by itself only for the kernel
    backend."""
    argv = [a if not a.startswith("--workers=") else "--workers=0" for a in guest_argv(args, out)]
    argv.insert(4, "--backend=remote")
    if not args.expectations:
        found = for_release(find_kernel(Path(args.kernel)).release).path
        if found is not None:
            argv.insert(5, f"--expectations={found}")
    return argv


def engine_places_through_backend() -> bool:
    """Whether the engine lays out user memory through `backend.memory` (KernelBackend has
    one then): until it does, its structs live in the host process, where the executor
    cannot see them. Goes once harness/session/engine.py does so on main."""
    return hasattr(KernelBackend(), "memory")


def boot_and_run(args: argparse.Namespace, out: Path, progress: _Console) -> GuestResult:
    """The suite against the kernel under QEMU, in the mode `--in-guest` chooses."""
    if not args.in_guest and not engine_places_through_backend():
        print("kvmconf: the engine still places structs in this process: running the suite in the guest")
    elif not args.in_guest:
        return run_with_executor(Path(args.kernel), host_argv(args, out), out, accel=args.accel,
                                 timeout_s=args.guest_timeout, progress=progress)
    # the guest sees the tree read-only and interprets 16 times slower: give it bytecode
    for tree in ("harness", "suites"):
        compileall.compile_dir(ROOT / tree, quiet=1)
    compileall.compile_file(ROOT / "conftest.py", quiet=1)
    return run_in_qemu(Path(args.kernel), guest_argv(args, out), out, accel=args.accel,
                       timeout_s=args.guest_timeout, progress=progress)


def run_under_qemu(args: argparse.Namespace) -> int:
    """Boot, run, publish; a boot failure is one line, its exit code, and the folder
    kept as incomplete with the console log."""
    run = RunFolder(Path(args.reports))
    console = _Console()
    try:
        result = boot_and_run(args, run.path, console)
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


