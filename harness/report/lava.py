"""Report a finished run to LAVA (lava/kvmconf.yaml calls this on the device).

`python -m harness.report.lava RUN_DIR --exit-status N` reads RUN_DIR/results.jsonl
back into the model and calls `lava-test-case NAME --result pass|fail|skip` for every
case, inside one `lava-test-set` per area, and one `kvmconf-run` case for the run.

LAVA knows pass, fail, skip and unknown. A known finding (strict xfail) is reported
`pass`, as kselftest's `ok ... # XFAIL` does not fail a run; its finding is printed to
the log just before. A known finding that no longer reproduces (strict xpass) and an
error are `fail`. Case names are the model's slugs: unique, no whitespace, only
[A-Za-z0-9_-].
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from harness.report.model import CaseResult, Result, by_area, read_jsonl, slugify

RESULT: dict[Result, str] = {"pass": "pass", "xfail": "pass", "skip": "skip", "fail": "fail", "error": "fail", "xpass": "fail"}
RUN_CASE = "kvmconf-run"


def commands(cases: tuple[CaseResult, ...]) -> Iterator[tuple[str, list[str]]]:
    """(a line for the log, the command) for every case, grouped by area."""
    for area, group in by_area(cases).items():
        yield "", ["lava-test-set", "start", slugify(area)]
        for case in group:
            note = {"xfail": f"known finding: {case.reason}", "skip": f"skipped: {case.reason}",
                    "fail": case.reason, "error": case.reason, "xpass": f"known finding not seen: {case.reason}"}.get(case.result, "")
            line = f"{case.name}: {case.label}" + (f" ({note})" if note else "")
            yield line, ["lava-test-case", case.slug, "--result", RESULT[case.result]]
        yield "", ["lava-test-set", "stop"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.report.lava", description="Report a kvmconf run folder to LAVA.")
    parser.add_argument("run_dir", type=Path, help="the run folder (reports/latest)")
    parser.add_argument("--exit-status", type=int, default=0, help="what `kvmconf run` exited with (0 or 1: the run itself worked)")
    args = parser.parse_args(argv)
    jsonl = args.run_dir / "results.jsonl"
    try:
        with jsonl.open(encoding="utf-8") as fh:
            cases = read_jsonl(fh)
    except OSError as e:
        print(f"kvmconf-lava: {jsonl}: {e.strerror}; the run left no results", file=sys.stderr)
        subprocess.run(["lava-test-case", RUN_CASE, "--result", "fail"], check=False)
        return 1
    for note, command in commands(cases):
        if note:
            print(note, flush=True)
        subprocess.run(command, check=False)
    complete = not (args.run_dir / "INCOMPLETE").exists()
    run_ok = args.exit_status in (0, 1) and complete
    subprocess.run(["lava-test-case", RUN_CASE, "--result", "pass" if run_ok else "fail"], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
