"""`kvmconf`: run the conformance suite, or the project's own tests.

Bad input ends with one line on stderr and its exit code (`harness.errors.EXIT_CODES`,
shown in the README); no traceback, and no half-written run folder under reports/.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn

import pytest
from _pytest.mark.expression import Expression

from harness.abi.profile import DEFAULT_PROFILE, known_profiles
from harness.cases.expectations import load as load_expectations
from harness.cli.bench.command import add_parser as add_bench_parser
from harness.cli.bench.command import cmd_bench
from harness.cli.compare import add_parser as add_compare_parser
from harness.cli.compare import load as load_run
from harness.cli.compare import run as cmd_compare
from harness.cli.preflight import check_collection, collection_args
from harness.cli.runs import CACHE_DIR, RunFolder, prune
from harness.cli.vmrun import run_under_qemu, validate_kernel
from harness.errors import KvmconfError, NothingSelected, UsageError
from harness.host.device import check_device
from harness.host.header import resolve_profile
from harness.paths import REPORTS, ROOT
from harness.session.backends import backend_names, check_mutant
from harness.session.interrupts import INTERRUPTED, SuiteRun, report_interrupted, run_suite, stop_signals
from harness.session.target import load_facts

EPILOG = ("Exit codes: 0 every case passed, 1 a case failed, 2 collection errors, 4 usage, 5 no case selected, "
          "130 interrupted, 10 and up a bad input of its own (README: Exit codes).")
MAX_SECONDS = 7 * 24 * 3600.0  # pytest-timeout and the guest's timer take a C time: a week is plenty
COLLECT_ONLY = {"--collect-only", "--co"}
VERBOSITY = re.compile(r"^(?:-[vq]+|--verbose|--quiet|--verbosity(?:=.*)?)$")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 4 (usage), like every bad input;
    its own exit 2 is pytest's code for collection errors."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _version() -> str:
    try:
        return version("kvmconf")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _absolute(text: str) -> str:
    """A path argument as the user meant it: kvmconf runs from the project's root."""
    return text if text == "none" else os.path.abspath(text)


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="test this machine's kernel and write the reports", epilog=EPILOG)
    p.add_argument("--kvm-device", default="/dev/kvm", type=_absolute, metavar="PATH", help="KVM device node (default: /dev/kvm)")
    p.add_argument("--profile", metavar="NAME",
                   help=f"uAPI revision: {', '.join(known_profiles())} (default: the one the header matches, "
                        f"else {DEFAULT_PROFILE})")
    p.add_argument("--kvm-header", type=_absolute, metavar="PATH",
                   help="a kernel's uapi linux/kvm.h, probed with gcc; overrides the profile's numbers")
    p.add_argument("--expectations", type=_absolute, metavar="PATH",
                   help="known findings (TOML); default: the file in expectations/ matching uname -r; 'none' for no file")
    p.add_argument("--backend", default="kernel", choices=backend_names(), help="what answers the calls (default: kernel)")
    p.add_argument("--mutant", metavar="NAME", help="with --backend model: a deliberate deviation of the model")
    p.add_argument("-n", "--workers", default="auto", type=_workers, metavar="N",
                   help="parallel pytest-xdist workers: a number, 0 for none, or auto = one per core (default: auto)")
    p.add_argument("-k", dest="keyword", type=_keyword, metavar="EXPR", help="only cases whose id matches this pytest -k expression")
    p.add_argument("--reports", default=str(REPORTS), type=_absolute, metavar="DIR", help="where run folders go (default: reports/)")
    p.add_argument("--case-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                   help="a case still running after this long is reported as a hang and the run goes on; 0: no limit (default: 30)")
    p.add_argument("--keep", type=_count, metavar="N",
                   help="after the run, remove all but the N newest run folders, and folders left by runs that died "
                        "(never the newest, nor the one reports/latest names; default: remove nothing)")
    q = p.add_argument_group("a kernel booted under QEMU")
    q.add_argument("--kernel", type=_absolute, metavar="PATH",
                   help="boot PATH under QEMU and run the suite inside it: a folder as tools/debian-kernel writes it, "
                        "a bzImage, or a built kernel tree (its header is used, and its profile chosen)")
    q.add_argument("--accel", choices=("kvm", "tcg"),
                   help="QEMU accelerator (default: kvm when the host's KVM offers nested virtualization, else tcg)")
    q.add_argument("--in-guest", action="store_true", help="run pytest inside the guest over a 9p root (the older, slower mode)")
    q.add_argument("--guest-workers", default="0", type=_workers, metavar="N",
                   help="pytest-xdist workers inside the guest (default: 0; each worker starts Python under emulation)")
    q.add_argument("--guest-timeout", type=_seconds, default=1800.0, metavar="SECONDS",
                   help="the whole guest run, boot included, is stopped after this long (default: 1800)")
    p.add_argument("--fuzz-examples", type=_count, metavar="N",
                   help="property-based cases: N random examples each instead of CI's fixed 100")
    p.add_argument("--compare-with", type=_absolute, metavar="RUN",
                   help="end with the comparison against RUN (the base kernel's run folder or results.jsonl); "
                        "exit 1 when this run has a new failure against it, else 0")
    p.add_argument("--output-dir", metavar="DIR", help=argparse.SUPPRESS)  # the guest's side of --kernel
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after -- (e.g. -- -x -v --lf)")


def _seconds(text: str) -> float:
    """A number of seconds a timer can hold: finite, 0 to a week."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to {MAX_SECONDS:g}")
    return value


def _count(text: str) -> int:
    """A whole number from 1 up (0 examples or 0 kept folders would mean nothing)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 up")
    return value


def _workers(text: str) -> str:
    """pytest-xdist's worker count: auto, or a whole number from 0 up."""
    if text != "auto" and not (text.isdigit() and text.isascii()):
        raise argparse.ArgumentTypeError(f"{text!r} is not auto or a whole number from 0 up")
    return text


def _keyword(text: str) -> str:
    """A -k expression pytest can compile, checked here: inside an xdist worker it is an INTERNALERROR."""
    try:
        Expression.compile(text)
    except Exception as e:  # SyntaxError since pytest 8.4, its own ParseError before
        raise argparse.ArgumentTypeError(f"{text!r} is not a pytest -k expression ({getattr(e, 'msg', e)})") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kvmconf", description="Conformance suite for the KVM memory-attributes and guest_memfd uAPI.")
    parser.add_argument("--version", action="version", version=f"kvmconf {_version()}")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(dest="command", required=True)  # type: ignore[assignment]
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
    args.profile, args.profile_reason = resolve_profile(args.profile, args.kvm_header)
    load_facts(args.profile, args.kvm_header)
    if args.compare_with:
        load_run(Path(args.compare_with))
    if args.expectations and args.expectations != "none":
        load_expectations(Path(args.expectations))
    if args.mutant:
        check_mutant(args.backend, args.mutant)
    if args.kernel or args.output_dir:
        return  # the device and the cases are the guest's; it checks them itself
    if args.backend == "kernel":
        check_device(args.kvm_device)
    check_collection(args)  # e.g. findings that name no case: known only once the cases are collected


def suite_args(args: argparse.Namespace, out: Path | None) -> list[str]:
    """pytest's arguments for the suites, reporting into `out` (None: no reports)."""
    argv = [
        str(ROOT / "suites"),
        f"--rootdir={ROOT}",
        *collection_args(args),
        f"--timeout={args.case_timeout:g}", "--timeout-method=signal",  # harness.session.health names it a hang
    ]
    if out is not None:  # harness.session.report_plugin: report.html, junit.xml, results.jsonl, results.ktap, kcidb.json
        argv.append(f"--kvmconf-run-dir={out}")
    if args.output_dir:  # the guest sees the project read-only: no cache, so no --lf there
        argv += ["-p", "no:cacheprovider"]
    else:  # --lf and --ff read it (pyproject's addopts, which turn it off for the project's tests, do not apply here)
        argv += ["-o", "addopts=", "-o", f"cache_dir={Path(args.reports) / CACHE_DIR}"]
    if not any(VERBOSITY.match(a) for a in args.pytest_args):
        argv.append("-q")  # the user's -v or -q decides instead
    if args.fuzz_examples:
        argv.append(f"--fuzz-examples={args.fuzz_examples}")
    if args.workers not in ("0", "1"):
        argv += ["-n", args.workers]
    if args.keyword:
        argv += ["-k", args.keyword]
    return [*argv, f"--profile-reason={args.profile_reason}", *args.pytest_args]


def cmd_run(args: argparse.Namespace) -> int:
    with stop_signals() as signals:  # from the first check on: a Ctrl-C is never swallowed
        validate(args)
        if args.kernel:
            try:
                qemu_code, published = run_under_qemu(args)
                return compare_with(args, qemu_code, published)
            except KeyboardInterrupt:  # vmrun marked the run folder, if it had made one
                print(f"kvmconf: interrupted: the QEMU run was stopped; a run folder it made is marked incomplete in {args.reports}",
                      file=sys.stderr)
                return INTERRUPTED
        if args.output_dir:  # inside the guest: the host owns the run folder
            return int(pytest.main(suite_args(args, Path(args.output_dir))))
        if COLLECT_ONLY & set(args.pytest_args):  # lists the cases: no run, so no run folder
            return int(pytest.main(suite_args(args, None)))
        run = RunFolder(Path(args.reports))
        signals.run = run
        done = run_suite(run, suite_args(args, run.path), signals)
        code, final = settle(run, done)
    if args.keep:
        prune(Path(args.reports), args.keep)
    return compare_with(args, code, final)


def settle(run: RunFolder, done: SuiteRun) -> tuple[int, Path | None]:
    """Publish, mark or remove the run folder after pytest ended; the run's exit code and
    the published folder (None when it was not published)."""
    code, tracker = done.code, done.tracker
    if tracker.interrupted and (tracker.unfinished() or not tracker.collected):  # marked incomplete, the unfinished named
        return report_interrupted(run, tracker, (done.signals.received or ["SIGINT"])[0]), None
    if code in (3, 4) or code >= 9 or (code in (0, 5) and not tracker.finished):  # an error, or no case ran
        run.abandon()
        if code == 5:
            raise NothingSelected("no case selected (by -k or pytest's options): nothing ran, no run folder was made")
        return code, None
    unfinished = tracker.unfinished()
    if tracker.stopped_early or (unfinished and code in (1, 2)):
        why = tracker.stopped_early or ("collection errors" if code == 2 else "-x or --maxfail")
        path = run.mark_incomplete(f"pytest stopped early ({why}): {len(unfinished)} of {len(tracker.collected)} cases did not run")
        print(f"reports (incomplete): {path}")
        return (1 if tracker.stopped_early else code), None  # xdist says 2 (interrupted) for its -x; pytest alone says 1
    final = run.finish()
    print(f"reports: {final}")
    if done.signals.received:  # it came once every case had finished: the reports were written first
        print(f"kvmconf: {done.signals.received[0]} came after every case had finished; the reports were written first",
              file=sys.stderr)
        return INTERRUPTED, final
    return code, final


def compare_with(args: argparse.Namespace, code: int, published: Path | None) -> int:
    """With --compare-with, a finished run ends with `kvmconf compare BASE RUN`, whose
    exit code (1: a new failure against the base) is the run's."""
    if not args.compare_with or published is None or code not in (0, 1):
        return code
    print()
    return cmd_compare(argparse.Namespace(a=Path(args.compare_with), b=published, output=None))


def cmd_test(args: argparse.Namespace) -> int:
    return int(pytest.main([str(ROOT / "tests"), f"--rootdir={ROOT}", *args.pytest_args]))


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line; a pytest option given before `--` gets a hint instead of the usage."""
    parser = build_parser()
    words = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(words)
    if args.command == "test":  # everything after `test` is pytest's, in its order (`-p NAME` stays a pair)
        rest = words[words.index("test") + 1:]
        args.pytest_args = rest[1:] if rest[:1] == ["--"] else rest
    elif extra:
        hint = f"; pytest's options go after --: kvmconf {args.command} -- {' '.join(extra)}" if extra[0].startswith("-") else ""
        parser.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
        os.chdir(ROOT)
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
        print("kvmconf: interrupted before the run started: no run folder was made", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
