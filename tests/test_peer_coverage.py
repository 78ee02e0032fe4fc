"""docs/peer-coverage.md keeps its case ids real: every id it names is a case some
profile collects (VM types 0 and 1, as the model has them), and every property row says
which cases check it or why not."""

from __future__ import annotations

import re

from harness.abi.profile import known_profiles
from harness.cases.captable import CapTable
from harness.host.backend import KernelBackend
from harness.paths import ROOT
from harness.session.target import make_target
from tests.test_tables import fake_target, suite_tables, table

DOC = ROOT / "docs" / "peer-coverage.md"
ROW = re.compile(r"^\| ([a-z0-9]+\.[a-z0-9.-]+) \| .* \| ([^|]*) \|$")


def rows() -> dict[str, str]:
    """Property id → its kvmconf cell."""
    out: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            assert m.group(1) not in out, f"{DOC.name}: {m.group(1)} listed twice"
            out[m.group(1)] = m.group(2).strip()
    return out


def collected() -> set[str]:
    """Case ids of every table, per profile, with VM types 0 and 1 and every cap set (the
    cap tables list the caps a kernel answers)."""
    ids: set[str] = set()
    for profile in known_profiles():
        fake = fake_target(profile, (0, 1))
        every = {c: 1 for c in fake.facts.caps}
        caps = CapTable({**every, **fake.caps.system}, {t: {**every, **v} for t, v in fake.caps.vm.items()},
                        fake.caps.vm_types, {})
        target = make_target(KernelBackend(), fake.facts, "/dev/kvm", "test", "test", caps)
        for name in suite_tables():
            ids.update(c.id for c in table(name)(target))
    return ids


KINDS = ("checked", "pending", "out", "not")
TARGET = 0.9  # issue 13: the table covers at least 90 % of the in-scope properties


def kind(cell: str) -> str:
    """What a kvmconf cell says: case ids (checked), a guest effect being written (pending),
    out of scope, or in scope and not checked (the doc's definitions, at its top)."""
    for prefix, name in (("covered by issue 12", "pending"), ("out of scope (", "out"), ("not:", "not")):
        if cell.startswith(prefix):
            return name
    return "checked" if "`" in cell else "none"


def figures(counts: dict[str, int]) -> str:
    """The doc's figures line for these counts."""
    total, in_scope = sum(counts.values()), sum(counts.values()) - counts["out"]
    return (f"Figures ({total} properties): {counts['checked']} checked by kvmconf case ids, {counts['pending']} pending "
            f"(guest effects being written), {counts['out']} out of scope, {counts['not']} in scope but not checked. "
            f"Coverage: {counts['checked']} of {in_scope} in-scope properties, {100 * counts['checked'] // in_scope} %.")


def counts() -> dict[str, int]:
    kinds = [kind(cell) for cell in rows().values()]
    return {k: kinds.count(k) for k in KINDS}


def test_every_property_says_how_it_is_checked() -> None:
    """Each row names case ids, a pending guest effect, why it is out of scope, or why it is not
    checked; the figures line says what the rows add up to."""
    table_rows = rows()
    assert len(table_rows) >= 148
    bad = sorted(pid for pid, cell in table_rows.items() if kind(cell) == "none")
    assert not bad, f"{DOC.name}: rows that name no case and say no reason: {bad}"
    expected = figures(counts())
    assert expected in " ".join(DOC.read_text().split()), f"{DOC.name}: the figures line should read {expected!r}"


def test_coverage_reaches_the_target() -> None:
    """Checked rows are at least 90 % of the in-scope rows (issue 13)."""
    c = counts()
    in_scope = sum(c.values()) - c["out"]
    assert c["checked"] >= TARGET * in_scope, figures(c)


def test_case_ids_are_real() -> None:
    """Every backticked case id in the kvmconf column is collected by some profile."""
    ids = collected()
    unknown = sorted({(pid, token) for pid, cell in rows().items() for token in re.findall(r"`([^`]+)`", cell)
                      if "/" in token and token not in ids})
    assert not unknown, f"{DOC.name} names cases no collection has: {unknown[:10]}"
