"""`kvmconf run --kernel PATH`: the same suite, against a kernel booted under QEMU.

Two modes. By default the suite stays on the host, at host speed: the guest's
initramfs starts only the executor, and `kvmconf run --backend remote` here makes its
system calls through it (harness/remote). With `--in-guest` (the older mode) the guest
mounts the host's root over 9p and runs the whole pytest session itself. Either way the
host checks the inputs, probes the header once (the guest, or the host-side run, gets the
facts as a probe record in the run folder, never the header's path, and no gcc runs under
emulation), prints the console header, creates the run folder and boots the kernel; the
reports are written straight into the run folder, which the host then publishes.
"""

from __future__ import annotations

import argparse
import compileall
import re
import subprocess
import sys
import time
from pathlib import Path

from harness.cases.expectations import for_release
from harness.cli.runs import RunFolder
from harness.host.header import write_record
from harness.paths import ROOT
from harness.qemu.accel import Accel, host_accel, parse_accel
from harness.qemu.errors import GuestError
from harness.qemu.kernel import KernelImage, find_kernel
from harness.qemu.runner import GuestResult, build_init, qemu_binary, run_in_qemu, run_with_executor
from harness.session.header_block import header_lines

_FIRST_CASE = re.compile(r"^1/\d+ cases$")
# TCG interprets the guest ~10-16 times slower than hardware: a case's time limit
# follows, so a slow case is not called a hang (a real hang still is, later).
TCG_SLOWDOWN = 10
PROBE_RECORD = "header-probe.json"
# KCIDB checkout fields (`kvmconf run` options) that a git kernel tree fills in
_CHECKOUT_GIT = {"tree_name": ["describe", "--always", "--tags"], "git_commit": ["rev-parse", "HEAD"],
                 "git_url": ["remote", "get-url", "origin"]}


def validate_kernel(args: argparse.Namespace) -> None:
    """The kernel is bootable, QEMU is there and gcc built the guest's init (once, cached),
    all before a run folder exists; the header found beside the image (a debian-kernel
    folder's, a build-kernel folder's, a kernel tree's) is used unless --kvm-header names one."""
    image = find_kernel(Path(args.kernel))
    qemu_binary()
    build_init()
    header = Path(args.kvm_header) if args.kvm_header else image.header
    args.kvm_header = str(header.resolve()) if header is not None else None


def case_timeout(seconds: float, accel: Accel) -> float:
    """The per-case limit in the guest: `seconds` of real hardware, scaled under TCG."""
    return seconds * TCG_SLOWDOWN if accel == "tcg" else seconds


def git_checkout(tree: Path) -> dict[str, str]:
    """The tree's `git describe`, commit and remote, as far as git knows them. No
    config of the tree may run a program here (core.fsmonitor), and no hook runs."""
    found: dict[str, str] = {}
    for key, command in _CHECKOUT_GIT.items():
        try:
            done = subprocess.run(["git", "-c", "core.fsmonitor=false", "-C", str(tree), *command],
                                  capture_output=True, text=True, errors="replace", timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return found
        if done.returncode == 0 and done.stdout.strip():
            found[key] = done.stdout.strip()
    return found


def guest_argv(args: argparse.Namespace, out: Path, accel: Accel, checkout: dict[str, str]) -> list[str]:
    """`kvmconf run` for the guest: the same options, reports into the shared folder,
    the header's probe record for the header, the case timeout for the accelerator."""
    argv = [sys.executable, "-m", "harness.cli", "run", f"--output-dir={out}", f"--profile={args.profile}",
            f"--workers={args.guest_workers}", f"--case-timeout={case_timeout(args.case_timeout, accel):g}",
            f"--backend={args.backend}"]
    if args.mutant:
        argv.append(f"--mutant={args.mutant}")
    if args.kvm_header:
        argv.append(f"--kvm-header={out / PROBE_RECORD}")
    for key, value in checkout.items():  # the options exist once the report takes them
        if hasattr(args, key):
            argv.append(f"--{key.replace('_', '-')}={getattr(args, key) or value}")
    if args.expectations:
        exp = args.expectations if args.expectations == "none" else str(Path(args.expectations).resolve())
        argv.append(f"--expectations={exp}")
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.fuzz_examples:
        argv.append(f"--fuzz-examples={args.fuzz_examples}")
    return [*argv, "--", f"--profile-reason={args.profile_reason}", *args.pytest_args]


def console_header(args: argparse.Namespace, image: KernelImage, accel: Accel, checkout: dict[str, str]) -> list[str]:
    """The block the guest's suite would print, said on the host before the boot."""
    kernel = image.release or image.image.name
    if image.tree is not None:
        kernel += f" (tree {image.tree}" + (f", {checkout['tree_name']})" if "tree_name" in checkout else ")")
    limit = case_timeout(args.case_timeout, accel)
    runs = f"QEMU ({accel}), case timeout {limit:g} s" if limit else f"QEMU ({accel}), no case timeout"
    if accel == "tcg" and limit:
        runs += f" ({args.case_timeout:g} s x {TCG_SLOWDOWN} under TCG)"
    abi = f"header {args.kvm_header}" if args.kvm_header else f"profile {args.profile}"
    if args.expectations:
        expectations = str(args.expectations)
    else:
        expectations = (for_release(image.release).path or "none") if args.backend == "kernel" else "none"
    return header_lines(kernel, runs, abi, args.profile_reason, args.backend, expectations)


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


def host_argv(args: argparse.Namespace, out: Path, accel: Accel, checkout: dict[str, str], release: str | None) -> list[str]:
    """`kvmconf run` on the host against the guest's executor: the guest's argv with the
    remote backend, one process (the executor serves one channel), and the expectations
    file of the kernel's release, which the plugin picks by itself only for the kernel
    backend."""
    argv = [a for a in guest_argv(args, out, accel, checkout) if not a.startswith(("--workers=", "--backend="))]
    argv[4:4] = ["--workers=0", "--backend=remote"]
    if not args.expectations:
        found = for_release(release).path if release else None
        if found is not None:
            argv.insert(6, f"--expectations={found}")
    return argv


def boot_and_run(args: argparse.Namespace, out: Path, progress: _Console, accel: Accel, checkout: dict[str, str],
                 image: KernelImage) -> GuestResult:
    """The suite against the kernel under QEMU, in the mode `--in-guest` chooses."""
    if not args.in_guest:
        return run_with_executor(Path(args.kernel), host_argv(args, out, accel, checkout, image.release), out, accel=accel,
                                 timeout_s=args.guest_timeout, progress=progress)
    # the guest sees the tree read-only and interprets 16 times slower: give it bytecode
    for tree in ("harness", "suites"):
        compileall.compile_dir(ROOT / tree, quiet=1)
    compileall.compile_file(ROOT / "conftest.py", quiet=1)
    return run_in_qemu(Path(args.kernel), guest_argv(args, out, accel, checkout), out, accel=accel,
                       timeout_s=args.guest_timeout, progress=progress)


def run_under_qemu(args: argparse.Namespace) -> tuple[int, Path | None]:
    """Boot, run, publish: the exit status and the published run folder (None when the
    run is incomplete); a boot failure is one line, its exit code, and the folder kept
    as incomplete with the console log."""
    image = find_kernel(Path(args.kernel))
    accel = parse_accel(args.accel) if args.accel else host_accel()
    checkout = git_checkout(image.tree) if image.tree is not None else {}
    print("\n".join(console_header(args, image, accel, checkout)), flush=True)
    run = RunFolder(Path(args.reports))
    console = _Console()
    try:
        if args.kvm_header:
            write_record(Path(args.kvm_header), run.path / PROBE_RECORD)
        result = boot_and_run(args, run.path, console, accel, checkout, image)
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
        final = run.finish()
        print(f"reports: {final}")
        return code, final
    print(f"reports (incomplete): {run.mark_incomplete(f'the suite in the guest ended with exit status {code}')}")
    return code, None


