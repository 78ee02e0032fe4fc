"""The model's KVM_ENABLE_CAP (kvm_main.c kvm_vm_ioctl_enable_cap_generic, x86.c
kvm_vm_ioctl_enable_cap and kvm_vcpu_ioctl_enable_cap) for the memory caps and the vCPU id limit, with the hygiene rules kept: flags,
the args[] a cap does not read and pad[] must be zero.

A family module: `HANDLERS` maps each ioctl to a function of the model and the call;
`CAPS` gives the values of the caps it brings, the same at both scopes.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.fdkind import FdKind
from harness.abi.linux import PAGE_SIZE, U32
from harness.model.state import Handle
from harness.model.vcpu import MAX_VCPU_IDS

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend

RING_MAX = 65536 * 16  # KVM_DIRTY_RING_MAX_ENTRIES entries of 16 bytes
RING_MIN = max(64 * 16, PAGE_SIZE)  # the reserved entries, or a page (a host without PML)
MANUAL_CAPS = 3  # KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET (x86)
QUIRKS = 0xFFF  # supported_quirks: KVM_X86_VALID_QUIRKS, bits 0..11 (x86.c:135-147), none removed
CAPS: Mapping[str, int] = {
    "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2": MANUAL_CAPS, "KVM_CAP_HALT_POLL": 1, "KVM_CAP_ENFORCE_PV_FEATURE_CPUID": 1,
    "KVM_CAP_DIRTY_LOG_RING": RING_MAX, "KVM_CAP_DIRTY_LOG_RING_ACQ_REL": RING_MAX, "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP": 0,
    "KVM_CAP_DISABLE_QUIRKS2": QUIRKS,
}
ARGS = {"KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP": 0}  # the args[] a cap reads: args[0] unless listed


def enable_cap(model: ModelBackend, handle: Handle, arg: int) -> int:
    """Flags, unused args[] and pad[] first, then the cap's own checks; a cap this fd
    cannot enable → EINVAL."""
    name, fd = "KVM_ENABLE_CAP", handle.kind
    vm = model.vm_of(handle)
    v = model.copy_in(name, arg, fd)
    cap = model.cap_names.get(v["cap"], "")
    vm_caps = {c for c in CAPS if c != "KVM_CAP_ENFORCE_PV_FEATURE_CPUID"} | {"KVM_CAP_MAX_VCPU_ID"}
    model.check(f"{name}.cap", cap not in (vm_caps if fd == FdKind.VM else {"KVM_CAP_ENFORCE_PV_FEATURE_CPUID"}), fd)
    model.check(f"{name}.flags", v["flags"] != 0, fd)
    for i in range(ARGS.get(cap, 1), 4):
        model.check(f"{name}.args[{i}]", v[f"args[{i}]"] != 0, fd)
    model.zero_words(name, model.facts.structs["kvm_enable_cap"], v, fd)
    size = v["args[0]"]
    if cap == "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2":
        model.check(f"{name}.manual", bool(size & ~(MANUAL_CAPS if size & 1 else 1)), fd)
        vm.manual_protect = size
    elif cap == "KVM_CAP_DISABLE_QUIRKS2":
        model.check(f"{name}.quirks", bool(size & ~QUIRKS), fd)
        vm.disabled_quirks |= size
    elif cap == "KVM_CAP_HALT_POLL":
        model.check(f"{name}.halt-poll", size > U32, fd)
    elif cap in ("KVM_CAP_DIRTY_LOG_RING", "KVM_CAP_DIRTY_LOG_RING_ACQ_REL"):
        model.check(f"{name}.ring-pow2", size == 0 or bool(size & (size - 1)), fd)
        model.check(f"{name}.ring-min", size < RING_MIN, fd)
        model.check(f"{name}.ring-max", size > RING_MAX, fd, errno.E2BIG)
        model.check(f"{name}.ring-once", vm.dirty_ring != 0, fd)
        model.check(f"{name}.ring-vcpus", bool(vm.vcpus), fd)
        vm.dirty_ring = size
    elif cap == "KVM_CAP_MAX_VCPU_ID":
        # x86.c:4138-4153: no higher than KVM_MAX_VCPU_IDS, nor below the boot vCPU id;
        # once set (here or by the first vCPU), only that value
        model.check(f"{name}.max-vcpu-id", size > MAX_VCPU_IDS, fd)
        model.check(f"{name}.max-vcpu-id-boot", vm.bsp_vcpu_id > size, fd)
        model.check(f"{name}.max-vcpu-id-set", vm.max_vcpu_ids not in (0, size), fd)
        vm.max_vcpu_ids = size
    elif cap == "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP":
        model.check(f"{name}.bitmap", True, fd)  # x86 has no CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP
    return 0


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_ENABLE_CAP": enable_cap,
}
