"""`kvmconf compare A B`: read two finished runs, print what changed and write the
compare page (`harness.report.compare` decides and renders). Exit 0 when B has no new
failure against A, 1 when it has.

A and B are run folders, results.jsonl files, or run ids under reports/ (as `kvmconf
run` prints them, or `latest`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.errors import CompareInputError
from harness.host.files import write_atomic
from harness.paths import REPORTS
from harness.report.compare import NEW_FAILURE, SIDE_FIELDS, Run, changes, render_console, render_html
from harness.report.model import read_jsonl


def _about(folder: Path) -> dict[str, str]:
    """What a run folder says it ran, from its junit.xml's suite properties."""
    wanted = {f"kvmconf.{name}": name for name in SIDE_FIELDS}
    try:
        return {wanted[p.get("name", "")]: str(p.get("value")) for p in ET.parse(folder / "junit.xml").iter("property")
                if p.get("name") in wanted}
    except (OSError, ET.ParseError):
        return {}


def resolve(text: str, reports: Path = REPORTS) -> Path:
    """A path as the user gave it (against the directory they ran kvmconf from), or a
    run id under reports/."""
    path = Path(os.path.abspath(text))
    if not path.exists() and (reports / text).exists():
        return reports / text
    return path


def whole_records(jsonl: Path, text: str) -> list[str]:
    """The lines of a results.jsonl that pytest-reportlog wrote to the end: each a JSON
    object with a `$report_type`, from SessionStart to SessionFinish, each line ended.
    An empty or cut-short file is no run, and saying so beats comparing half of one."""
    lines = text.split("\n")
    if lines[-1]:
        raise CompareInputError(f"{jsonl}: cut short (its last line is not ended); not a whole results.jsonl")
    lines.pop()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as e:
            raise CompareInputError(f"{jsonl}:{number}: not JSON ({e.args[0]}); not a results.jsonl that pytest-reportlog wrote") from None
        if not isinstance(record, dict) or not isinstance(record.get("$report_type"), str):
            raise CompareInputError(f"{jsonl}:{number}: not a pytest-reportlog record (a JSON object with $report_type)")
    kinds = [json.loads(lines[0])["$report_type"], json.loads(lines[-1])["$report_type"]] if lines else []
    if kinds != ["SessionStart", "SessionFinish"]:
        raise CompareInputError(f"{jsonl}: {'empty' if not lines else 'cut short'} (a run's results.jsonl goes from SessionStart "
                                "to SessionFinish); not a whole run")
    return lines


def load(path: Path) -> Run:
    """A run folder (its results.jsonl) or a results.jsonl file, whole: one line and exit
    70 for anything else (a folder without one, bytes that are not UTF-8, a file cut short)."""
    folder = path if path.is_dir() else path.parent
    jsonl = path / "results.jsonl" if path.is_dir() else path
    try:
        text = jsonl.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CompareInputError(f"{path}: neither a run folder with results.jsonl, a results.jsonl file, "
                                f"nor a run id under {REPORTS}") from None
    except UnicodeDecodeError:
        raise CompareInputError(f"{jsonl}: not UTF-8; not a results.jsonl that pytest-reportlog wrote") from None
    except OSError as e:
        raise CompareInputError(f"{jsonl}: cannot be read ({e.strerror})") from None
    try:
        cases = read_jsonl(whole_records(jsonl, text))
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # a record of the right shape with wrong contents
        raise CompareInputError(f"{jsonl}: not a results.jsonl that pytest-reportlog wrote ({type(e).__name__}: {e})") from None
    name = folder.resolve().name if path.is_dir() else str(path)
    return Run(name, str(path), {c.nodeid: c for c in cases}, _about(folder))


def default_output(a: Run, b: Run) -> Path:
    """Next to B: beside the run folder, or beside the results.jsonl file."""
    name = f"compare-{Path(a.label).name.removesuffix('.jsonl')}-vs-{Path(b.label).name.removesuffix('.jsonl')}.html"
    return Path(b.path).resolve().parent / name


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("compare", help="what changed from run A to run B; exit 1 when B has a new failure",
                       description="Cases whose result differs between two runs, grouped by area, on the console "
                                   "and as an HTML page. Exit 0 when B has no new failure against A, 1 when it has.")
    p.add_argument("a", type=resolve, metavar="A", help="the base run: a run folder, its results.jsonl, or a run id under reports/")
    p.add_argument("b", type=resolve, metavar="B", help="the run to judge: a run folder, its results.jsonl, or a run id under reports/")
    p.add_argument("-o", "--output", type=lambda t: Path(os.path.abspath(t)), metavar="PATH",
                   help="where to write the HTML page (default: next to B, compare-<A>-vs-<B>.html)")


def run(args: argparse.Namespace) -> int:
    a, b = load(args.a), load(args.b)
    found = changes(a, b)
    sys.stdout.write(render_console(a, b, found, colour=sys.stdout.isatty()))
    out: Path = args.output or default_output(a, b)
    try:
        write_atomic(out, render_html(a, b, found))
    except OSError as e:
        raise CompareInputError(f"{out}: cannot write the compare page ({e.strerror})") from None
    print(f"compare page: {out}")
    return 1 if any(c.kind == NEW_FAILURE for c in found) else 0
