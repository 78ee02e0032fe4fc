"""KVM_ENABLE_CAP's rule on its own: rows from api.rst 4.37 and kvm_main.c:4999-5149
(docs/kernel-7.3-facts.md, "KVM_ENABLE_CAP")."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import replace

import pytest

from harness.abi.fdkind import FdKind
from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import load_profile
from harness.rules.enable_cap import EnableCapInput, enable_cap

STRUCT = load_profile("released").structs["kvm_enable_cap"]
RING, MANUAL = "KVM_CAP_DIRTY_LOG_RING", "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2"
HALT, PV = "KVM_CAP_HALT_POLL", "KVM_CAP_ENFORCE_PV_FEATURE_CPUID"
IDS, QUIRKS = "KVM_CAP_MAX_VCPU_ID", "KVM_CAP_DISABLE_QUIRKS2"
VALUES = {RING: 1 << 20, MANUAL: 3, HALT: 1, PV: 1, IDS: 4096, QUIRKS: 0xDFF}


def sent(cap: str | None, values: Mapping[str, int] | None = None, fd: FdKind = FdKind.VM, ring: bool = False,
         vcpu: bool = False, lowered: int = 0, boot: int = 0) -> EnableCapInput:
    return EnableCapInput(values or {}, STRUCT, fd, cap, VALUES.get(cap or "", 0), PAGE_SIZE, ring, vcpu, lowered, boot)


ROWS = [
    ("manual-off", sent(MANUAL), 0), ("manual-enable", sent(MANUAL, {"args[0]": 1}), 0),
    ("manual-both", sent(MANUAL, {"args[0]": 3}), 0), ("manual-initially-set-alone", sent(MANUAL, {"args[0]": 2}), errno.EINVAL),
    ("manual-flags", sent(MANUAL, {"flags": 1}), errno.EINVAL), ("manual-args1", sent(MANUAL, {"args[1]": 1}), errno.EINVAL),
    ("manual-pad", sent(MANUAL, {"pad[5]": 1}), errno.EINVAL), ("manual-on-vcpu", sent(MANUAL, fd=FdKind.VCPU), errno.EINVAL),
    ("halt-u32", sent(HALT, {"args[0]": 0xFFFFFFFF}), 0), ("halt-wider", sent(HALT, {"args[0]": 1 << 32}), errno.EINVAL),
    ("ring-64k", sent(RING, {"args[0]": 1 << 16}), 0), ("ring-0", sent(RING), errno.EINVAL),
    ("ring-not-pow2", sent(RING, {"args[0]": 3 << 12}), errno.EINVAL), ("ring-below-page", sent(RING, {"args[0]": 2048}), errno.EINVAL),
    ("ring-max", sent(RING, {"args[0]": 1 << 20}), 0), ("ring-past-max", sent(RING, {"args[0]": 1 << 21}), errno.E2BIG),
    ("ring-u32-cut", sent(RING, {"args[0]": (1 << 32) | (1 << 16)}), errno.EINVAL),
    ("ring-twice", sent(RING, {"args[0]": 1 << 16}, ring=True), errno.EINVAL),
    ("ring-after-vcpu", sent(RING, {"args[0]": 1 << 16}, vcpu=True), errno.EINVAL),
    ("bitmap-on-x86", sent("KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP", ring=True), errno.EINVAL),
    ("pv-on-vcpu", sent(PV, fd=FdKind.VCPU, values={"args[0]": 1}), 0), ("pv-on-vm", sent(PV), errno.EINVAL),
    ("no-such-cap", sent(None), errno.EINVAL),
    # x86.c:4138-4153 and 9334-9335: at most KVM_MAX_VCPU_IDS, once; a vCPU sets it to KVM_MAX_VCPU_IDS
    ("ids-max", sent(IDS, {"args[0]": 4096}), 0), ("ids-past-max", sent(IDS, {"args[0]": 4097}), errno.EINVAL),
    ("ids-0", sent(IDS), 0), ("ids-after-vcpu", sent(IDS, {"args[0]": 16}, vcpu=True), errno.EINVAL),
    ("ids-max-after-vcpu", sent(IDS, {"args[0]": 4096}, vcpu=True), 0), ("ids-0-after-vcpu", sent(IDS, vcpu=True), errno.EINVAL),
    ("ids-same-again", sent(IDS, {"args[0]": 16}, lowered=16), 0),
    ("ids-other-again", sent(IDS, {"args[0]": 32}, lowered=16), errno.EINVAL),
    # x86.c:4144: not below KVM_SET_BOOT_CPU_ID's id (max_vcpuid_cap_test.c:29-37)
    # x86.c:3963-3966: only the quirks KVM_CHECK_EXTENSION gives (here all of 0..11 but IGNORE_GUEST_PAT)
    ("quirks-slot-zap", sent(QUIRKS, {"args[0]": 0x80}), 0), ("quirks-unsupported", sent(QUIRKS, {"args[0]": 0x200}), errno.EINVAL),
    ("quirks-past", sent(QUIRKS, {"args[0]": 1 << 12}), errno.EINVAL), ("quirks-none", sent(QUIRKS), 0),
    ("ids-below-boot", sent(IDS, {"args[0]": 1}, boot=2), errno.EINVAL), ("ids-at-boot", sent(IDS, {"args[0]": 2}, boot=2), 0),
]


@pytest.mark.parametrize(("name", "given", "want"), ROWS, ids=[r[0] for r in ROWS])
def test_enable_cap(name: str, given: EnableCapInput, want: int) -> None:
    got = enable_cap(given)
    assert got.errno == want, f"{name}: rule gives {got} ({got.clause})"


def test_ring_minimum_counts_pml_entries() -> None:
    """On an Intel host with PML, kvm_dirty_ring_get_rsvd_entries() adds its 512 entries
    (dirty_ring.c:19-21): a 4 KiB ring is too small there, 16 KiB is the least."""
    pml = 512
    for size, want in ((PAGE_SIZE, errno.EINVAL), (2 * PAGE_SIZE, errno.EINVAL), (4 * PAGE_SIZE, 0)):
        e = replace(sent(RING, {"args[0]": size}), cpu_dirty_log_size=pml)
        assert enable_cap(e).errno == want, size
    assert enable_cap(sent(RING, {"args[0]": PAGE_SIZE})).errno == 0
