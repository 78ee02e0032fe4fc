"""The mutation run: the suite passes on the faithful model of every profile, and kills
every mutant of the catalogue. Prints the score line into the test run's output.

A survivor is a missing or weak check in the suite: fix the suite, never the catalogue.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from harness import rules
from harness.abi.fdkind import FdKind
from harness.abi.profile import load_profile
from harness.model import mutation
from harness.model.mutants import RULES, catalogue
from harness.rules import Expect

MIN_MUTANTS = 30


def rule_functions() -> set[str]:
    """The functions of harness.rules (and its family modules) that give an expected answer."""
    modules = [rules, *(importlib.import_module(m.name) for m in pkgutil.iter_modules(rules.__path__, rules.__name__ + "."))]
    return {name for mod in modules for name, fn in inspect.getmembers(mod, inspect.isfunction)
            if fn.__module__ == mod.__name__ and inspect.signature(fn).return_annotation in (Expect, "Expect")}


def test_catalogue_breaks_every_rule() -> None:
    """At least 30 mutants, at least one per rule; every answering rule is a rule here."""
    mutants = catalogue()
    assert len(mutants) >= MIN_MUTANTS
    assert rule_functions() <= set(RULES), f"rules without a RULES entry: {sorted(rule_functions() - set(RULES))}"
    unbroken = sorted(set(RULES) - {m.rule for m in mutants})
    assert not unbroken, f"rules no mutant breaks: {unbroken}"


def _fd_kind(case_id: str) -> FdKind:
    """The fd kind of a case id's second part ("vm0", "gmem@vm1", "kvm")."""
    return FdKind.from_tag(case_id.split("/")[1])


def unexpected_skips(outcome: mutation.Outcome) -> list[str]:
    """Skipped KVM_SET_MEMORY_ATTRIBUTES2 or parity cases on an fd kind the revision
    gives the ioctl: those must execute on the model."""
    facts = load_profile(outcome.job.profile)
    io = facts.ioctls.get("KVM_SET_MEMORY_ATTRIBUTES2")
    if io is None:
        return []
    out = []
    for node in outcome.skipped():
        case_id = node.split("[", 1)[1].rstrip("]") if "[" in node else ""
        relevant = "KVM_SET_MEMORY_ATTRIBUTES2/" in case_id or "test_parity.py" in node
        if relevant and "/" in case_id and _fd_kind(case_id) in io.fds:
            out.append(node)
    return out


def test_mutation_run(capsys: pytest.CaptureFixture[str]) -> None:
    """One run (a single test, so xdist never starts it twice): the faithful model of
    every profile passes the suite, running every KVM_SET_MEMORY_ATTRIBUTES2 and parity
    case on the fd kinds the revision gives the ioctl; every mutant is killed."""
    report = mutation.run()
    with capsys.disabled():
        print("\n" + "\n".join(report.lines()))
    assert not report.broken_baselines, "the faithful model fails the suite:\n" + "\n".join(report.lines())
    skipped = {o.job.profile: unexpected_skips(o) for o in report.baselines}
    assert not any(skipped.values()), {p: s[:5] for p, s in skipped.items() if s}
    assert not report.survivors, "\n".join(report.lines())
