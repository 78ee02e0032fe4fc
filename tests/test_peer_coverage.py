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


def test_every_property_says_how_it_is_checked() -> None:
    """Each row names case ids, issue 12's pending surface, or why not; the figures add up."""
    table_rows = rows()
    assert len(table_rows) >= 148
    kinds = {pid: "ids" if "`" in cell and not cell.startswith(("not:", "covered by issue 12")) else cell.split(" ", 1)[0]
             for pid, cell in table_rows.items()}
    bad = sorted(pid for pid, kind in kinds.items() if kind not in ("ids", "not:", "covered"))
    assert not bad, f"{DOC.name}: rows that name no case and say no reason: {bad}"
    text = DOC.read_text()
    counts = [sum(1 for k in kinds.values() if k == kind) for kind in ("ids", "covered", "not:")]
    expected = (f"Figures ({len(table_rows)} properties): {counts[0]} checked by kvmconf case ids, {counts[1]} pending issue 12's\n"
                f"surfaces, {counts[2]} not checked")
    assert expected in text, f"{DOC.name}: the figures line should read {expected!r}"


def test_case_ids_are_real() -> None:
    """Every backticked case id in the kvmconf column is collected by some profile."""
    ids = collected()
    unknown = sorted({(pid, token) for pid, cell in rows().items() for token in re.findall(r"`([^`]+)`", cell)
                      if "/" in token and token not in ids})
    assert not unknown, f"{DOC.name} names cases no collection has: {unknown[:10]}"
