"""Profiles: struct layouts, cap numbers and ioctls of each uAPI revision, checked
against the spec's field lists and numbers; every profile file is loaded and checked
for consistency, so a profile added later is covered without new test code."""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from harness.abi import profile as profile_mod
from harness.abi.facts import AbiFacts, Struct
from harness.abi.fdkind import FdKind
from harness.abi.ioc import ASM_GENERIC, Dir
from harness.abi.profile import KVMIO, catalogue, known_profiles, load_profile, profile_summary
from harness.errors import ProfileMalformed, ProfileUnknown
from harness.host.cstruct import CTYPES, ctype_of

U64 = (1 << 64) - 1


def offsets(s: Struct) -> dict[str, tuple[int, int]]:
    """field name -> (offset, size in bytes)."""
    return {f.name: (f.offset, f.size) for f in s.fields}


@pytest.fixture(scope="module")
def released() -> AbiFacts:
    return load_profile("released", ASM_GENERIC)


@pytest.fixture(scope="module")
def rfc() -> AbiFacts:
    return load_profile("rfc-v4", ASM_GENERIC)


# -- layouts from the spec's field lists ----------------------------------------------


def test_kvm_memory_attributes(released: AbiFacts) -> None:
    """spec: `kvm_memory_attributes {u64 address, size, attributes, flags}`, 32 bytes."""
    s = released.structs["kvm_memory_attributes"]
    assert s.size == 32
    assert offsets(s) == {"address": (0, 8), "size": (8, 8), "attributes": (16, 8), "flags": (24, 8)}
    assert s.reserved_words() == []


def test_kvm_memory_attributes2(rfc: AbiFacts) -> None:
    """seed: `{u64 address, size, attributes, flags; u64 reserved[12]}`, 128 bytes; its
    first four fields have the offsets and sizes of v1."""
    v1, v2 = rfc.structs["kvm_memory_attributes"], rfc.structs["kvm_memory_attributes2"]
    assert v2.size == 128
    assert {k: v for k, v in offsets(v2).items() if k != "reserved"} == offsets(v1)
    assert offsets(v2)["reserved"] == (32, 96)
    assert [w.label for w in v2.reserved_words()] == [f"reserved[{i}]" for i in range(12)]


def test_kvm_create_guest_memfd(released: AbiFacts) -> None:
    """spec: `{u64 size, flags, reserved[6]}`, 64 bytes."""
    s = released.structs["kvm_create_guest_memfd"]
    assert s.size == 64
    assert offsets(s) == {"size": (0, 8), "flags": (8, 8), "reserved": (16, 48)}
    assert [(w.label, w.offset) for w in s.reserved_words()] == [(f"reserved[{i}]", 16 + 8 * i) for i in range(6)]


def test_kvm_userspace_memory_region2(released: AbiFacts) -> None:
    """spec: `{u32 slot, flags; u64 guest_phys_addr, memory_size, userspace_addr,
    guest_memfd_offset; u32 guest_memfd, pad1; u64 pad2[14]}`, 160 bytes."""
    s = released.structs["kvm_userspace_memory_region2"]
    assert s.size == 160
    assert offsets(s) == {
        "slot": (0, 4), "flags": (4, 4), "guest_phys_addr": (8, 8), "memory_size": (16, 8),
        "userspace_addr": (24, 8), "guest_memfd_offset": (32, 8), "guest_memfd": (40, 4),
        "pad1": (44, 4), "pad2": (48, 112),
    }
    assert [w.label for w in s.reserved_words()] == ["pad1", *(f"pad2[{i}]" for i in range(14))]


def _natural(s: Struct) -> type[ctypes.Structure]:
    """The same members as a plain ctypes.Structure: the C compiler's natural layout,
    independent of profile.c_layout."""
    members: list[tuple[str, Any]] = [(f.name, CTYPES[f.type] * f.count if f.count > 1 else CTYPES[f.type]) for f in s.fields]
    return type(f"natural_{s.name}", (ctypes.Structure,), {"_fields_": members})


@pytest.mark.parametrize("name", known_profiles())
def test_ctypes_twins_match(name: str) -> None:
    """Each struct's ctypes twin, and a naturally aligned C struct of the same members,
    have the profile's size and offsets."""
    for s in load_profile(name).structs.values():
        twin, natural = ctype_of(s), _natural(s)
        assert ctypes.sizeof(twin) == ctypes.sizeof(natural) == s.size, s.name
        for f in s.fields:
            assert getattr(twin, f.name).offset == getattr(natural, f.name).offset == f.offset, f"{s.name}.{f.name}"
            assert getattr(twin, f.name).size == f.size, f"{s.name}.{f.name}"


def test_pack_unpack(released: AbiFacts) -> None:
    """pack puts each word at its offset, little-endian, masked to its width."""
    s = released.structs["kvm_userspace_memory_region2"]
    data = s.pack({"slot": 7, "pad1": U64, "pad2[13]": 1 << 63, "guest_memfd": 3})
    assert len(data) == 160
    assert data[0:4] == (7).to_bytes(4, "little")
    assert data[44:48] == b"\xff" * 4
    assert data[152:160] == (1 << 63).to_bytes(8, "little")
    back = s.unpack(data)
    assert back["pad1"] == 0xFFFFFFFF and back["pad2[13]"] == 1 << 63 and back["guest_memfd"] == 3
    assert sum(back.values()) == 7 + 0xFFFFFFFF + (1 << 63) + 3
    with pytest.raises(KeyError):
        s.pack({"no_such_field": 1})


# -- cap numbers ------------------------------------------------------------------------


def test_released_caps(released: AbiFacts) -> None:
    """spec: 7.3 numbers; 248 is KVM_CAP_S390_VSIE_ESAMODE."""
    expected = {
        "KVM_CAP_USER_MEMORY2": 231, "KVM_CAP_MEMORY_FAULT_INFO": 232, "KVM_CAP_MEMORY_ATTRIBUTES": 233,
        "KVM_CAP_GUEST_MEMFD": 234, "KVM_CAP_VM_TYPES": 235, "KVM_CAP_PRE_FAULT_MEMORY": 236,
        "KVM_CAP_GUEST_MEMFD_FLAGS": 244, "KVM_CAP_S390_VSIE_ESAMODE": 248,
    }
    assert {k: released.caps[k] for k in expected} == expected
    assert "KVM_CAP_MEMORY_ATTRIBUTES2" not in released.caps


def test_rfc_v4_caps(rfc: AbiFacts, released: AbiFacts) -> None:
    """seed: KVM_CAP_MEMORY_ATTRIBUTES2 = 248, and the series predates S390_VSIE_ESAMODE."""
    assert rfc.caps["KVM_CAP_MEMORY_ATTRIBUTES2"] == 248
    assert "KVM_CAP_S390_VSIE_ESAMODE" not in rfc.caps
    assert {k: v for k, v in rfc.caps.items() if k != "KVM_CAP_MEMORY_ATTRIBUTES2"} == {
        k: v for k, v in released.caps.items() if k != "KVM_CAP_S390_VSIE_ESAMODE"
    }
    assert rfc.cap_mirrors == {"KVM_CAP_MEMORY_ATTRIBUTES2": "KVM_CAP_MEMORY_ATTRIBUTES"}


def test_constants(released: AbiFacts) -> None:
    """spec: PRIVATE = 1<<3, guest_memfd flags MMAP 1<<0 and INIT_SHARED 1<<1, memslot flags 1, 2, 4."""
    c = released.constants
    assert c["KVM_MEMORY_ATTRIBUTE_PRIVATE"] == 1 << 3
    assert (c["GUEST_MEMFD_FLAG_MMAP"], c["GUEST_MEMFD_FLAG_INIT_SHARED"]) == (1, 2)
    assert (c["KVM_MEM_LOG_DIRTY_PAGES"], c["KVM_MEM_READONLY"], c["KVM_MEM_GUEST_MEMFD"]) == (1, 2, 4)


def test_model_caps_never_probed_on_a_kernel(rfc: AbiFacts) -> None:
    """Patch 10's cap has no ABI number: only the model backend may ask it."""
    assert "KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES" not in rfc.caps
    assert rfc.cap_number("KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES", model=False) is None
    assert rfc.cap_number("KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES", model=True) is not None
    assert "KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES" not in rfc.cap_numbers(model=False)
    assert "KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES" not in catalogue().caps


# -- ioctls ---------------------------------------------------------------------------


def test_released_ioctl_numbers(released: AbiFacts) -> None:
    """7.3's numbers (spec table), and the fds and caps the profile gives them."""
    numbers = {k: v.number for k, v in released.ioctls.items()}
    assert numbers == {
        "KVM_CREATE_VM": 0xAE01, "KVM_CHECK_EXTENSION": 0xAE03, "KVM_SET_USER_MEMORY_REGION2": 0x40A0AE49,
        "KVM_SET_MEMORY_ATTRIBUTES": 0x4020AED2, "KVM_CREATE_GUEST_MEMFD": 0xC040AED4,
        "KVM_GET_VCPU_MMAP_SIZE": 0xAE04, "KVM_CREATE_VCPU": 0xAE41, "KVM_RUN": 0xAE80,
        "KVM_GET_SUPPORTED_CPUID": 0xC008AE05, "KVM_GET_REGS": 0x8090AE81, "KVM_SET_REGS": 0x4090AE82,
        "KVM_GET_SREGS": 0x8138AE83, "KVM_SET_SREGS": 0x4138AE84, "KVM_SET_CPUID2": 0x4008AE90, "KVM_SET_NR_MMU_PAGES": 0xAE44,
        # issue 12 (docs/kernel-7.3-facts.md §10-15)
        "KVM_PRE_FAULT_MEMORY": 0xC040AED5, "KVM_SET_USER_MEMORY_REGION": 0x4020AE46, "KVM_ENABLE_CAP": 0x4068AEA3,
        "KVM_GET_DIRTY_LOG": 0x4010AE42, "KVM_CLEAR_DIRTY_LOG": 0xC018AEC0, "KVM_RESET_DIRTY_RINGS": 0xAEC7,
        "KVM_SET_BOOT_CPU_ID": 0xAE78,
        "KVM_REGISTER_COALESCED_MMIO": 0x4010AE67, "KVM_UNREGISTER_COALESCED_MMIO": 0x4010AE68, "KVM_IOEVENTFD": 0x4040AE79,
        "KVM_IRQFD": 0x4020AE76, "KVM_CREATE_IRQCHIP": 0xAE60,
    }
    gmem = released.ioctls["KVM_CREATE_GUEST_MEMFD"]
    assert (gmem.fds, gmem.caps, gmem.flags_cap) == (("vm",), {"vm": "KVM_CAP_GUEST_MEMFD"}, "KVM_CAP_GUEST_MEMFD_FLAGS")
    assert released.ioctls["KVM_CHECK_EXTENSION"].fds == ("system", "vm")


def test_rfc_v4_ioctls(rfc: AbiFacts, released: AbiFacts) -> None:
    """The seed adds KVM_SET_MEMORY_ATTRIBUTES2 = _IOWR(0xd2, 128) on the VM fd (and patch
    10's on the guest_memfd fd), each announced by its own cap; released ioctls unchanged."""
    io = rfc.ioctls["KVM_SET_MEMORY_ATTRIBUTES2"]
    assert io.number == 0xC080AED2 and io.direction == Dir.WRITE | Dir.READ
    assert set(io.fds) == {"vm", "guest_memfd"}
    assert io.caps == {"vm": "KVM_CAP_MEMORY_ATTRIBUTES2", "guest_memfd": "KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES"}
    for name, old in released.ioctls.items():
        assert rfc.ioctls[name] == old


def test_missing_names_the_source(released: AbiFacts) -> None:
    """A skip reason must say which ABI source lacks the symbol."""
    why = released.missing("KVM_SET_MEMORY_ATTRIBUTES2")
    assert why is not None and "KVM_SET_MEMORY_ATTRIBUTES2" in why and "profile released" in why
    assert released.missing("KVM_CREATE_GUEST_MEMFD") is None
    assert released.missing("kvm_create_guest_memfd") is None


# -- every profile file ----------------------------------------------------------------


def test_unknown_profile_lists_known_ones() -> None:
    """A typo in --profile gets one line that lists the valid names."""
    with pytest.raises(ProfileUnknown) as e:
        load_profile("no-such-revision")
    msg = str(e.value)
    assert "no-such-revision" in msg
    for name in known_profiles():
        assert name in msg
    assert e.value.exit_code == ProfileUnknown.exit_code


@pytest.mark.parametrize("given", ["ABSOLUTE", "../../../pyproject", "./released"])
def test_a_path_is_never_a_profile(tmp_path: Path, given: str) -> None:
    """--profile names a file of the profiles folder; a path to any TOML is refused."""
    if given == "ABSOLUTE":
        (tmp_path / "mine.toml").write_text("[caps]\n")
        given = str(tmp_path / "mine")
    with pytest.raises(ProfileUnknown, match="a profile is a name, not a path"):
        load_profile(given)


@pytest.mark.parametrize("text", [b"", b"[caps\n", b"summary = \"caf\xe9\"\n"], ids=["empty", "malformed", "not-utf8"])
def test_a_malformed_profile_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: bytes) -> None:
    (tmp_path / "broken.toml").write_bytes(text)
    monkeypatch.setattr(profile_mod, "PROFILE_DIR", tmp_path)
    profile_mod.clear_caches()
    try:
        if text:
            with pytest.raises(ProfileMalformed, match=r"broken\.toml: profile broken is not valid TOML") as e:
                load_profile("broken")
            assert "\n" not in str(e.value)
        else:  # an empty profile is valid TOML and defines nothing: the suite then skips what it lacks
            assert load_profile("broken").ioctls == {}
    finally:
        monkeypatch.undo()
        profile_mod.clear_caches()


def test_known_profiles_are_the_files() -> None:
    """A profile is a file in profiles/: adding one needs no code."""
    files = sorted(p.stem for p in Path(profile_mod.PROFILE_DIR).glob("*.toml"))
    assert known_profiles() == files
    assert {"released", "rfc-v4"} <= set(files)


@pytest.mark.parametrize("name", known_profiles())
def test_profile_is_consistent(name: str) -> None:
    """Every profile: loads; no two caps share a number; every ioctl's number encodes its
    struct's size and its direction; its fds are known kinds; every cap it names is defined
    by the profile (as ABI or model cap); mirrors name defined caps."""
    facts = load_profile(name, ASM_GENERIC)
    assert profile_summary(name)
    dup = {n: names for n, names in _by_number(facts.caps).items() if len(names) > 1}
    assert not dup, f"profile {name}: caps share a number: {dup}"
    dup_io = {n: names for n, names in _by_number({k: v.number for k, v in facts.ioctls.items()}).items() if len(names) > 1}
    assert not dup_io, f"profile {name}: ioctls share a number: {dup_io}"
    defined = {*facts.caps, *facts.model_caps}
    for io in facts.ioctls.values():
        size = facts.structs[io.struct].size if io.struct else 0
        assert ASM_GENERIC.decode(io.number) == (io.direction, KVMIO, io.nr, size), io.name
        assert set(io.fds) <= set(FdKind), io.name
        named = {*io.caps.values(), *io.attributes_caps.values(), *([io.flags_cap] if io.flags_cap else [])}
        assert named <= defined, f"{io.name} names caps {sorted(named - defined)} that profile {name} does not define"
        assert set(io.caps) <= set(io.fds) and set(io.attributes_caps) <= set(io.fds), io.name
    for a, b in facts.cap_mirrors.items():
        assert a in facts.caps and b in facts.caps, (a, b)
    for s in facts.structs.values():
        assert ctypes.sizeof(ctype_of(s)) == s.size
        assert sorted(w.offset for w in s.words()) == [w.offset for w in s.words()], f"{s.name}: fields overlap or are unordered"


def _by_number(table: Mapping[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for k, v in table.items():
        out.setdefault(v, []).append(k)
    return out


def test_catalogue_has_every_symbol() -> None:
    """The catalogue holds every profile's ioctls, structs, caps and constants, so case
    ids stay the same across revisions."""
    cat = catalogue(ASM_GENERIC)
    for name in known_profiles():
        facts = load_profile(name, ASM_GENERIC)
        assert set(facts.ioctls) <= set(cat.ioctls)
        assert set(facts.structs) <= set(cat.structs)
        assert set(facts.caps) <= set(cat.caps)
        assert set(facts.constants) <= set(cat.constants)
        for k, s in facts.structs.items():
            assert cat.structs[k].size == s.size, k
    assert {"KVM_SET_MEMORY_ATTRIBUTES2", "KVM_SET_MEMORY_ATTRIBUTES"} <= set(cat.ioctls)
    # a catalogue is for case generation, not for asking a kernel: two names may share 248
    assert Counter(cat.caps.values())[248] == 2
    assert cat.source == "catalogue of all profiles"


def test_inheritance_and_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A later revision is a data file: it inherits, replaces and removes symbols."""
    for p in Path(profile_mod.PROFILE_DIR).glob("*.toml"):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "v7-test.toml").write_text(
        'name = "v7-test"\ninherits = "rfc-v4"\nremoves = ["KVM_CAP_MEMORY_ATTRIBUTES2"]\n'
        'summary = "test revision"\n[caps]\nKVM_CAP_MEMORY_ATTRIBUTES2_FLAGS = 252\n'
        '[constants]\nKVM_SET_MEMORY_ATTRIBUTES2_PRESERVE = 0x1\n'
    )
    monkeypatch.setattr(profile_mod, "PROFILE_DIR", tmp_path)
    profile_mod.clear_caches()
    try:
        facts = load_profile("v7-test", ASM_GENERIC)
        assert "v7-test" in known_profiles()
        assert facts.caps["KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS"] == 252
        assert "KVM_CAP_MEMORY_ATTRIBUTES2" not in facts.caps
        assert "KVM_CAP_S390_VSIE_ESAMODE" not in facts.caps  # removed by the parent
        assert facts.ioctls["KVM_SET_MEMORY_ATTRIBUTES2"].number == 0xC080AED2
        assert facts.constants["KVM_SET_MEMORY_ATTRIBUTES2_PRESERVE"] == 1
        assert facts.constants["KVM_MEM_GUEST_MEMFD"] == 4
        assert "KVM_CAP_MEMORY_ATTRIBUTES2_FLAGS" in catalogue(ASM_GENERIC).caps
    finally:
        profile_mod.clear_caches()

