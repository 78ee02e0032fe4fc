"""Known findings per kernel: the TOML format's errors, the pattern language (`*` is
the only wildcard, brackets are literal), the choice by `uname -r`, and the files that
ship in expectations/ (they load, and every pattern names cases that exist)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from harness.abi.profile import load_profile
from harness.cases import tables
from harness.cases.captable import CapTable
from harness.cases.expectations import NONE, Finding, for_release, load
from harness.errors import ExpectationsMalformed
from harness.host.backend import KernelBackend
from harness.paths import EXPECTATIONS_DIR
from harness.session.target import make_target

GOOD = """
[kernel]
name = "Test kernel"
release = '^9\\.9\\.'

[kernel_data]
range_bound_errno = "EINVAL"

[[finding]]
cases = ["KVM_CREATE_GUEST_MEMFD/*/reserved[*"]
reason = "reserved[] unchecked"
"""


def write(tmp_path: Path, text: str, name: str = "k.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_good(tmp_path: Path) -> None:
    """A well-formed file: kernel, per-kernel errno data, findings."""
    exp = load(write(tmp_path, GOOD))
    assert exp.kernel == "Test kernel" and exp.path == str(tmp_path / "k.toml")
    assert exp.kernel_data.range_bound_errno == errno.EINVAL
    assert exp.findings == (Finding(("KVM_CREATE_GUEST_MEMFD/*/reserved[*",), "reserved[] unchecked"),)


def test_kernel_data_defaults_to_73(tmp_path: Path) -> None:
    """Without [kernel_data], 7.3's answers apply."""
    exp = load(write(tmp_path, '[kernel]\nname = "x"\n'))
    assert exp.kernel_data.range_bound_errno == errno.EEXIST and exp.findings == ()


@pytest.mark.parametrize(("text", "words"), [
    ("[kernel\nname = 'x'", "malformed TOML"),
    ('[kernel]\nname = "x"\n[[finding]]\ncases = ["a"]\n', "[[finding]] #1"),
    ('[kernel]\nname = "x"\n[[finding]]\ncases = []\nreason = "r"\n', "[[finding]] #1"),
    ('[kernel]\nname = "x"\n[[finding]]\ncases = "a"\nreason = "r"\n', "[[finding]] #1"),
    ('[kernel]\nrelease = "x"\n', "[kernel] table with name"),
    ('kernel = "x"\n', "[kernel] table with name"),
    ('[kernel]\nname = "x"\n[kernel_data]\nrange_bound_errno = "EBOGUS"\n', "range_bound_errno = 'EBOGUS'"),
    ('[kernel]\nname = "x"\n[kernel_data]\nrange_bound_errno = 17\n', "is not an errno name"),
    ('[kernel]\nname = "x"\n[kernel_data]\nrange_bound_errno = "errorcode"\n', "is not an errno name"),
    ('[kernel]\nname = "x"\n[kernel_data]\nother_errno = "EINVAL"\n', "unknown key other_errno in [kernel_data]"),
    # one rule for every table: a typo is refused, never ignored (a misspelt table would drop every finding)
    ('[kernel]\nname = "x"\n[[findings]]\ncases = ["a"]\nreason = "r"\n', "unknown key findings in the file"),
    ('[kernel]\nname = "x"\n[[finding]]\ncase = ["a"]\ncases = ["a"]\nreason = "r"\n', "unknown key case in [[finding]] #1"),
    ('[kernel]\nname = "x"\nrelase = "^6"\n', "unknown key relase in [kernel]; known: name, release"),
], ids=["toml", "no-reason", "empty-cases", "cases-not-list", "no-name", "kernel-not-table", "bad-errno-name",
        "errno-number", "not-an-errno", "unknown-key", "unknown-table", "unknown-finding-key", "unknown-kernel-key"])
def test_malformed(tmp_path: Path, text: str, words: str) -> None:
    """Each defect is one line naming the file and what is wrong."""
    path = write(tmp_path, text, "broken-kernel.toml")
    with pytest.raises(ExpectationsMalformed) as e:
        load(path)
    msg = str(e.value)
    assert str(path) in msg and words in msg and "\n" not in msg


def test_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are one line too, not a UnicodeDecodeError."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[kernel]\nname = "caf\xe9"\n')
    with pytest.raises(ExpectationsMalformed, match=r"not UTF-8 \(byte 0xe9 at offset 20\)"):
        load(path)


def test_missing_file(tmp_path: Path) -> None:
    """A wrong --expectations path is one line."""
    with pytest.raises(ExpectationsMalformed, match="no such file"):
        load(tmp_path / "absent.toml")


@pytest.mark.parametrize(("pattern", "case_id", "hit"), [
    ("KVM_CREATE_GUEST_MEMFD/*/reserved[*", "KVM_CREATE_GUEST_MEMFD/vm0/reserved[3]=0x8000000000000000", True),
    ("KVM_CREATE_GUEST_MEMFD/*/reserved[*", "KVM_CREATE_GUEST_MEMFD/vm0/reserved3=1", False),  # [ is literal
    ("X/vm0/reserved[1]=1", "X/vm0/reserved[1]=1", True),
    ("X/vm0/reserved[1]=1", "X/vm0/reserved1=1", False),  # not a character class
    ("X/vm0/reserved[12]=1", "X/vm0/reserved1=1", False),
    ("X/vm0/reserved[12]=1", "X/vm0/reserved2=1", False),
    ("a.c", "abc", False),  # . is literal
    ("a?c", "abc", False),  # ? is literal
    ("a+", "aa", False),
    ("(x)", "(x)", True),
    ("KVM_SET_USER_MEMORY_REGION2/*/pad1=*", "KVM_SET_USER_MEMORY_REGION2/vm0/pad1=0xffffffff", True),
    ("KVM_SET_USER_MEMORY_REGION2/*/pad1=*", "KVM_SET_USER_MEMORY_REGION2/vm0/pad2[0]=1", False),
    ("KVM_CREATE_GUEST_MEMFD", "KVM_CREATE_GUEST_MEMFD/vm0", False),  # anchored at the end
    ("vm0/*", "KVM_CREATE_GUEST_MEMFD/vm0/x", False),  # anchored at the start
    ("*", "anything/at/all", True),  # * crosses /
    ("A/*/b*c", "A/gmem@vm0/bxyc", True),
])
def test_patterns(pattern: str, case_id: str, hit: bool) -> None:
    """Case ids contain [ ] and . literally: `*` is the only wildcard, and the whole id must match."""
    assert (Finding((pattern,), "r").regexes()[0].match(case_id) is not None) == hit


def test_finding_for_picks_the_first(tmp_path: Path) -> None:
    """A case matched by two findings gets the first one's reason."""
    exp = load(write(tmp_path, GOOD + '[[finding]]\ncases = ["*"]\nreason = "everything"\n'))
    first = exp.finding_for("KVM_CREATE_GUEST_MEMFD/vm0/reserved[0]=1")
    assert first is not None and first.reason == "reserved[] unchecked"
    other = exp.finding_for("KVM_CREATE_VM/kvm/type=1")
    assert other is not None and other.reason == "everything"
    assert NONE.finding_for("anything") is None


def test_for_release_picks_by_regex(tmp_path: Path) -> None:
    """The file is chosen by searching `uname -r` with each file's release regex."""
    write(tmp_path, GOOD, "9.9.toml")
    write(tmp_path, '[kernel]\nname = "eight"\nrelease = "^8\\\\.1\\\\."\n', "8.1.toml")
    write(tmp_path, '[kernel]\nname = "any debian"\nrelease = "deb13"\n', "zz-debian.toml")
    write(tmp_path, '[kernel]\nname = "no release pattern"\n', "a-norelease.toml")
    assert for_release("9.9.1-generic", tmp_path).kernel == "Test kernel"
    assert for_release("8.1.0", tmp_path).kernel == "eight"
    assert for_release("8.10.0", tmp_path) is NONE  # the dot is escaped
    assert for_release("7.3.4+deb13-amd64", tmp_path).kernel == "any debian"  # search, not match
    assert for_release("19.9.1", tmp_path) is NONE
    assert for_release("9.9.1", tmp_path / "empty") is NONE


def test_shipped_files_load() -> None:
    """The files in expectations/ are well-formed and list findings with reasons."""
    paths = sorted(EXPECTATIONS_DIR.glob("*.toml"))
    assert paths
    for path in paths:
        exp = load(path)
        assert exp.kernel and exp.findings, path.name
        for f in exp.findings:
            assert f.reason and all(p.strip() for p in f.patterns)


def test_shipped_files_by_release() -> None:
    """6.18 (this project's machines) says EINVAL for an already-bound range, 7.3 EEXIST."""
    assert for_release("6.18.44-fc-v669").kernel_data.range_bound_errno == errno.EINVAL
    deb = for_release("7.3.4+deb13-amd64")
    assert deb.kernel == "Debian Linux 7.3" and deb.kernel_data.range_bound_errno == errno.EEXIST
    assert for_release("7.3.4-kvmconf-min") == deb  # tools/build-kernel's build of the same source
    for release in ("6.18.44-fc-v669", "7.3.4+deb13-amd64"):
        exp = for_release(release)
        assert exp.finding_for("KVM_CREATE_GUEST_MEMFD/vm0/reserved[3]=0x8000000000000000") is not None
        assert exp.finding_for("KVM_SET_USER_MEMORY_REGION2/vm0/pad2[13]=1") is not None
        assert exp.finding_for("KVM_SET_USER_MEMORY_REGION2/vm0/flags=0x8") is None
    assert for_release("5.10.0") is NONE
    if os.uname().release.startswith("6.18."):
        assert for_release(os.uname().release).path is not None


def _all_case_ids() -> set[str]:
    """Every case id the tables make for a kernel like this project's (default VM only)
    and one with a second VM type, under every profile."""
    from harness.abi.profile import known_profiles

    ids: set[str] = set()
    for types in ((0,), (0, 1)):
        sysc = {"KVM_CAP_VM_TYPES": sum(1 << t for t in types), "KVM_CAP_GUEST_MEMFD_FLAGS": 3, "KVM_CAP_GUEST_MEMFD": 1}
        caps = CapTable(sysc, {t: dict(sysc) for t in types}, types, {})
        for profile in known_profiles():
            t = make_target(KernelBackend(), load_profile(profile), "/dev/kvm", "test", "test", caps)
            for name in sorted(_SUITE_TABLES):
                ids.update(c.id for c in tables.table(name)(t.plan))
    return ids


def _suite_tables() -> set[str]:
    import re

    root = Path(__file__).resolve().parent.parent / "suites"
    return {m for p in root.glob("test_*.py") for m in re.findall(r'mark\.cases\("(\w+)"\)', p.read_text())}


_SUITE_TABLES = _suite_tables()


def test_shipped_patterns_name_existing_cases() -> None:
    """A pattern that names no case would hide nothing and mean a typo (the plugin
    refuses such a file when all suites run)."""
    ids = _all_case_ids()
    for path in sorted(EXPECTATIONS_DIR.glob("*.toml")):
        for f in load(path).findings:
            for pattern in f.patterns:
                one = Finding((pattern,), f.reason)
                assert any(one.regexes()[0].match(i) for i in ids), f"{path.name}: {pattern!r} names no case"
