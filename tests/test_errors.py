"""harness.errors.EXIT_CODES is the one table of exit codes: every error class takes
its code from it, no two kinds of error share one, and the README shows exactly it."""

from __future__ import annotations

import importlib
import pkgutil
import re

import harness
from harness.errors import EXIT_CODES, KvmconfError
from harness.paths import ROOT

ROW = re.compile(r"^\| (\d+) \| (.+) \|$")


def error_classes() -> list[type[KvmconfError]]:
    """Every KvmconfError subclass in harness/ that names its own code."""
    for mod in pkgutil.walk_packages(harness.__path__, "harness."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    found: list[type[KvmconfError]] = []
    todo = [KvmconfError]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if "exit_code" in vars(sub):
                found.append(sub)
    return found


def test_every_error_has_a_code_of_the_table() -> None:
    missing = {c.__qualname__: c.exit_code for c in error_classes() if c.exit_code not in EXIT_CODES}
    assert not missing


def test_no_two_kinds_of_error_share_a_code() -> None:
    """A subclass may keep its parent's code (a kind of the same error); unrelated classes may not."""
    owner: dict[int, type[KvmconfError]] = {}
    for cls in error_classes():
        first = owner.setdefault(cls.exit_code, cls)
        assert issubclass(cls, first) or issubclass(first, cls), (cls, first)


def test_every_code_of_ours_is_raised_by_some_error() -> None:
    used = {c.exit_code for c in error_classes()}
    ours = {code for code in EXIT_CODES if 10 <= code < 128}
    assert ours <= used, ours - used


def test_the_readme_table_is_the_table() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = {int(m[1]): m[2] for line in section.splitlines() if (m := ROW.match(line))}
    assert rows == EXIT_CODES
