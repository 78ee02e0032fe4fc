"""The gcc probe of a uapi kvm.h: headers written here (complete, lacking v2, another
layout, broken, missing, incomplete), the system's linux/kvm.h and Debian's 7.3 header
when present. The probe cache goes to a temporary directory, so every probe here
really compiles and nothing is left in ~/.cache."""

from __future__ import annotations

import glob
import os
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
from harness.host.cstruct import ctype_of
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
    assert ctype_of(gmem) is not None and attrs.pack({"flags": 1})[:4] == b"\x01\0\0\0"


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


def test_a_constructor_in_the_header_never_runs(tmp_path: Path) -> None:
    """The probe compiles to assembly and reads the values gcc emitted: nothing built
    from the header is linked or run, so a constructor in it (as root!) does nothing."""
    ran = tmp_path / "the-header-ran"
    evil = (f'extern int creat(const char *, unsigned int);\n'
            f'__attribute__((constructor)) static void kvmconf_evil(void) {{ creat("{ran}", 0644); }}\n'
            f'int main(void) {{ creat("{ran}", 0644); return 0; }}\n')
    facts = facts_from_header(write_header(tmp_path, "evil", CORE, ATTRS, evil), "released")
    assert facts.ioctls["KVM_SET_MEMORY_ATTRIBUTES"].number == 0x4020AED2
    assert not ran.exists()


def test_the_header_path_is_never_part_of_the_source(tmp_path: Path) -> None:
    """A folder name with a quote, a backslash and a newline: the header reaches gcc as
    an include path, so its name cannot break (or inject into) the probe's C."""
    path = write_header(tmp_path, 'a"b\\c\nd', CORE)
    assert facts_from_header(path, "released").ioctls["KVM_CREATE_VM"].number == 0xAE01


def test_a_source_tree_header_is_prepared_as_headers_install_does(tmp_path: Path) -> None:
    """include/uapi/linux/kvm.h of a kernel tree includes <linux/compiler.h> (not a uapi
    header) and marks pointers __user: both go, as `make headers_install` does."""
    header = tmp_path / "linux" / "include" / "uapi" / "linux" / "kvm.h"
    header.parent.mkdir(parents=True)
    header.write_text(PRELUDE.replace("#define __LINUX_KVM_H", "#define _UAPI__LINUX_KVM_H\n#include <linux/compiler.h>")
                      + "struct kvm_dirty_log_like { __u32 slot; void __user *dirty_bitmap; };\n" + CORE + ATTRS + "#endif\n")
    facts = facts_from_header(header, "released")
    assert facts.ioctls["KVM_SET_MEMORY_ATTRIBUTES"].number == 0x4020AED2


def test_headers_install_rules() -> None:
    """Each sed rule of scripts/headers_install.sh, on bytes (a header need not be UTF-8);
    the expected text is what GNU sed makes of it with the script's expressions (one
    pass per line: `asm volatile` keeps its `volatile`, `__attribute_const__;` stays)."""
    before = (b"#ifndef _UAPI__LINUX_KVM_H\n#include <linux/compiler.h>\nvoid __user *p; int __force x;\n"
              b"struct s { int a; } __packed;\nstatic inline int f(void) { asm volatile(\"\"); }\n"
              b"int g(void) __attribute_const__;\n#ifdef __ASSEMBLY__\n/* \xff */\n")
    assert header_facts.prepare(before) == (
        b"#ifndef __LINUX_KVM_H\n\nvoid *p; int x;\nstruct s { int a; } __attribute__((packed));\n"
        b"static __inline__ int f(void) { __asm__ volatile(\"\"); }\nint g(void) __attribute_const__;\n"
        b"#ifdef __ASSEMBLER__\n/* \xff */\n")


def test_non_utf8_header(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 in the header, and in gcc's message about it: read as
    bytes, the error is still one line naming the header."""
    path = write_header(tmp_path, "latin1", CORE)
    path.write_bytes(path.read_bytes().replace(b"#endif", b"/* caf\xe9 */\n#error caf\xe9 \xff\n#endif"))
    with pytest.raises(HeaderCompileError) as e:
        facts_from_header(path, "released")
    assert str(path) in str(e.value) and "#error" in str(e.value) and "\n" not in str(e.value)


def test_not_a_regular_file(tmp_path: Path) -> None:
    """A FIFO or a folder as the header: named, never opened (a FIFO would block)."""
    fifo = tmp_path / "kvm.h"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(HeaderMissing, match="not a regular file"):
            facts_from_header(path, "released")


def test_probe_record_carries_the_facts(tmp_path: Path) -> None:
    """What the host writes for the guest gives the same facts without the header."""
    path = write_header(tmp_path, "record", CORE, CAPS, ATTRS, GMEM, REGION2)
    direct = facts_from_header(path, "released")
    record = header_mod.write_record(path, tmp_path / "header-probe.json")
    path.unlink()
    assert facts_from_header(record, "released") == direct
    (tmp_path / "other.json").write_text('{"syms": {}}')
    with pytest.raises(HeaderIncomplete, match="not a header probe record"):
        facts_from_header(tmp_path / "other.json", "released")


SOURCE_73 = Path.home() / ".cache" / "kvm-kernels" / "src" / "linux-source-7.3" / "include" / "uapi" / "linux" / "kvm.h"


@pytest.mark.skipif(not SOURCE_73.is_file(), reason="no 7.3 source tree in ~/.cache/kvm-kernels/src (shared/kernels/linux-source)")
def test_source_tree_73_header_matches_released() -> None:
    """The 7.3 source tree's own header, with its compiler.h include and its tree's
    arch/x86 uapi folder, matches the released profile exactly."""
    match = header_mod.profile_for(SOURCE_73)
    assert (match.profile, match.differences, match.lacking) == ("released", (), ())


@pytest.mark.skipif(not DEBIAN_73, reason="no Debian 7.3 header in ~/.cache/kvm-kernels (tools/debian-kernel fetches it)")
def test_debian_73_header_chooses_released() -> None:
    """Debian's header folder has no asm/kvm.h, so the VM types come from the system's
    older one; that tells no revision apart and is said, and released is chosen."""
    match = header_mod.profile_for(Path(DEBIAN_73[-1]))
    assert (match.profile, match.differences) == ("released", ())
