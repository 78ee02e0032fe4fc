"""`kvmconf`: run the conformance suite, or the project's own tests.

Bad input ends with one line on stderr and a distinct exit code (see README); no
traceback, and no half-written run folder under reports/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

from harness.abi.profile import DEFAULT_PROFILE, known_profiles, load_profile
from harness.cases.expectations import load as load_expectations
from harness.cli.bench import add_parser as add_bench_parser
from harness.cli.bench import cmd_bench
from harness.cli.preflight import check_collection, collection_args
from harness.cli.runs import RunFolder
from harness.cli.vmrun import run_under_qemu, validate_kernel
from harness.errors import KvmconfError
from harness.paths import REPORTS, ROOT
from harness.report.compare import add_parser as add_compare_parser
from harness.report.compare import run as cmd_compare
from harness.session.backends import backend_names, check_mutant
from harness.session.interrupts import INTERRUPTED, run_suite
from harness.session.target import check_device, load_facts

EPILOG = ("Exit codes: pytest's (0 passed, 1 a check failed, 2 collection errors, 5 no cases), 130 interrupted, "
          "or kvmconf's for bad input (README: Exit codes).")


def _absolute(text: str) -> str:
    """A path argument as the user meant it: kvmconf runs from the project's root."""
    return text if text == "none" else os.path.abspath(text)


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="test this machine's kernel and write the reports", epilog=EPILOG)
    p.add_argument("--kvm-device", default="/dev/kvm", type=_absolute, metavar="PATH", help="KVM device node (default: /dev/kvm)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, metavar="NAME",
                   help=f"uAPI revision: {', '.join(known_profiles())} (default: {DEFAULT_PROFILE})")
    p.add_argument("--kvm-header", type=_absolute, metavar="PATH",
                   help="a kernel's uapi linux/kvm.h, probed with gcc; overrides the profile's numbers")
    p.add_argument("--expectations", type=_absolute, metavar="PATH",
                   help="known findings (TOML); default: the file in expectations/ matching uname -r; 'none' for no file")
    p.add_argument("--backend", default="kernel", choices=backend_names(), help="what answers the calls (default: kernel)")
    p.add_argument("--mutant", metavar="NAME", help="with --backend model: a deliberate deviation of the model")
    p.add_argument("-n", "--workers", default="auto", metavar="N",
                   help="parallel pytest-xdist workers: a number, 0 for none, or auto = one per core (default: auto)")
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="only cases whose id matches this pytest -k expression")
    p.add_argument("--reports", default=str(REPORTS), type=_absolute, metavar="DIR", help="where run folders go (default: reports/)")
    p.add_argument("--case-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                   help="a case still running after this long is reported as a hang and the run goes on; 0: no limit (default: 30)")
    q = p.add_argument_group("a kernel booted under QEMU")
    q.add_argument("--kernel", type=_absolute, metavar="PATH",
                   help="boot PATH under QEMU and run the suite inside it: a folder as tools/debian-kernel writes it, or a bzImage")
    q.add_argument("--accel", choices=("kvm", "tcg"),
                   help="QEMU accelerator (default: kvm when the host's KVM offers nested virtualization, else tcg)")
    q.add_argument("--in-guest", action="store_true", help="run pytest inside the guest over a 9p root (the older, slower mode)")
    q.add_argument("--guest-workers", default="0", metavar="N",
                   help="pytest-xdist workers inside the guest (default: 0; each worker starts Python under emulation)")
    q.add_argument("--guest-timeout", type=_seconds, default=1800.0, metavar="SECONDS",
                   help="the whole guest run, boot included, is stopped after this long (default: 1800)")
    p.add_argument("--fuzz-examples", type=int, metavar="N",
                   help="property-based cases: N random examples each instead of CI's fixed 100")
    p.add_argument("--output-dir", metavar="DIR", help=argparse.SUPPRESS)  # the guest's side of --kernel
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kvmconf", description="Conformance suite for the KVM memory-attributes and guest_memfd uAPI.")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    t = sub.add_parser("test", help="run the project's own tests (no kernel needed for most)")
    t.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k EXPR, -x)")
    add_bench_parser(sub)
    add_compare_parser(sub)
    return parser


def validate(args: argparse.Namespace) -> None:
    """Everything a user can get wrong, checked before a run folder exists."""
    if args.kernel:
        validate_kernel(args)
    load_profile(args.profile)  # an unknown profile is named before gcc probes a header
    load_facts(args.profile, args.kvm_header)
    if args.expectations and args.expectations != "none":
        load_expectations(Path(args.expectations))
    if args.mutant:
        check_mutant(args.backend, args.mutant)
    if args.kernel or args.output_dir:
        return  # the device and the cases are the guest's; it checks them itself
    if args.backend == "kernel":
        check_device(args.kvm_device)
    check_collection(args)  # e.g. findings that name no case: known only once the cases are collected


def suite_args(args: argparse.Namespace, out: Path) -> list[str]:
    argv = [
        str(ROOT / "suites"),
        f"--rootdir={ROOT}",
        "-p", "no:cacheprovider",
        *collection_args(args),
        f"--kvmconf-run-dir={out}",  # harness.session.report_plugin: report.html, junit.xml, results.jsonl, results.ktap, kcidb.json
        "-q",
        f"--timeout={args.case_timeout:g}", "--timeout-method=signal",  # harness.session.health names it a hang
    ]
    if args.fuzz_examples:
        argv.append(f"--fuzz-examples={args.fuzz_examples}")
    if args.workers not in ("0", "1"):
        argv += ["-n", args.workers]
    if args.keyword:
        argv += ["-k", args.keyword]
    return argv + list(args.pytest_args)


def cmd_run(args: argparse.Namespace) -> int:
    validate(args)
    if args.kernel:
        return run_under_qemu(args)
    if args.output_dir:  # inside the guest: the host owns the run folder
        return int(pytest.main(suite_args(args, Path(args.output_dir))))
    run = RunFolder(Path(args.reports))
    code = run_suite(run, suite_args(args, run.path))
    if code == INTERRUPTED:  # the folder is marked incomplete and the unfinished cases named
        return code
    if code in (3, 4) or code >= 9:  # internal or usage error: nothing worth keeping
        run.abandon()
        return code
    if code == 2:  # pytest stopped early (collection errors): the reports cover only what ran
        print(f"reports (incomplete): {run.mark_incomplete('pytest stopped before running every case (exit 2: collection errors)')}")
        return code
    final = run.finish()
    print(f"reports: {final}")
    return code


def cmd_test(args: argparse.Namespace) -> int:
    return int(pytest.main([str(ROOT / "tests"), f"--rootdir={ROOT}", *args.pytest_args]))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.pytest_args = [*extra, *args.pytest_args]
    os.chdir(ROOT)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "compare":
            return cmd_compare(args)
        return cmd_test(args)
    except KvmconfError as e:
        print(f"kvmconf: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("kvmconf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
