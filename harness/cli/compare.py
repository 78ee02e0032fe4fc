"""`kvmconf compare A B`: read two finished runs, print what changed and write the
compare page (`harness.report.compare` decides and renders). Exit 0 when B has no new
failure against A, 1 when it has.

A and B are run folders, results.jsonl files, or run ids under reports/ (as `kvmconf
run` prints them, or `latest`).
"""

from __future__ import annotations

import argparse
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


def load(path: Path) -> Run:
    """A run folder (its results.jsonl) or a results.jsonl file."""
    folder = path if path.is_dir() else path.parent
    jsonl = path / "results.jsonl" if path.is_dir() else path
    try:
        with jsonl.open(encoding="utf-8") as fh:
            cases = read_jsonl(fh)
    except FileNotFoundError:
        raise CompareInputError(f"{path}: neither a run folder with results.jsonl, a results.jsonl file, "
                                f"nor a run id under {REPORTS}") from None
    except (OSError, ValueError, KeyError) as e:
        raise CompareInputError(f"{jsonl}: not a results.jsonl that pytest-reportlog wrote ({e})") from None
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
