"""The gcc probe of a uapi kvm.h: headers written here (complete, lacking v2, another
layout, broken, missing, incomplete), the system's linux/kvm.h and Debian's 7.3 header
when present. The probe cache goes to a temporary directory, so every probe here
really compiles and nothing is left in ~/.cache."""

from __future__ import annotations

import glob
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.abi import header_facts
from harness.abi.facts import AbiFacts
from harness.abi.profile import catalogue, load_profile
from harness.errors import GccMissing, HeaderCompileError, HeaderIncomplete, HeaderMissing
from harness.host import header as header_mod
from harness.host.header import facts_from_header

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed: the header probe compiles with it")

PRELUDE = """#ifndef __LINUX_KVM_H
#define __LINUX_KVM_H
#include <linux/types.h>
#include <linux/ioctl.h>
#define KVMIO 0xAE
"""

CORE = """
#define KVM_CREATE_VM _IO(KVMIO, 0x01)
#define KVM_CHECK_EXTENSION _IO(KVMIO, 0x03)
"""

CAPS = """
#define KVM_CAP_USER_MEMORY2 231
#define KVM_CAP_MEMORY_ATTRIBUTES 233
#define KVM_CAP_GUEST_MEMFD 234
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0)
"""

ATTRS = """
struct kvm_memory_attributes { __u64 address; __u64 size; __u64 attributes; __u64 flags; };
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
"""

GMEM = """
struct kvm_create_guest_memfd { __u64 size; __u64 flags; __u64 reserved[6]; };
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
"""

REGION2 = """
struct kvm_userspace_memory_region2 {
    __u32 slot; __u32 flags; __u64 guest_phys_addr; __u64 memory_size; __u64 userspace_addr;
    __u64 guest_memfd_offset; __u32 guest_memfd; __u32 pad1; __u64 pad2[14];
};
#define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
"""

ATTRS2 = """
struct kvm_memory_attributes2 { __u64 address; __u64 size; __u64 attributes; __u64 flags; __u64 reserved[12]; };
#define KVM_SET_MEMORY_ATTRIBUTES2 _IOWR(KVMIO, 0xd2, struct kvm_memory_attributes2)
#define KVM_CAP_MEMORY_ATTRIBUTES2 249
"""

# another layout: flags moved first and narrowed, one more reserved word
OTHER_LAYOUT = """
struct kvm_memory_attributes { __u32 flags; __u32 unused; __u64 address; __u64 size; __u64 attributes; };
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
struct kvm_create_guest_memfd { __u64 size; __u64 flags; __u64 reserved[7]; };
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
"""


def write_header(root: Path, name: str, *parts: str) -> Path:
    """`root/<name>/linux/kvm.h`: a distinct path per header, laid out as headers_install
    writes it (the probe adds the directory above linux/ to the include path)."""
    path = root / name / "linux" / "kvm.h"
    path.parent.mkdir(parents=True)
    path.write_text(PRELUDE + "".join(parts) + "\n#endif\n")
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "probe-cache"
    monkeypatch.setattr(header_mod, "CACHE_DIR", cache)
    return cache


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("headers")


@pytest.fixture(scope="module")
def minimal(module_dir: Path) -> Iterator[AbiFacts]:
    """A 7.3-like header without KVM_SET_MEMORY_ATTRIBUTES2, probed once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(header_mod, "CACHE_DIR", module_dir / "cache")
        yield facts_from_header(write_header(module_dir, "minimal", CORE, CAPS, ATTRS, GMEM, REGION2), "released")


def test_header_numbers_and_layouts(minimal: AbiFacts) -> None:
    """The header's numbers, sizes and offsets come out as userspace compiled against it
    sees them; they match the released profile."""
    released = load_profile("released")
    assert {k: v.number for k, v in minimal.ioctls.items()} == {
        "KVM_CREATE_VM": 0xAE01, "KVM_CHECK_EXTENSION": 0xAE03, "KVM_SET_MEMORY_ATTRIBUTES": 0x4020AED2,
        "KVM_CREATE_GUEST_MEMFD": 0xC040AED4, "KVM_SET_USER_MEMORY_REGION2": 0x40A0AE49,
    }
    for name in ("kvm_memory_attributes", "kvm_create_guest_memfd", "kvm_userspace_memory_region2"):
        assert minimal.structs[name] == released.structs[name], name
    assert minimal.caps == {"KVM_CAP_USER_MEMORY2": 231, "KVM_CAP_MEMORY_ATTRIBUTES": 233,
                            "KVM_CAP_GUEST_MEMFD": 234, "KVM_CAP_GUEST_MEMFD_FLAGS": 244}
    assert minimal.constants == {"KVM_MEM_GUEST_MEMFD": 4, "GUEST_MEMFD_FLAG_MMAP": 1}


def test_semantics_stay_the_profiles(minimal: AbiFacts) -> None:
    """Which fd and which cap belong to an ioctl is the profile's knowledge, not the header's."""
    gmem = minimal.ioctls["KVM_CREATE_GUEST_MEMFD"]
    assert gmem.fds == ("vm",) and gmem.flags_cap == "KVM_CAP_GUEST_MEMFD_FLAGS"
    assert minimal.source.startswith("header ") and "semantics: profile released" in minimal.source
    assert minimal.model_caps == {}


def test_symbols_the_header_lacks_are_absent_with_reason(minimal: AbiFacts) -> None:
    """Checks that need a missing symbol skip and say which header lacks it."""
    for sym in ("kvm_memory_attributes2", "KVM_SET_MEMORY_ATTRIBUTES2", "KVM_CAP_MEMORY_ATTRIBUTES2",
                "KVM_CAP_VM_TYPES", "GUEST_MEMFD_FLAG_INIT_SHARED"):
        why = minimal.missing(sym)
        assert why is not None and sym in why and "not defined in header" in why and "minimal" in why, (sym, why)
    assert "KVM_SET_MEMORY_ATTRIBUTES2" not in minimal.ioctls
    assert minimal.missing("KVM_SET_MEMORY_ATTRIBUTES") is None


def test_header_numbers_override_the_profile(tmp_path: Path) -> None:
    """A header that has v2 with another cap number than the seed's 248: the header wins,
    and the seed's mirror rule is kept because both caps are defined."""
    facts = facts_from_header(write_header(tmp_path, "v2", CORE, CAPS, ATTRS, ATTRS2), "rfc-v4")
    assert facts.caps["KVM_CAP_MEMORY_ATTRIBUTES2"] == 249
    assert facts.ioctls["KVM_SET_MEMORY_ATTRIBUTES2"].number == 0xC080AED2
    assert facts.structs["kvm_memory_attributes2"].size == 128
    assert facts.cap_mirrors == {"KVM_CAP_MEMORY_ATTRIBUTES2": "KVM_CAP_MEMORY_ATTRIBUTES"}
    assert facts.missing("kvm_memory_attributes2") is None


def test_header_layout_wins(tmp_path: Path) -> None:
    """Another struct layout in the header: its offsets, sizes and numbers are used."""
    facts = facts_from_header(write_header(tmp_path, "layout", CORE, OTHER_LAYOUT), "released")
    attrs = facts.structs["kvm_memory_attributes"]
    flags = attrs.field("flags")
    assert (flags.offset, flags.size, flags.type) == (0, 4, "u32")
    assert attrs.field("address").offset == 8 and attrs.size == 32
    gmem = facts.structs["kvm_create_guest_memfd"]
    assert gmem.size == 72 and gmem.field("reserved").count == 7
    assert len(gmem.reserved_words()) == 7
    assert facts.ioctls["KVM_CREATE_GUEST_MEMFD"].number == 0xC048AED4
    assert gmem.ctype is not None and attrs.pack({"flags": 1})[:4] == b"\x01\0\0\0"


def test_compile_error_has_gccs_first_error(tmp_path: Path) -> None:
    """A broken header is one line that carries gcc's first error, not a traceback."""
    path = write_header(tmp_path, "broken", CORE, "struct kvm_memory_attributes { __u65 address; };\n")
    with pytest.raises(HeaderCompileError) as e:
        facts_from_header(path, "released")
    msg = str(e.value)
    assert str(path) in msg and "does not compile" in msg
    assert re.search(r"error: unknown type name .__u65.", msg), msg
    assert "\n" not in msg


def test_missing_header(tmp_path: Path) -> None:
    """A wrong --kvm-header path names the path."""
    path = tmp_path / "nowhere" / "linux" / "kvm.h"
    with pytest.raises(HeaderMissing, match=re.escape(str(path))):
        facts_from_header(path, "released")


def test_incomplete_header(tmp_path: Path) -> None:
    """A header without KVM_CREATE_VM is not a uapi kvm.h."""
    path = write_header(tmp_path, "incomplete", "#define KVM_CHECK_EXTENSION _IO(KVMIO, 0x03)\n", ATTRS)
    with pytest.raises(HeaderIncomplete, match="KVM_CREATE_VM"):
        facts_from_header(path, "released")


def test_gcc_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without gcc the probe cannot run: say so and how to get it."""
    path = write_header(tmp_path, "nogcc", CORE)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(GccMissing, match="gcc"):
        facts_from_header(path, "released")


def test_probe_is_cached_by_content(tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second probe of the same header is read from the cache (xdist workers compile
    once); changed content is probed again."""
    path = write_header(tmp_path, "cached", CORE)
    first = header_mod.cached_probe(path)
    assert len(list(private_cache.glob("*.json"))) == 1

    def no_gcc(header: Path) -> dict[str, object]:
        raise AssertionError("probed again although cached")

    monkeypatch.setattr(header_mod, "probe", no_gcc)
    assert header_mod.cached_probe(path) == first
    path.write_text(path.read_text().replace("0x03", "0x04"))
    with pytest.raises(AssertionError, match="probed again"):
        header_mod.cached_probe(path)


def test_probe_cache_follows_the_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A revision added as a profile (a data change) must see its new symbols in a header
    probed before the profile existed."""
    path = write_header(tmp_path, "newsym", CORE, "#define KVM_CAP_KVMCONF_TEST_ONLY 252\n")
    assert "KVM_CAP_KVMCONF_TEST_ONLY" not in facts_from_header(path, "released").caps
    def with_new_cap() -> AbiFacts:
        cat = catalogue()
        return AbiFacts(cat.source, cat.profile, cat.encoding, cat.structs, cat.ioctls,
                        {**cat.caps, "KVM_CAP_KVMCONF_TEST_ONLY": 252}, cat.constants)

    monkeypatch.setattr(header_mod, "catalogue", with_new_cap)
    monkeypatch.setattr(header_facts, "catalogue", with_new_cap)
    assert facts_from_header(path, "released").caps.get("KVM_CAP_KVMCONF_TEST_ONLY") == 252


SYSTEM_HEADER = Path("/usr/include/linux/kvm.h")


@pytest.mark.skipif(not SYSTEM_HEADER.is_file(), reason="no /usr/include/linux/kvm.h (linux-libc-dev not installed)")
def test_system_header() -> None:
    """The installed uapi header: what it defines has the known numbers; what it lacks
    (guest_memfd on Linux 6.1's header) is absent, with the header named."""
    text = SYSTEM_HEADER.read_text()
    facts = facts_from_header(SYSTEM_HEADER, "released")
    assert facts.ioctls["KVM_CREATE_VM"].number == 0xAE01
    assert facts.ioctls["KVM_CHECK_EXTENSION"].number == 0xAE03
    known = {"KVM_CREATE_GUEST_MEMFD": 0xC040AED4, "KVM_SET_MEMORY_ATTRIBUTES": 0x4020AED2,
             "KVM_SET_USER_MEMORY_REGION2": 0x40A0AE49}
    for name, number in known.items():
        if re.search(rf"#define\s+{name}\b", text):
            assert facts.ioctls[name].number == number
        else:
            why = facts.missing(name)
            assert why is not None and str(SYSTEM_HEADER) in why
    if "kvm_create_guest_memfd" not in text:
        assert facts.missing("kvm_create_guest_memfd") is not None
        assert facts.missing("KVM_CAP_GUEST_MEMFD") is not None


DEBIAN_73 = sorted(glob.glob(str(Path.home() / ".cache" / "kvm-kernels" / "7.3*" / "include" / "linux" / "kvm.h")))


@pytest.mark.skipif(not DEBIAN_73, reason="no Debian 7.3 header in ~/.cache/kvm-kernels (tools/debian-kernel fetches it)")
def test_debian_73_header() -> None:
    """Debian's 7.3 header agrees with the released profile: numbers, caps (248 is
    KVM_CAP_S390_VSIE_ESAMODE) and layouts; the seed's v2 is absent."""
    path = Path(DEBIAN_73[-1])
    facts = facts_from_header(path, "released")
    released = load_profile("released")
    for name, io in released.ioctls.items():
        assert facts.ioctls[name].number == io.number, name
    for name, s in released.structs.items():
        assert facts.structs[name] == s, name
    assert {k: facts.caps[k] for k in released.caps} == dict(released.caps)
    assert facts.caps["KVM_CAP_S390_VSIE_ESAMODE"] == 248
    for sym in ("KVM_SET_MEMORY_ATTRIBUTES2", "kvm_memory_attributes2", "KVM_CAP_MEMORY_ATTRIBUTES2"):
        assert facts.missing(sym) is not None
