"""`python -m harness.cli.lava RUN_DIR --exit-status N` (lava/kvmconf.yaml, on the
device): read RUN_DIR/results.jsonl back into the model and call LAVA's helpers for
every case, as `harness.report.lava.commands` lists them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from harness.report.lava import RUN_CASE, commands
from harness.report.model import read_jsonl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.cli.lava", description="Report a kvmconf run folder to LAVA.")
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
