"""ioctl encoding per architecture family, checked against numbers known from outside
the code (the uapi headers, strace's tables) and against a by-hand `_IOC` per family,
so a slip in `harness.abi.ioc` cannot hide behind itself."""

from __future__ import annotations

import itertools
import os
import platform

import pytest

from harness.abi.ioc import ASM_GENERIC, IOC_13BIT, Dir, IocEncoding, encoding_for, host_encoding
from harness.abi.profile import KVMIO, load_profile

# sizes as the uapi headers give them (include/uapi/linux/kvm.h, spec/uapi.md)
SIZEOF_INT = 4
SIZEOF_ATTRS = 32
SIZEOF_ATTRS2 = 128
SIZEOF_GMEM = 64
SIZEOF_REGION2 = 160


def generic_ioc(d: str, type_: int, nr: int, size: int) -> int:
    """include/uapi/asm-generic/ioctl.h by hand: NONE 0, WRITE 1, READ 2; 14 size bits,
    DIRSHIFT 30."""
    bits = {"": 0, "W": 1, "R": 2, "WR": 3}[d]
    return bits << 30 | size << 16 | type_ << 8 | nr


def ppc_ioc(d: str, type_: int, nr: int, size: int) -> int:
    """arch/powerpc/include/uapi/asm/ioctl.h by hand (mips, sparc and alpha alike):
    _IOC_NONE 1, _IOC_READ 2, _IOC_WRITE 4, _IOC_SIZEBITS 13, _IOC_DIRSHIFT 29."""
    bits = {"": 1, "W": 4, "R": 2, "WR": 6}[d]
    return bits << 29 | size << 16 | type_ << 8 | nr


DIRS = {"": Dir.NONE, "W": Dir.WRITE, "R": Dir.READ, "WR": Dir.WRITE | Dir.READ}

# (name, dir, nr, size, asm-generic number); the numbers are the known ones
KNOWN_KVM = [
    ("KVM_CREATE_VM", "", 0x01, 0, 0xAE01),
    ("KVM_CHECK_EXTENSION", "", 0x03, 0, 0xAE03),
    ("KVM_SET_MEMORY_ATTRIBUTES", "W", 0xD2, SIZEOF_ATTRS, 0x4020AED2),
    ("KVM_CREATE_GUEST_MEMFD", "WR", 0xD4, SIZEOF_GMEM, 0xC040AED4),
    ("KVM_SET_USER_MEMORY_REGION2", "W", 0x49, SIZEOF_REGION2, 0x40A0AE49),
    ("KVM_SET_MEMORY_ATTRIBUTES2 (seed)", "WR", 0xD2, SIZEOF_ATTRS2, 0xC080AED2),
    ("KVM_SET_USER_MEMORY_REGION (v1)", "W", 0x46, 32, 0x4020AE46),
]


@pytest.mark.parametrize(("name", "d", "nr", "size", "number"), KNOWN_KVM, ids=[k[0] for k in KNOWN_KVM])
def test_asm_generic_known_kvm_numbers(name: str, d: str, nr: int, size: int, number: int) -> None:
    """The spec's numbers on x86, arm64, riscv, s390, loongarch."""
    assert ASM_GENERIC.ioc(DIRS[d], KVMIO, nr, size) == number == generic_ioc(d, KVMIO, nr, size)


@pytest.mark.parametrize(("name", "d", "nr", "size", "number"), KNOWN_KVM, ids=[k[0] for k in KNOWN_KVM])
def test_13bit_family_kvm_numbers(name: str, d: str, nr: int, size: int, number: int) -> None:
    """The same ioctls on powerpc/mips/sparc: direction bits differ, so _IO and _IOW
    numbers differ from asm-generic while _IOWR happens to coincide (6<<29 == 3<<30)."""
    got = IOC_13BIT.ioc(DIRS[d], KVMIO, nr, size)
    assert got == ppc_ioc(d, KVMIO, nr, size)
    if d == "WR":
        assert got == number
    else:
        assert got != number


def test_13bit_family_known_numbers() -> None:
    """Numbers userspace on powerpc actually uses (strace's powerpc ioctl tables)."""
    assert IOC_13BIT.ioc(Dir.NONE, KVMIO, 0x01, 0) == 0x2000AE01  # KVM_CREATE_VM
    assert IOC_13BIT.ioc(Dir.WRITE, KVMIO, 0x46, 32) == 0x8020AE46  # KVM_SET_USER_MEMORY_REGION
    assert IOC_13BIT.ioc(Dir.WRITE, ord("f"), 126, SIZEOF_INT) == 0x8004667E  # FIONBIO = _IOW('f', 126, int)
    assert IOC_13BIT.ioc(Dir.READ, ord("f"), 127, SIZEOF_INT) == 0x4004667F  # FIONREAD = _IOR('f', 127, int)
    assert IOC_13BIT.ioc(Dir.READ, ord("t"), 19, 44) == 0x402C7413  # TCGETS, sizeof(struct termios) 44


@pytest.mark.parametrize("d", ["", "W", "R", "WR"])
def test_by_hand_layout_r_1_int(d: str) -> None:
    """`_IOx('r', 1, int)` in both families, from each arch's documented bit layout."""
    assert ASM_GENERIC.ioc(DIRS[d], ord("r"), 1, SIZEOF_INT) == generic_ioc(d, ord("r"), 1, SIZEOF_INT)
    assert IOC_13BIT.ioc(DIRS[d], ord("r"), 1, SIZEOF_INT) == ppc_ioc(d, ord("r"), 1, SIZEOF_INT)


def test_family_constants() -> None:
    """Shifts and size limits as the headers define them."""
    assert (ASM_GENERIC.dir_shift, ASM_GENERIC.max_size) == (30, (1 << 14) - 1)
    assert (IOC_13BIT.dir_shift, IOC_13BIT.max_size) == (29, (1 << 13) - 1)
    assert (IOC_13BIT.dir_none, IOC_13BIT.dir_read, IOC_13BIT.dir_write) == (1, 2, 4)
    assert (ASM_GENERIC.dir_none, ASM_GENERIC.dir_read, ASM_GENERIC.dir_write) == (0, 2, 1)


@pytest.mark.parametrize("enc", [ASM_GENERIC, IOC_13BIT], ids=lambda e: e.family)
def test_decode_round_trip(enc: IocEncoding) -> None:
    """decode(ioc(x)) == x over every direction, edge types/nrs and sizes up to the limit."""
    for d, type_, nr, size in itertools.product(DIRS.values(), (0, 0xAE, 0xFF), (0, 0xD2, 0xFF),
                                                (0, 1, 32, 160, enc.max_size)):
        assert enc.decode(enc.ioc(d, type_, nr, size)) == (d, type_, nr, size)


@pytest.mark.parametrize("enc", [ASM_GENERIC, IOC_13BIT], ids=lambda e: e.family)
def test_size_overflow_rejected(enc: IocEncoding) -> None:
    """A size the field cannot hold is refused (the kernel's _IOC_TYPECHECK), not wrapped
    into the direction bits."""
    enc.ioc(Dir.WRITE, KVMIO, 1, enc.max_size)
    for bad in (enc.max_size + 1, 1 << 16, -1):
        with pytest.raises(ValueError, match="does not fit"):
            enc.ioc(Dir.WRITE, KVMIO, 1, bad)


def test_type_and_nr_range() -> None:
    """type and nr are 8 bits each; a wider value would spill into the next field."""
    with pytest.raises(ValueError):
        ASM_GENERIC.ioc(Dir.NONE, 0x100, 1, 0)
    with pytest.raises(ValueError):
        ASM_GENERIC.ioc(Dir.NONE, KVMIO, 0x100, 0)


def test_dir_macros() -> None:
    """Profiles name directions by the uapi macro; an unknown one must not pass silently."""
    for macro, d in (("_IO", Dir.NONE), ("_IOW", Dir.WRITE), ("_IOR", Dir.READ), ("_IOWR", Dir.WRITE | Dir.READ)):
        assert Dir.from_macro(macro) == d and d.macro == macro
    with pytest.raises(ValueError, match="_IOX"):
        Dir.from_macro("_IOX")


@pytest.mark.parametrize(("machine", "family"), [
    ("x86_64", ASM_GENERIC), ("aarch64", ASM_GENERIC), ("s390x", ASM_GENERIC), ("riscv64", ASM_GENERIC),
    ("loongarch64", ASM_GENERIC), ("i686", ASM_GENERIC),
    ("ppc64le", IOC_13BIT), ("ppc64", IOC_13BIT), ("ppc", IOC_13BIT), ("powerpc", IOC_13BIT),
    ("mips", IOC_13BIT), ("mips64el", IOC_13BIT), ("sparc64", IOC_13BIT), ("alpha", IOC_13BIT),
])
def test_encoding_for_uname_m(machine: str, family: IocEncoding) -> None:
    """The family is chosen from `uname -m`, as the suite may run on any KVM arch."""
    assert encoding_for(machine) is family


def test_host_encoding_is_uname_m() -> None:
    """This machine's numbers use its own family."""
    assert host_encoding() is encoding_for(os.uname().machine) is encoding_for(platform.machine())


def test_profile_numbers_follow_the_encoding() -> None:
    """A profile encoded for powerpc gives powerpc's numbers; sibling numbers (another
    size or direction of the same nr) come from the same encoding."""
    ppc = load_profile("released", IOC_13BIT)
    assert ppc.ioctls["KVM_SET_MEMORY_ATTRIBUTES"].number == ppc_ioc("W", KVMIO, 0xD2, SIZEOF_ATTRS) == 0x8020AED2
    assert ppc.ioctls["KVM_CREATE_VM"].number == 0x2000AE01
    generic = load_profile("released", ASM_GENERIC)
    # v1's nr with v2's size and direction is the seed's KVM_SET_MEMORY_ATTRIBUTES2
    assert generic.ioctl_number("KVM_SET_MEMORY_ATTRIBUTES", Dir.WRITE | Dir.READ, SIZEOF_ATTRS2) == 0xC080AED2
    assert generic.ioctl_number("KVM_SET_MEMORY_ATTRIBUTES") == 0x4020AED2
