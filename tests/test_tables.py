"""Case tables: ids unique and readable without the source, tables deterministic, and
on this machine (collected in subprocesses, as `kvmconf run` does): at least 300 cases
across the five modules, the same ids on every collection, and the seed's
KVM_SET_MEMORY_ATTRIBUTES2 cases collected under `released` and skipped with a reason
that names the cap and the fd asked."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.abi.profile import catalogue, known_profiles, load_profile
from harness.cases import tables
from harness.cases.captable import CapTable
from harness.host.backend import KernelBackend
from harness.paths import ROOT
from harness.session.engine import Case, hexv
from harness.session.target import Target, make_target
from tests.kvmdev import child_env, device_problem

SUITES = ROOT / "suites"
MODULES = ("test_sizing.py", "test_reserved.py", "test_alignment.py", "test_caps.py", "test_parity.py")
FILE_SURFACE = r"guest_memfd (?:fstat|fallocate|mmap|read|write|pread|pwrite)"
SURFACE = re.compile(rf"^(?:KVM_[A-Z0-9_]+|{FILE_SURFACE})$")
FD = re.compile(r"^(?:kvm|vm\d+|vcpu0@vm\d+|gmem@vm\d+)$")
SEGMENT = re.compile(
    r"^(?:[a-z_][a-z0-9_]*(?:\[\d+\])?=(?:\d|0x[0-9a-f]+|[A-Za-z][A-Za-z0-9_-]*)"  # field=value, knob=value
    r"|_IO(?:W|R|WR)?-size-\d+"  # another number with the same nr
    r"|[a-z]+(?:-[a-z]+)*)$"  # a placement or tag: overhang, no-new-fd
)


def suite_tables() -> list[str]:
    """The tables the suites name in `@pytest.mark.cases(...)`."""
    return sorted({m for p in SUITES.glob("test_*.py") for m in re.findall(r'mark\.cases\("(\w+)"\)', p.read_text())})


def fake_target(profile: str, vm_types: tuple[int, ...] = (0,)) -> Target:
    """A Target for generating tables: no device is opened, caps are made up."""
    sysc = {"KVM_CAP_VM_TYPES": sum(1 << t for t in vm_types), "KVM_CAP_GUEST_MEMFD_FLAGS": 3, "KVM_CAP_GUEST_MEMFD": 1,
            "KVM_CAP_MEMORY_ATTRIBUTES": 8, "KVM_CAP_USER_MEMORY2": 1}
    per_vm = {t: {**sysc, "KVM_CAP_MEMORY_ATTRIBUTES": 8 if t else 0} for t in vm_types}
    return make_target(KernelBackend(), load_profile(profile), "/dev/kvm", "test", "test", CapTable(sysc, per_vm, vm_types, {}))


def table(name: str) -> Callable[[Target], list[Case]]:
    fn = tables.table(name)
    return lambda t: fn(t.plan)


TARGETS = [(p, vt) for p in known_profiles() for vt in ((0,), (0, 1))]


def test_suites_name_existing_tables() -> None:
    """A suite that names a missing table would fail at collection."""
    names = suite_tables()
    assert len(names) >= 15
    for name in names:
        assert name in tables.table_names(), f"suites use table {name}, which no table module has"


@pytest.mark.parametrize(("profile", "vm_types"), TARGETS, ids=[f"{p}-types{''.join(map(str, v))}" for p, v in TARGETS])
def test_ids_unique_and_readable(profile: str, vm_types: tuple[int, ...]) -> None:
    """Within a table every id is distinct and reads surface/fd/field=value/..."""
    t = fake_target(profile, vm_types)
    labels = struct_labels()
    for name in suite_tables():
        cases = table(name)(t)
        ids = [c.id for c in cases]
        dup = [i for i, n in Counter(ids).items() if n > 1]
        assert not dup, f"{name}: duplicate ids {dup[:5]}"
        for case in cases:
            surface, fd, *rest = case.id.split("/")
            assert SURFACE.match(surface) and FD.match(fd), case.id
            bad = [s for s in rest if not SEGMENT.match(s)]
            assert not bad, f"{name}: {case.id}: unreadable parts {bad}"
            if case.surface in labels:
                unknown = [k for k, _ in case.values if k not in labels[case.surface]]
                assert not unknown, f"{name}: {case.id}: {unknown} are not fields of its struct in any revision"


def struct_labels() -> dict[str, set[str]]:
    """ioctl name -> the word labels its struct has in any revision."""
    out: dict[str, set[str]] = {}
    for facts in [catalogue(), *(load_profile(p) for p in known_profiles())]:
        for io in facts.ioctls.values():
            if io.struct is not None and io.struct in facts.structs:
                out.setdefault(io.name, set()).update(w.label for w in facts.structs[io.struct].words())
    return out


def test_tables_are_deterministic() -> None:
    """xdist workers must collect the same cases: tables depend only on facts and caps."""
    for profile in known_profiles():
        a, b = fake_target(profile, (0, 1)), fake_target(profile, (0, 1))
        for name in suite_tables():
            assert [c.id for c in table(name)(a)] == [c.id for c in table(name)(b)], (profile, name)


def test_reserved_words_and_bits() -> None:
    """Every reserved word with 1, its top bit and all ones; every flag bit once."""
    t = fake_target("released")
    ids = {c.id for c in tables.reserved_words(t.plan)}
    for i in range(6):
        for v in ("1", "0x8000000000000000", "0xffffffffffffffff"):
            assert f"KVM_CREATE_GUEST_MEMFD/vm0/reserved[{i}]={v}" in ids
    assert {"KVM_SET_USER_MEMORY_REGION2/vm0/pad1=0x80000000", "KVM_SET_USER_MEMORY_REGION2/vm0/pad1=0xffffffff",
            "KVM_SET_USER_MEMORY_REGION2/vm0/pad2[13]=1"} <= ids
    bits = {c.id for c in tables.flag_bits(t.plan)}
    assert {f"KVM_CREATE_GUEST_MEMFD/vm0/flags={hexv(1 << b)}" for b in range(64)} <= bits
    assert hexv(8) == "8" and hexv(16) == "0x10"
    assert sum(i.startswith("KVM_SET_USER_MEMORY_REGION2/vm0/flags=") and "binding=" not in i for i in bits) == 32


def test_attributes2_collected_under_released() -> None:
    """Surfaces the active revision lacks still get their cases (from the catalogue)."""
    t = fake_target("released")
    assert "KVM_SET_MEMORY_ATTRIBUTES2" not in t.facts.ioctls
    ids = [c.id for name in suite_tables() for c in table(name)(t)]
    a2 = [i for i in ids if i.startswith("KVM_SET_MEMORY_ATTRIBUTES2/")]
    assert len(a2) > 100
    assert any(i.startswith("KVM_SET_MEMORY_ATTRIBUTES2/vm0/") for i in a2)
    assert any(i.startswith("KVM_SET_MEMORY_ATTRIBUTES2/gmem@vm0/") for i in a2)


# absent_on_fd is left out: a revision that refuses an ioctl on an fd adds its ENOTTY cases
STRUCT_SURFACE_TABLES = ("reserved_words", "flag_bits", "sizing", "attribute_ranges", "parity_rows", "existence")


def shape(name: str, t: Target) -> list[str]:
    """The surface/fd part of each case id of table `name`."""
    return ["/".join(c.id.split("/")[:2]) for c in table(name)(t)]


def test_same_cases_in_every_revision() -> None:
    """design: the same cases (surface, fd) exist in every revision, so runs of two
    revisions compare; only a field a revision renames (v3's error_offset for
    reserved[11]) changes the field part of an id."""
    base = fake_target("released")
    for profile in known_profiles():
        other = fake_target(profile)
        for name in STRUCT_SURFACE_TABLES:
            assert shape(name, base) == shape(name, other), (profile, name)


# -- on this machine, collected as `kvmconf run` collects -------------------------------------


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", str(SUITES), f"--rootdir={ROOT}", "-p", "no:cacheprovider", "-p", "no:xdist", *args]


@dataclass
class Collected:
    ids: list[str]
    attrs2_junit: Path
    attrs2_out: str


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collected]:
    """Two collections and one ATTRIBUTES2 run, started together to keep this fast."""
    problem = device_problem()
    if problem:
        pytest.skip(problem)
    junit = tmp_path_factory.mktemp("attrs2") / "junit.xml"
    cmds = [pytest_cmd("--collect-only", "-q"), pytest_cmd("--collect-only", "-q"),
            pytest_cmd("-q", "-k", "ATTRIBUTES2", "-rs", f"--junitxml={junit}")]
    procs = [subprocess.Popen(c, cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for c in cmds]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for cmd, p, out in zip(cmds, procs, outs, strict=True):
        assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}:\n{out[-3000:]}"
    first, second = ([line for line in out.splitlines() if "::" in line] for out in outs[:2])
    assert first == second, "two collections on this machine gave different cases"
    yield Collected(first, junit, outs[2])


def test_at_least_300_cases_across_five_modules(collected: Collected) -> None:
    """issue 3: at least 300 cases under the default profile, in all five areas."""
    per_module = Counter(Path(i.split("::")[0]).name for i in collected.ids)
    assert sum(per_module.values()) >= 300, per_module
    for m in MODULES:
        assert per_module[m] > 0, f"{m} collects no cases: {per_module}"


def test_collected_ids_unique(collected: Collected) -> None:
    """Node ids must be unique, or pytest and the expectations cannot tell cases apart."""
    dup = [i for i, n in Counter(collected.ids).items() if n > 1]
    assert not dup, dup[:5]


def test_attributes2_skips_name_cap_and_fd(collected: Collected) -> None:
    """Under `released` the seed's ioctl has no number: each ATTRIBUTES2 case is collected
    and skips, naming the cap and the fd it needs (or, for the number check, the symbol
    and the ABI source that lacks it)."""
    assert "SKIPPED [" in collected.attrs2_out
    cases = list(ET.parse(collected.attrs2_junit).iter("testcase"))
    assert len(cases) > 100
    for tc in cases:
        name = str(tc.get("name"))
        skipped = tc.find("skipped")
        assert skipped is not None and skipped.get("type") == "pytest.skip", f"{name} did not skip"
        reason = str(skipped.get("message"))
        if "/" in name:  # a table case: surface/fd/...
            assert re.search(r"\bKVM_CAP_[A-Z0-9_]+\b", reason), f"{name}: {reason!r} names no cap"
            assert re.search(r"/dev/kvm|a VM of type \d+|a guest_memfd of a VM of type \d+", reason), f"{name}: {reason!r} names no fd"
            fd = name[name.index("[") + 1 : -1].split("/")[1]
            expected_fd = {"vm": "a VM of type ", "gmem@vm": "a guest_memfd of a VM of type "}[re.sub(r"\d+$", "", fd)]
            assert expected_fd in reason, f"{name}: {reason!r} names another fd"
        else:
            assert "KVM_SET_MEMORY_ATTRIBUTES2" in reason and "profile released" in reason, f"{name}: {reason!r}"
