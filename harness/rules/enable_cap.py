"""KVM_ENABLE_CAP on a VM and on a vCPU, for the memory caps."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.facts import Struct
from harness.abi.fdkind import FdKind
from harness.abi.linux import U32, U64
from harness.rules import Expect, _reserved_set

DIRTY_RING_RSVD_ENTRIES = 64  # KVM_DIRTY_RING_RSVD_ENTRIES (kvm_host.h:2541)
DIRTY_GFN_SIZE = 16  # sizeof(struct kvm_dirty_gfn)
RINGS = ("KVM_CAP_DIRTY_LOG_RING", "KVM_CAP_DIRTY_LOG_RING_ACQ_REL")
# the args[] each cap reads; every other args[i] is unused and must be zero
ARGS_USED: Mapping[str, int] = {
    "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2": 1, "KVM_CAP_HALT_POLL": 1, "KVM_CAP_DIRTY_LOG_RING": 1,
    "KVM_CAP_DIRTY_LOG_RING_ACQ_REL": 1, "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP": 0, "KVM_CAP_ENFORCE_PV_FEATURE_CPUID": 1,
    "KVM_CAP_MAX_VCPU_ID": 1, "KVM_CAP_DISABLE_QUIRKS2": 1,
}
VM_CAPS = frozenset(ARGS_USED) - {"KVM_CAP_ENFORCE_PV_FEATURE_CPUID"}
VCPU_CAPS = frozenset({"KVM_CAP_ENFORCE_PV_FEATURE_CPUID"})


def dirty_ring_min_bytes(gfn_size: int, cpu_dirty_log_size: int, page_size: int) -> int:
    """The smallest ring KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING) takes: a power of two, at
    least a page and the reserved entries (kvm_vm_ioctl_enable_dirty_log_ring())."""
    least = max(page_size, (DIRTY_RING_RSVD_ENTRIES + cpu_dirty_log_size) * gfn_size)
    return 1 << (least - 1).bit_length()


@dataclass(frozen=True)
class EnableCapInput:
    """`kvm_enable_cap` as sent, the cap's name (None: a number no cap has), KVM_CHECK_EXTENSION
    of it on the VM, and the VM's state: a dirty ring already enabled, a vCPU created, the
    KVM_CAP_MAX_VCPU_ID enabled before (0: none), the id KVM_SET_BOOT_CPU_ID set (0: none)."""

    values: Mapping[str, int]
    struct: Struct
    fd: FdKind
    cap: str | None
    cap_value: int
    page: int
    ring_set: bool = False
    has_vcpu: bool = False
    lowered: int = 0
    boot: int = 0
    cpu_dirty_log_size: int = 0  # the host's kvm_cpu_dirty_log_size(): reserved ring entries besides the 64

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64


def enable_cap(e: EnableCapInput) -> Expect:
    """KVM_ENABLE_CAP (api.rst 4.37): "flags: has to be 0 for now"; "args: arguments for
    enabling a feature", so by the hygiene rules the args[] a cap does not read, and pad[],
    must be zero; a cap this fd cannot enable → EINVAL. Per cap (api.rst 7.x, kvm_main.c
    kvm_vm_ioctl_enable_cap_generic): MANUAL_DIRTY_LOG_PROTECT2 takes the bits its
    KVM_CHECK_EXTENSION gives, INITIALLY_SET only with ENABLE; HALT_POLL a u32 of
    nanoseconds; DIRTY_LOG_RING{,_ACQ_REL} a ring size in bytes, "a power of two, at least a
    page and the reserved entries, at most what KVM_CHECK_EXTENSION returns (E2BIG)", once,
    before any vCPU; MAX_VCPU_ID (api.rst 7.27, x86.c:4138-4153) a vCPU id limit no higher than
    KVM_CHECK_EXTENSION gives, not below the boot vCPU's id (x86.c:4144), once: the VM's limit is set by the first enable, or by the
    first vCPU to KVM_CHECK_EXTENSION's (x86.c:9334-9335), and only that same value is
    accepted after (0 while none is set sets nothing); a cap whose KVM_CHECK_EXTENSION is 0
    cannot be enabled; DISABLE_QUIRKS2 (api.rst 7.31, x86.c:3963-3973) a set of quirks to
    disable, only bits KVM_CHECK_EXTENSION gives (kvm_caps.supported_quirks, x86.c:2408-2409),
    such as KVM_X86_QUIRK_SLOT_ZAP_ALL; others → EINVAL."""
    rule = "KVM_ENABLE_CAP rules"
    cap, arg0 = e.cap, e.get("args[0]")
    known = VCPU_CAPS if e.fd == FdKind.VCPU else VM_CAPS
    if cap not in known:
        return Expect(errno.EINVAL, rule, f"a cap a {e.fd} fd cannot enable → EINVAL")
    if e.get("flags"):
        return Expect(errno.EINVAL, rule, "flags ≠ 0 → EINVAL (has to be 0 for now)")
    unused = next((f"args[{i}]" for i in range(ARGS_USED[cap], 4) if e.get(f"args[{i}]")), None)
    if unused is not None:
        return Expect(errno.EINVAL, rule, f"{unused} ≠ 0, which {cap} does not read → EINVAL (unused fields must be zero)")
    label = _reserved_set(e.struct, e.values)
    if label is not None:
        return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (padding must be zero)")
    if e.fd == FdKind.VM and not e.cap_value:
        return Expect(errno.EINVAL, rule, f"{cap} is 0 on the VM: it cannot be enabled → EINVAL")
    if cap == "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2" and arg0 & ~(e.cap_value if arg0 & 1 else 1):
        return Expect(errno.EINVAL, rule, "args[0] outside the cap's bits, or INITIALLY_SET without ENABLE → EINVAL")
    if cap == "KVM_CAP_DISABLE_QUIRKS2" and arg0 & ~e.cap_value:
        return Expect(errno.EINVAL, rule, "a quirk KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2) does not give → EINVAL")
    if cap == "KVM_CAP_HALT_POLL" and arg0 > U32:
        return Expect(errno.EINVAL, rule, "args[0] (nanoseconds) wider than a u32 → EINVAL")
    if cap in RINGS:
        if arg0 == 0 or arg0 & (arg0 - 1):
            return Expect(errno.EINVAL, rule, "a ring size that is not a power of two → EINVAL")
        if arg0 < dirty_ring_min_bytes(DIRTY_GFN_SIZE, e.cpu_dirty_log_size, e.page):
            return Expect(errno.EINVAL, rule, "a ring smaller than a page or its reserved entries (with PML's) → EINVAL")
        if arg0 > e.cap_value:
            return Expect(errno.E2BIG, rule, "a ring larger than KVM_CHECK_EXTENSION gives → E2BIG")
        if e.ring_set:
            return Expect(errno.EINVAL, rule, "a dirty ring already enabled → EINVAL (once only)")
        if e.has_vcpu:
            return Expect(errno.EINVAL, rule, "a vCPU already created → EINVAL (before any vCPU)")
    if cap == "KVM_CAP_MAX_VCPU_ID":
        if arg0 > e.cap_value:
            return Expect(errno.EINVAL, rule, "a vCPU id limit above KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPU_ID) → EINVAL")
        if e.boot > arg0:
            return Expect(errno.EINVAL, rule, "a vCPU id limit below KVM_SET_BOOT_CPU_ID's id → EINVAL")
        limit = e.lowered or (e.cap_value if e.has_vcpu else 0)
        if limit and arg0 != limit:
            return Expect(errno.EINVAL, rule, "the VM's vCPU id limit already set (enabled, or by a vCPU) to another value → EINVAL")
    if cap == "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP" and not e.ring_set:
        return Expect(errno.EINVAL, rule, "WITH_BITMAP without a dirty ring → EINVAL")
    return Expect(0, rule, f"{cap} enabled → 0")
