"""The rules on their own: for each rule, a table of input → expected answer written
from the spec (`spec/uapi.md`) and the 7.3 fact sheet (`docs/kernel-7.3-facts.md`),
each row citing the clause it comes from. Rows where rules.py disagrees with those
words would be strict xfails naming the defect, so a fix shows up as an XPASS."""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness import rules
from harness.abi.facts import Struct
from harness.abi.linux import PAGE_SIZE, as_s64, wraps
from harness.abi.profile import load_profile
from harness.cases.captable import CapTable
from harness.host.backend import KernelBackend
from harness.rules import (
    GUEST_MEMFD_ONLY_CLAUSES,
    Expect,
    KernelData,
    MemoryAttributesInput,
    MemslotInput,
)
from harness.session.target import Target, make_target

P = PAGE_SIZE
ONES = (1 << 64) - 1
OK = 0
PRIVATE = 1 << 3
MMAP, INIT_SHARED = 1, 2
KEEP, PUNCH = 0x01, 0x02
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x01, 0x02, 0x03
PROT_RW, PROT_RWX = 0x3, 0x7

RELEASED = load_profile("released")
RFC = load_profile("rfc-v4")
V1: Struct = RELEASED.structs["kvm_memory_attributes"]
V2: Struct = RFC.structs["kvm_memory_attributes2"]
GMEM: Struct = RELEASED.structs["kvm_create_guest_memfd"]
REGION2: Struct = RELEASED.structs["kvm_userspace_memory_region2"]
MEM_FLAGS = {n: RELEASED.const(n) for n in ("KVM_MEM_LOG_DIRTY_PAGES", "KVM_MEM_READONLY", "KVM_MEM_GUEST_MEMFD")}
LOG_DIRTY, READONLY, GUEST_MEMFD = 1, 2, 4


@dataclass(frozen=True)
class Row:
    """One input and the answer the spec gives it; `cite` is the clause's words."""

    name: str
    call: Callable[[], Expect]
    errno: int
    cite: str
    bug: str | None = None  # a defect of rules.py against the cited words


def rows_param(rows: list[Row]) -> list[Any]:
    return [pytest.param(r, id=r.name, marks=[pytest.mark.xfail(strict=True, reason=r.bug)] if r.bug else []) for r in rows]


def check(row: Row) -> None:
    got = row.call()
    assert got.errno == row.errno, (
        f"{row.name}: rule gives {got} ({got.clause}); the spec says {errno.errorcode.get(row.errno, 'success')}: {row.cite}"
    )
    assert got.rule and got.clause


# -- KVM_SET_MEMORY_ATTRIBUTES{,2} ------------------------------------------------------


@dataclass(frozen=True)
class Attrs:
    """Builds MemoryAttributesInput around a valid baseline (one page at 0, attributes 0)."""

    struct: Struct = V1
    supported: int = 0
    allowed_flags: int = 0
    file_size: int | None = None
    checks_reserved: bool = True
    base: dict[str, int] = field(default_factory=lambda: {"address": 0, "size": P, "attributes": 0, "flags": 0})

    def __call__(self, **values: int) -> Callable[[], Expect]:
        merged = {**self.base, **{k.replace("_", "[", 1) + "]" if k.startswith("reserved_") else k: v for k, v in values.items()}}
        return lambda: rules.set_memory_attributes(MemoryAttributesInput(
            merged, self.struct, self.supported, P, self.allowed_flags, self.file_size, self.checks_reserved))


v1, v1_priv = Attrs(), Attrs(supported=PRIVATE)
v2, v2_priv = Attrs(V2), Attrs(V2, supported=PRIVATE)
v2_gmem = Attrs(V2, file_size=4 * P)
SPEC_ATTRS = "spec, KVM_SET_MEMORY_ATTRIBUTES: "
SEED = "spec, seed revision: "

ATTRIBUTE_ROWS = [
    Row("valid", v1(), OK, "facts §1 #6: a valid range, attributes 0 on a default VM → 0"),
    Row("flags=1", v1(flags=1), errno.EINVAL, SPEC_ATTRS + "flags ≠ 0 → EINVAL"),
    Row("flags=1<<63", v1(flags=1 << 63), errno.EINVAL, SPEC_ATTRS + "flags ≠ 0 → EINVAL"),
    Row("flags=advertised", Attrs(allowed_flags=1)(flags=1), OK, "spec, v7: conversion flags enumerated by a cap are accepted"),
    Row("attributes=PRIVATE/default-vm", v1(attributes=PRIVATE), errno.EINVAL,
        SPEC_ATTRS + "attributes outside what the VM supports → EINVAL; a default x86 VM supports none"),
    Row("attributes=PRIVATE/private-vm", v1_priv(attributes=PRIVATE), OK, "spec: SW_PROTECTED, SEV-SNP and TDX VMs support PRIVATE"),
    Row("attributes=1/private-vm", v1_priv(attributes=1), errno.EINVAL, SPEC_ATTRS + "attributes outside what the VM supports"),
    Row("attributes=1<<63/private-vm", v1_priv(attributes=1 << 63), errno.EINVAL, SPEC_ATTRS + "attributes outside supported"),
    Row("size=0", v1(size=0), errno.EINVAL, SPEC_ATTRS + "size 0 … → EINVAL"),
    Row("wrap-to-0", v1(address=(1 << 64) - P, size=P), errno.EINVAL,
        "facts §1: address = 2^64−4096 with size = 4096 gives a sum of 0, which is EINVAL"),
    Row("wrap", v1(address=(1 << 64) - P, size=2 * P), errno.EINVAL, SPEC_ATTRS + "address+size wraps → EINVAL"),
    Row("wrap-both-huge", v1(address=ONES & ~(P - 1), size=ONES & ~(P - 1)), errno.EINVAL, SPEC_ATTRS + "address+size wraps"),
    Row("top-page-no-wrap", v1(address=(1 << 64) - 2 * P, size=P), OK, "facts §1: upper bound on gfn: there is none"),
    Row("address=2^63", v1(address=1 << 63), OK, "facts §1: nothing checks the range against memslots or MAXPHYADDR"),
    Row("address=1", v1(address=1), errno.EINVAL, SPEC_ATTRS + "address or size not page aligned → EINVAL"),
    Row("address=page-1", v1(address=P - 1), errno.EINVAL, SPEC_ATTRS + "address not page aligned"),
    Row("size=1", v1(size=1), errno.EINVAL, SPEC_ATTRS + "size not page aligned"),
    Row("size=page+1", v1(size=P + 1), errno.EINVAL, SPEC_ATTRS + "size not page aligned"),
    Row("v1-ignores-bytes-past-32", v1(reserved_0=1), OK, SEED + "for the v1 number the kernel … reads nothing past them"),
    Row("v2-valid", v2(), OK, SEED + "the v1 rules"),
    Row("v2-reserved[0]=1", v2(reserved_0=1), errno.EINVAL, SEED + "any reserved[i] ≠ 0 → EINVAL"),
    Row("v2-reserved[11]=~0", v2(reserved_11=ONES), errno.EINVAL, SEED + "any reserved[i] ≠ 0 → EINVAL"),
    Row("v2-reserved[5]=1<<63", v2(reserved_5=1 << 63), errno.EINVAL, SEED + "any reserved[i] ≠ 0 → EINVAL"),
    Row("v2-reserved-not-checked-when-the-revision-says-so", Attrs(V2, checks_reserved=False)(reserved_0=1), OK,
        "rules: which clauses apply is data (a revision that gives reserved words a meaning)"),
    Row("v2-flags=1", v2(flags=1), errno.EINVAL, SEED + "the v1 rules: flags ≠ 0 → EINVAL"),
    Row("v2-PRIVATE/private-vm", v2_priv(attributes=PRIVATE), OK, SEED + "the v1 rules"),
    Row("gmem-inside", v2_gmem(address=3 * P), OK, "spec, patch 10: address is a file offset; the range lies inside the file"),
    Row("gmem-whole-file", v2_gmem(size=4 * P), OK, "spec: the range inside the file"),
    Row("gmem-at-eof", v2_gmem(address=4 * P), errno.EINVAL, "spec parity: the bounds of the file (documented difference)"),
    Row("gmem-straddles-eof", v2_gmem(address=3 * P, size=2 * P), errno.EINVAL, "spec parity: the bounds of the file"),
    Row("gmem-size-past-eof", v2_gmem(size=5 * P), errno.EINVAL, "spec parity: the bounds of the file"),
    Row("gmem-unaligned", v2_gmem(address=1), errno.EINVAL, SPEC_ATTRS + "address not page aligned (same on both fds)"),
]


@pytest.mark.parametrize("row", rows_param(ATTRIBUTE_ROWS))
def test_set_memory_attributes(row: Row) -> None:
    """KVM_SET_MEMORY_ATTRIBUTES (v1) and the seed's v2, on a VM and a guest_memfd fd."""
    check(row)


def test_past_file_end_is_the_only_gmem_clause() -> None:
    """The documented VM/guest_memfd difference is data the parity suite reads."""
    assert v2_gmem(address=4 * P)().clause in GUEST_MEMFD_ONLY_CLAUSES
    assert GUEST_MEMFD_ONLY_CLAUSES == {rules.PAST_FILE_END}


def _fake_target(profile: str) -> Target:
    """A Target for table generation only: no device is opened."""
    sysc = {"KVM_CAP_VM_TYPES": 1, "KVM_CAP_GUEST_MEMFD_FLAGS": 3, "KVM_CAP_MEMORY_ATTRIBUTES": PRIVATE}
    return make_target(KernelBackend(), load_profile(profile), "/dev/kvm", "test", "test", CapTable(sysc, {0: dict(sysc)}, (0,), {}))


def test_parity_matrix_differs_only_by_documented_clauses() -> None:
    """spec, parity: the same matrix through the VM fd and the guest_memfd fd gives the
    same answers, except the documented differences (the file's bounds)."""
    from harness.cases.tables import parity_rows

    cases = parity_rows(_fake_target("rfc-v4").plan)
    assert cases
    for case in cases:
        values = {"address": 0, "size": P, "attributes": 0, "flags": 0, **dict(case.values)}
        on_vm = rules.set_memory_attributes(MemoryAttributesInput(values, V2, PRIVATE, P))
        on_gmem = rules.set_memory_attributes(MemoryAttributesInput(values, V2, PRIVATE, P, file_size=4 * P))
        if on_vm.errno != on_gmem.errno:
            assert on_gmem.clause in GUEST_MEMFD_ONLY_CLAUSES, case.id


# -- KVM_CREATE_GUEST_MEMFD --------------------------------------------------------------


def gmem(supported: int = MMAP | INIT_SHARED, **values: int) -> Callable[[], Expect]:
    merged = {"size": P, "flags": 0, **{k.replace("_", "[", 1) + "]" if k.startswith("reserved_") else k: v for k, v in values.items()}}
    return lambda: rules.create_guest_memfd(merged, GMEM, supported, P)


SPEC_GMEM = "spec, KVM_CREATE_GUEST_MEMFD: "
GMEM_ROWS = [
    Row("valid", gmem(), OK, SPEC_GMEM + "returns a new fd"),
    Row("flags=MMAP", gmem(flags=MMAP), OK, SPEC_GMEM + "flags inside KVM_CAP_GUEST_MEMFD_FLAGS"),
    Row("flags=MMAP|INIT_SHARED", gmem(flags=MMAP | INIT_SHARED), OK, "facts §2: default VM reports 3"),
    Row("flags=INIT_SHARED-alone", gmem(flags=INIT_SHARED), OK, "facts §4: INIT_SHARED without MMAP is accepted"),
    Row("flags=INIT_SHARED/private-vm", gmem(MMAP, flags=INIT_SHARED), errno.EINVAL,
        "facts §4: on a private-mem VM, INIT_SHARED is EINVAL even though /dev/kvm reports 3"),
    Row("flags=1<<2", gmem(flags=1 << 2), errno.EINVAL, SPEC_GMEM + "flags outside KVM_CAP_GUEST_MEMFD_FLAGS → EINVAL"),
    Row("flags=1<<63", gmem(flags=1 << 63), errno.EINVAL, SPEC_GMEM + "flags outside KVM_CAP_GUEST_MEMFD_FLAGS → EINVAL"),
    Row("flags=~0", gmem(flags=ONES), errno.EINVAL, SPEC_GMEM + "flags outside KVM_CAP_GUEST_MEMFD_FLAGS → EINVAL"),
    Row("size=0", gmem(size=0), errno.EINVAL, SPEC_GMEM + "size ≤ 0 as a signed 64-bit value → EINVAL"),
    Row("size=2^63", gmem(size=1 << 63), errno.EINVAL, "facts §4: a signed loff_t, so ≥2^63 is negative and gives EINVAL"),
    Row("size=~0", gmem(size=ONES), errno.EINVAL, SPEC_GMEM + "size ≤ 0 as a signed 64-bit value"),
    Row("size=2^64-page", gmem(size=(1 << 64) - P), errno.EINVAL, SPEC_GMEM + "size ≤ 0 as a signed 64-bit value"),
    Row("size=2^63-page", gmem(size=(1 << 63) - P), OK, "facts §4: any page-aligned size up to 2^63−4096 is accepted"),
    Row("size=2^40", gmem(size=1 << 40), OK, "facts §4: nothing is allocated at creation"),
    Row("size=1", gmem(size=1), errno.EINVAL, SPEC_GMEM + "or not page aligned → EINVAL"),
    Row("size=page-1", gmem(size=P - 1), errno.EINVAL, SPEC_GMEM + "not page aligned"),
    Row("size=page+1", gmem(size=P + 1), errno.EINVAL, SPEC_GMEM + "not page aligned"),
    Row("bad-flags-and-size", gmem(flags=1 << 5, size=0), errno.EINVAL, "facts §4 #1, #2: both EINVAL"),
    Row("reserved[0]=1", gmem(reserved_0=1), errno.EINVAL, "botching-up-ioctls: check all unused fields … reject otherwise"),
    Row("reserved[5]=~0", gmem(reserved_5=ONES), errno.EINVAL, "botching-up-ioctls: unused fields must be zero"),
    Row("reserved[3]=1<<63", gmem(reserved_3=1 << 63), errno.EINVAL, "botching-up-ioctls: unused fields must be zero"),
]


@pytest.mark.parametrize("row", rows_param(GMEM_ROWS))
def test_create_guest_memfd(row: Row) -> None:
    """KVM_CREATE_GUEST_MEMFD: flags against the cap, size as s64, reserved words."""
    check(row)


# -- KVM_CREATE_VM -------------------------------------------------------------------------

SPEC_VM = "spec, KVM_CREATE_VM: type not in KVM_CAP_VM_TYPES bitmask → EINVAL"
VM_ROWS = [
    Row("type=0/mask=1", lambda: rules.create_vm(0, 1), OK, "facts §8: Debian 7.3 reports 0x1"),
    Row("type=1/mask=1", lambda: rules.create_vm(1, 1), errno.EINVAL, "facts §0: KVM_CREATE_VM(1) fails with EINVAL" ),
    Row("type=1/mask=3", lambda: rules.create_vm(1, 3), OK, "facts §8: SW_PROTECTED with TDP MMU reports 0x3"),
    Row("type=5/mask=0x3f", lambda: rules.create_vm(5, 0x3F), OK, SPEC_VM),
    Row("type=31/mask=1<<31", lambda: rules.create_vm(31, 1 << 31), OK, "facts §3: type < 32 && (supported & BIT(type))"),
    Row("type=63", lambda: rules.create_vm(63, 1), errno.EINVAL, SPEC_VM),
    Row("type=64", lambda: rules.create_vm(64, 1), errno.EINVAL, SPEC_VM),
    Row("type=1<<32", lambda: rules.create_vm(1 << 32, 1), errno.EINVAL, "facts §3: 1UL<<32 … is not truncated → EINVAL"),
    Row("type=~0", lambda: rules.create_vm(ONES, ONES), errno.EINVAL, "facts §3: type < 32"),
    Row("mask=0", lambda: rules.create_vm(0, 0), errno.EINVAL, SPEC_VM),
]


@pytest.mark.parametrize("row", rows_param(VM_ROWS))
def test_create_vm(row: Row) -> None:
    """KVM_CREATE_VM: the type against KVM_CAP_VM_TYPES, a full 64-bit value."""
    check(row)


# -- KVM_SET_USER_MEMORY_REGION2 -------------------------------------------------------------

UADDR = 0x7F00_0000_0000  # a page-aligned user address


def slot(binding: str = "ok", file_size: int = 4 * P, bound: bool = False, has_gmem: bool = True,
         kernel: KernelData | None = None, address_spaces: int = 2, **values: int) -> Callable[[], Expect]:
    merged = {"slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": P, "userspace_addr": UADDR,
              "guest_memfd_offset": 0, "guest_memfd": 3, **{k.replace("_", "[", 1) + "]" if k.startswith("pad2_") else k: v
                                                             for k, v in values.items()}}
    return lambda: rules.set_user_memory_region2(MemslotInput(
        merged, REGION2, P, MEM_FLAGS, has_guest_memfd=has_gmem, guest_memfd=binding, file_size=file_size,
        range_bound=bound, kernel=kernel or KernelData(), address_spaces=address_spaces))


SPEC_SLOT = "spec, KVM_SET_USER_MEMORY_REGION2: "
F5 = "facts §5 "
REGION_ROWS = [
    Row("valid", slot(), OK, F5 + "#13: a new valid slot"),
    Row("flags=LOG_DIRTY", slot(flags=LOG_DIRTY), OK, F5 + "#4: valid = LOG_DIRTY | GUEST_MEMFD"),
    Row("flags=READONLY", slot(flags=READONLY), OK, F5 + "#4: READONLY added if kvm_arch_has_readonly_mem"),
    Row("flags=LOG_DIRTY|READONLY", slot(flags=LOG_DIRTY | READONLY), OK, F5 + "#4"),
    Row("flags=1<<3", slot(flags=1 << 3), errno.EINVAL, SPEC_SLOT + "unknown flags → EINVAL"),
    Row("flags=1<<31", slot(flags=1 << 31), errno.EINVAL, SPEC_SLOT + "unknown flags → EINVAL"),
    Row("flags=GUEST_MEMFD|LOG_DIRTY", slot(flags=GUEST_MEMFD | LOG_DIRTY), errno.EINVAL, F5 + "LOG_DIRTY|GUEST_MEMFD gives EINVAL"),
    Row("flags=GUEST_MEMFD|READONLY", slot(flags=GUEST_MEMFD | READONLY), errno.EINVAL, F5 + "READONLY|GUEST_MEMFD gives EINVAL"),
    Row("flags=GUEST_MEMFD/no-guest_memfd", slot(flags=GUEST_MEMFD, has_gmem=False), errno.EINVAL,
        F5 + "#4: GUEST_MEMFD is valid only where guest_memfd exists"),
    Row("pad1=1", slot(pad1=1), errno.EINVAL, "spec: pad1/pad2 are findings by the hygiene rules (reject non-zero)"),
    Row("pad2[13]=1<<63", slot(pad2_13=1 << 63), errno.EINVAL, "botching-up-ioctls: padding must be zero"),
    Row("memory_size=1", slot(memory_size=1), errno.EINVAL, F5 + "#5: memory_size & (PAGE_SIZE-1)"),
    Row("guest_phys_addr=page-1", slot(guest_phys_addr=P - 1), errno.EINVAL, F5 + "#6: guest_phys_addr & (PAGE_SIZE-1)"),
    Row("userspace_addr=1", slot(userspace_addr=UADDR + 1), errno.EINVAL, F5 + "#7: userspace_addr unaligned"),
    Row("userspace_addr=2^63", slot(userspace_addr=1 << 63), errno.EINVAL, F5 + "#7: !access_ok(userspace_addr, memory_size)"),
    Row("userspace_addr=top-user-page", slot(userspace_addr=(1 << 47) - P), errno.EINVAL,
        F5 + "#7: !access_ok(): the last x86-64 user address is below TASK_SIZE_MAX = 2^47 − page (seen EINVAL here)"),
    Row("userspace_addr=below-top", slot(userspace_addr=(1 << 47) - 2 * P), OK, F5 + "#7: inside user space (seen 0 here)"),
    Row("guest_phys_addr+size wraps", slot(guest_phys_addr=(1 << 64) - P, memory_size=2 * P), errno.EINVAL, F5 + "#10"),
    Row("npages=2^31", slot(memory_size=(1 << 31) * P), errno.EINVAL, F5 + "#11: > KVM_MEM_MAX_NR_PAGES = 2^31−1 pages"),
    Row("memory_size=0/no-slot", slot(memory_size=0), errno.EINVAL, F5 + "#12: delete with no slot there → EINVAL"),
    Row("memory_size=0/gmem-closed-fd", slot(memory_size=0, flags=GUEST_MEMFD, binding="closed"), errno.EINVAL,
        F5 + "#12: the guest_memfd fd is not looked at on delete"),
    Row("slot=32763", slot(slot=32763), OK, F5 + "#3: the last user slot on x86 (KVM_USER_MEM_SLOTS = 32764)"),
    Row("slot=32764", slot(slot=32764), errno.EINVAL, F5 + "#3: (u16)slot >= KVM_USER_MEM_SLOTS (x86: 32764) → EINVAL"),
    Row("slot=0xffff", slot(slot=0xFFFF), errno.EINVAL, F5 + "#3: (u16)slot >= KVM_USER_MEM_SLOTS"),
    Row("slot=as_id-1/two-spaces", slot(slot=1 << 16), OK, F5 + "#9: as_id 1 is OK on a default VM (2 address spaces)"),
    Row("slot=as_id-1/one-space", slot(slot=1 << 16, address_spaces=1), errno.EINVAL,
        F5 + "#9: … and EINVAL on a private-mem VM (1 address space)"),
    Row("slot=as_id-2", slot(slot=2 << 16), errno.EINVAL, F5 + "#9: as_id >= kvm_arch_nr_memslot_as_ids(kvm) → EINVAL"),
    Row("slot=as_id-2+closed", slot(slot=2 << 16, flags=GUEST_MEMFD, binding="closed"), errno.EINVAL,
        F5 + "every generic EINVAL (#2–#13) beats EBADF"),
    Row("gpa-beyond-52-bits", slot(guest_phys_addr=1 << 52), errno.EINVAL, F5 + "#19: gfn > kvm_mmu_max_gfn() (at most 52 bits)"),
    Row("gpa-below-52-bits", slot(guest_phys_addr=(1 << 52) - P), OK, F5 + "#19: 52 bits without TDP"),
    # guest_memfd binding
    Row("gmem-valid", slot(flags=GUEST_MEMFD), OK, SPEC_SLOT + "KVM_MEM_GUEST_MEMFD binds a guest_memfd range"),
    Row("gmem-whole-file", slot(flags=GUEST_MEMFD, memory_size=4 * P), OK, "facts §5 #18: offset + size ≤ i_size"),
    Row("gmem-closed", slot(flags=GUEST_MEMFD, binding="closed"), errno.EBADF, "spec: guest_memfd not an open fd → EBADF"),
    Row("gmem-not-gmem", slot(flags=GUEST_MEMFD, binding="not-gmem"), errno.EINVAL, "spec: an fd that is not a guest_memfd → EINVAL"),
    Row("gmem-other-vm", slot(flags=GUEST_MEMFD, binding="other-vm"), errno.EINVAL, "spec: … or one of another VM → EINVAL"),
    Row("gmem-offset=1", slot(flags=GUEST_MEMFD, guest_memfd_offset=1), errno.EINVAL, "spec: guest_memfd_offset not page aligned → EINVAL"),
    Row("offset-ignored-without-GUEST_MEMFD", slot(guest_memfd_offset=1, binding="closed"), OK,
        F5 + "guest_memfd and guest_memfd_offset are ignored unless KVM_MEM_GUEST_MEMFD is set"),
    Row("gmem-offset-past-eof", slot(flags=GUEST_MEMFD, guest_memfd_offset=4 * P), errno.EINVAL,
        "spec: offset + memory_size past the file's end → EINVAL"),
    Row("gmem-straddles-eof", slot(flags=GUEST_MEMFD, guest_memfd_offset=3 * P, memory_size=2 * P), errno.EINVAL,
        "spec: offset + memory_size past the file's end → EINVAL"),
    Row("gmem-offset-wraps", slot(flags=GUEST_MEMFD, guest_memfd_offset=(1 << 64) - P, memory_size=2 * P), errno.EINVAL,
        F5 + "#8: offset + memory_size < offset"),
    Row("gmem-bound/7.3", slot(flags=GUEST_MEMFD, bound=True), errno.EEXIST, "spec: a file range already bound → EEXIST on 7.3"),
    Row("gmem-bound/6.18", slot(flags=GUEST_MEMFD, bound=True, kernel=KernelData(range_bound_errno=errno.EINVAL)), errno.EINVAL,
        "spec: … but EINVAL on this machine's 6.18: per-kernel data"),
    # order between clauses with different errnos (facts §5, "Order matters")
    Row("closed+offset-unaligned", slot(flags=GUEST_MEMFD, binding="closed", guest_memfd_offset=1), errno.EINVAL,
        F5 + "every generic EINVAL (#2–#13) beats EBADF: a bad fd with an unaligned offset gives EINVAL"),
    Row("closed+gpa-beyond", slot(flags=GUEST_MEMFD, binding="closed", guest_phys_addr=1 << 52), errno.EBADF,
        F5 + "a bad fd (EBADF) beats a gfn beyond MAXPHYADDR"),
    Row("closed+bound", slot(flags=GUEST_MEMFD, binding="closed", bound=True), errno.EBADF,
        F5 + "a bad fd (EBADF) beats an already-bound file range"),
    Row("gpa-beyond+bound", slot(flags=GUEST_MEMFD, guest_phys_addr=1 << 52, bound=True), errno.EINVAL,
        F5 + "a gfn beyond MAXPHYADDR (EINVAL) beats an already-bound file range"),
    Row("LOG_DIRTY|GUEST_MEMFD+closed", slot(flags=GUEST_MEMFD | LOG_DIRTY, binding="closed"), errno.EINVAL,
        F5 + "#4 before #16"),
    Row("memory_size-unaligned+bound", slot(flags=GUEST_MEMFD, memory_size=P + 1, bound=True), errno.EINVAL,
        F5 + "every generic EINVAL beats EEXIST"),
]


@pytest.mark.parametrize("row", rows_param(REGION_ROWS))
def test_set_user_memory_region2(row: Row) -> None:
    """KVM_SET_USER_MEMORY_REGION2 clauses and their order (facts §5)."""
    check(row)


# -- the guest_memfd file ----------------------------------------------------------------------

FILE = 4 * P


def falloc(mode: int, offset: int = 0, length: int = P) -> Callable[[], Expect]:
    return lambda: rules.guest_memfd_fallocate(mode, offset, length, FILE, P)


F6 = "facts §6 fallocate "
HUGE = (1 << 63) - P  # page aligned; + 2 pages passes LLONG_MAX
FALLOCATE_ROWS = [
    Row("KEEP_SIZE", falloc(KEEP), OK, "spec: allocating inside the file"),
    Row("KEEP_SIZE/whole-file", falloc(KEEP, 0, FILE), OK, F6 + "G4a: offset + len ≤ i_size"),
    Row("KEEP|PUNCH", falloc(KEEP | PUNCH), OK, "spec: KEEP_SIZE | PUNCH_HOLE"),
    Row("mode=0", falloc(0), errno.EOPNOTSUPP, "spec: a mode without FALLOC_FL_KEEP_SIZE → EOPNOTSUPP"),
    Row("mode=0/len=0", falloc(0, 0, 0), errno.EINVAL, F6 + "mode=0, len=0 gives EINVAL (V1), not EOPNOTSUPP"),
    Row("KEEP/len=0", falloc(KEEP, 0, 0), errno.EINVAL, F6 + "V1: len <= 0"),
    Row("KEEP/len=-1", falloc(KEEP, 0, ONES), errno.EINVAL, F6 + "V1: len <= 0"),
    Row("KEEP/offset=-page", falloc(KEEP, (1 << 64) - P), errno.EINVAL, F6 + "V1: offset < 0"),
    Row("PUNCH-alone", falloc(PUNCH), errno.EOPNOTSUPP, F6 + "V3: PUNCH_HOLE without KEEP_SIZE"),
    Row("NO_HIDE_STALE", falloc(0x04), errno.EOPNOTSUPP, F6 + "V2: 0x04 NO_HIDE_STALE"),
    Row("KEEP|NO_HIDE_STALE", falloc(KEEP | 0x04), errno.EOPNOTSUPP, F6 + "V2"),
    Row("mode=0x100", falloc(0x100), errno.EOPNOTSUPP, F6 + "V2: bits ≥0x100"),
    Row("KEEP|ZERO_RANGE", falloc(KEEP | 0x10), errno.EOPNOTSUPP, "spec: bits other than KEEP_SIZE | PUNCH_HOLE → EOPNOTSUPP"),
    Row("KEEP|UNSHARE", falloc(KEEP | 0x40), errno.EOPNOTSUPP, "spec: bits other than KEEP_SIZE | PUNCH_HOLE → EOPNOTSUPP"),
    Row("KEEP|COLLAPSE", falloc(KEEP | 0x08), errno.EOPNOTSUPP, F6 + "V3: COLLAPSE with KEEP_SIZE"),
    Row("WRITE_ZEROES", falloc(0x80), errno.EOPNOTSUPP, F6 + "G1: no KEEP_SIZE"),
    Row("KEEP/offset=1", falloc(KEEP, 1), errno.EINVAL, "spec: offset or length not page aligned → EINVAL"),
    Row("KEEP/len=page-1", falloc(KEEP, 0, P - 1), errno.EINVAL, "spec: length not page aligned → EINVAL"),
    Row("mode=0/offset=1", falloc(0, 1), errno.EOPNOTSUPP, F6 + "an unaligned range with mode 0 gives EOPNOTSUPP (G1 before G3)"),
    Row("KEEP/straddles-eof", falloc(KEEP, 3 * P, 2 * P), errno.EINVAL, "spec: allocating past the file's end → EINVAL"),
    Row("KEEP/at-eof", falloc(KEEP, FILE), errno.EINVAL, F6 + "G4a: at, past, or partly past EOF"),
    Row("PUNCH/at-eof", falloc(KEEP | PUNCH, FILE), OK, "spec: punching a hole at or past the end → 0"),
    Row("PUNCH/past-eof", falloc(KEEP | PUNCH, 8 * P), OK, "spec: punching a hole at or past the end → 0"),
    Row("KEEP/sum=2^63", falloc(KEEP, HUGE, P), errno.EFBIG, F6 + "V4: sum > s_maxbytes (LLONG_MAX)"),
    Row("KEEP/past-LLONG_MAX", falloc(KEEP, HUGE, 2 * P), errno.EFBIG, F6 + "V4: EFBIG"),
    Row("KEEP/below-LLONG_MAX", falloc(KEEP, HUGE - P, P), errno.EINVAL, F6 + "G4a: not EFBIG, but past EOF"),
    Row("PUNCH/past-LLONG_MAX", falloc(KEEP | PUNCH, HUGE, 2 * P), errno.EFBIG,
        F6 + "punching a hole whose offset+len > LLONG_MAX gives EFBIG, not 0"),
    Row("KEEP/unaligned-overflow", falloc(KEEP, (1 << 63) - 1, P), errno.EFBIG,
        F6 + "an unaligned huge offset that overflows gives EFBIG (V4 before G3)"),
    Row("NO_HIDE_STALE/past-LLONG_MAX", falloc(0x04, HUGE, 2 * P), errno.EOPNOTSUPP,
        F6 + "V2 (NO_HIDE_STALE is outside FALLOC_FL_MODE_MASK) comes before V4 (seen here: EOPNOTSUPP)"),
    Row("WRITE_ZEROES/past-LLONG_MAX", falloc(0x80, HUGE, 2 * P), errno.EFBIG,
        F6 + "V2/V3 pass for WRITE_ZEROES without KEEP_SIZE, so V4 gives EFBIG before G1 (seen here: EFBIG)"),
    Row("ZERO|COLLAPSE/past-LLONG_MAX", falloc(0x18, HUGE, 2 * P), errno.EOPNOTSUPP,
        F6 + "V3: more than one mode bit → EOPNOTSUPP, before V4 (seen here: EOPNOTSUPP)"),
    Row("KEEP|COLLAPSE/past-LLONG_MAX", falloc(KEEP | 0x08, HUGE, 2 * P), errno.EOPNOTSUPP,
        F6 + "V3: COLLAPSE, INSERT or WRITE_ZEROES with KEEP_SIZE → EOPNOTSUPP, before V4 (seen here: EOPNOTSUPP)"),
]


@pytest.mark.parametrize("row", rows_param(FALLOCATE_ROWS))
def test_guest_memfd_fallocate(row: Row) -> None:
    """fallocate: the VFS checks first, then kvm_gmem_fallocate (facts §6)."""
    check(row)


def mmap_(gmem_flags: int, map_flags: int, prot: int = PROT_RW) -> Callable[[], Expect]:
    return lambda: rules.guest_memfd_mmap(gmem_flags, map_flags, prot, MMAP)


MMAP_ROWS = [
    Row("MMAP/shared", mmap_(MMAP, MAP_SHARED), OK, "spec: mmap only with GUEST_MEMFD_FLAG_MMAP and MAP_SHARED"),
    Row("MMAP|INIT_SHARED/shared", mmap_(MMAP | INIT_SHARED, MAP_SHARED), OK, "spec: with GUEST_MEMFD_FLAG_MMAP"),
    Row("MMAP/shared-validate", mmap_(MMAP, MAP_SHARED_VALIDATE), OK, "do_mmap: MAP_SHARED_VALIDATE is a shared mapping"),
    Row("no-MMAP/shared", mmap_(0, MAP_SHARED), errno.ENODEV, "spec: only with GUEST_MEMFD_FLAG_MMAP (else ENODEV)"),
    Row("no-MMAP/private", mmap_(0, MAP_PRIVATE), errno.ENODEV, "facts §6 mmap: MAP_PRIVATE without the MMAP flag gives ENODEV"),
    Row("MMAP/private", mmap_(MMAP, MAP_PRIVATE), errno.EINVAL, "spec: a private mapping → EINVAL"),
    Row("MMAP/shared/exec", mmap_(MMAP, MAP_SHARED, PROT_RWX), errno.EPERM, "facts §6 mmap: path_noexec with PROT_EXEC → EPERM"),
    Row("no-MMAP/shared/exec", mmap_(0, MAP_SHARED, PROT_RWX), errno.EPERM, "facts §6 mmap: EPERM comes before ENODEV"),
    Row("MMAP/private/exec", mmap_(MMAP, MAP_PRIVATE, PROT_RWX), errno.EPERM, "facts §6 mmap: EPERM first"),
    Row("no-MMAP/map-type-0", mmap_(0, 0), errno.EINVAL,
        "do_mmap: a map type that is neither shared nor private → EINVAL before the file is asked (seen here: EINVAL)"),
]


@pytest.mark.parametrize("row", rows_param(MMAP_ROWS))
def test_guest_memfd_mmap(row: Row) -> None:
    """mmap: noexec mount, MMAP flag, shared mapping, in do_mmap's order."""
    check(row)


IO_ROWS = [
    Row("read", lambda: rules.guest_memfd_io("read"), errno.EINVAL, "spec: read and write → EINVAL (no read or write operations)"),
    Row("write", lambda: rules.guest_memfd_io("write"), errno.EINVAL, "spec: read and write → EINVAL"),
    Row("pread", lambda: rules.guest_memfd_io("pread"), errno.ESPIPE, "spec: pread and pwrite → ESPIPE (not seekable)"),
    Row("pwrite", lambda: rules.guest_memfd_io("pwrite", P), errno.ESPIPE, "spec: pread and pwrite → ESPIPE"),
    Row("pread/pos=-1", lambda: rules.guest_memfd_io("pread", ONES), errno.EINVAL, "facts §6: a negative pos gives EINVAL first"),
    Row("pwrite/pos=2^63", lambda: rules.guest_memfd_io("pwrite", 1 << 63), errno.EINVAL, "facts §6: negative pos → EINVAL"),
    Row("pread/pos=2^63-1", lambda: rules.guest_memfd_io("pread", (1 << 63) - 1), errno.ESPIPE, "facts §6: ESPIPE"),
    Row("read/offset-ignored", lambda: rules.guest_memfd_io("read", ONES), errno.EINVAL, "read has no position"),
]


@pytest.mark.parametrize("row", rows_param(IO_ROWS))
def test_guest_memfd_io(row: Row) -> None:
    """read/write and pread/pwrite on a file without read, write or llseek."""
    check(row)


# -- dispatch and pointers ---------------------------------------------------------------------


def test_absent_ioctl_is_enotty() -> None:
    """spec: the same nr with another size or direction is a different ioctl (ENOTTY)."""
    e = rules.absent_ioctl("KVM_SET_MEMORY_ATTRIBUTES2", "a VM of type 0")
    assert e.errno == errno.ENOTTY and "a VM of type 0" in e.clause and "KVM_SET_MEMORY_ATTRIBUTES2" in e.clause


def test_bad_pointer_is_efault() -> None:
    """spec: NULL or unmapped pointer → EFAULT."""
    e = rules.bad_pointer("KVM_CREATE_GUEST_MEMFD", "a NULL pointer")
    assert e.errno == errno.EFAULT and "NULL" in e.clause


# -- Expect and the helpers ----------------------------------------------------------------------


def test_expect_matches() -> None:
    """A verdict compares raw results (>= 0 or -errno) with the expected answer."""
    ok, inval = Expect(0, "r", "c"), Expect(errno.EINVAL, "r", "c")
    assert ok.ok and ok.matches(0) and ok.matches(7) and not ok.matches(-errno.EINVAL)
    assert not inval.ok and inval.matches(-errno.EINVAL) and not inval.matches(0) and not inval.matches(-errno.ENOTTY)
    assert not inval.matches(errno.EINVAL)  # a positive result is success, not this errno
    assert (str(ok), str(inval)) == ("success", "EINVAL")


def test_helpers() -> None:
    """64-bit arithmetic as the kernel does it: unsigned wrap, signed loff_t."""
    assert wraps((1 << 64) - P, P) and not wraps((1 << 64) - 2 * P, P) and wraps(ONES, 1)
    assert as_s64(1 << 63) == -(1 << 63) and as_s64(ONES) == -1 and as_s64((1 << 63) - 1) == (1 << 63) - 1
    assert rules.aligned(0, P) and rules.aligned(3 * P, P) and not rules.aligned(P - 1, P)
    assert KernelData().range_bound_errno == errno.EEXIST


def test_rules_follow_the_page_size() -> None:
    """The page size is an input (sysconf), never a literal: a 64 KiB page changes the answers."""
    big = 16 * P
    assert rules.create_guest_memfd({"size": P}, GMEM, 0, big).errno == errno.EINVAL
    assert rules.create_guest_memfd({"size": big}, GMEM, 0, big).ok
    assert rules.guest_memfd_fallocate(KEEP, P, P, 4 * big, big).errno == errno.EINVAL


def test_guest_memfd_mapping_rules() -> None:
    """madvise, mbind and host accesses on a guest_memfd mapping, from guest_memfd_test.c:
    test_collapse, test_mbind, test_fault_overflow and test_fault_private."""
    pmd = PAGE_SIZE << 9
    assert rules.guest_memfd_madvise(14, pmd).errno == 0  # MADV_HUGEPAGE
    assert rules.guest_memfd_madvise(25, pmd).errno == errno.EINVAL  # MADV_COLLAPSE
    assert rules.guest_memfd_madvise(4, pmd).errno == 0  # MADV_DONTNEED
    assert rules.guest_memfd_madvise(14, 0).errno == errno.EINVAL  # no CONFIG_TRANSPARENT_HUGEPAGE
    node0 = 1
    assert [rules.guest_memfd_mbind(mode, node0, node0).errno for mode in (3, 2)] == [0, 0]  # INTERLEAVE, BIND
    assert rules.guest_memfd_mbind(0, 0, node0).errno == 0
    assert rules.guest_memfd_mbind(0, node0, node0).errno == errno.EINVAL
    assert rules.guest_memfd_mbind(999, node0, node0).errno == errno.EINVAL
    assert rules.guest_memfd_mbind(2, 2, node0).errno == errno.EINVAL  # node 1 has no memory
    assert rules.guest_memfd_mbind(2, node0, 0).errno == errno.ENOSYS  # no CONFIG_NUMA
    size = 4 * PAGE_SIZE
    past = rules.guest_memfd_touch(0, 4 * size, size, shared=True)
    assert (past.signal, past.at) == (7, size)  # SIGBUS at i_size, the bytes before it written
    assert rules.guest_memfd_touch(size, 1, size, shared=True).signal == 7
    assert rules.guest_memfd_touch(0, size, size, shared=False).at == 0
    assert rules.guest_memfd_touch(0, size, size, shared=True).signal == 0
