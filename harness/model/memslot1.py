"""The model's KVM_SET_USER_MEMORY_REGION (v1): kvm_vm_ioctl_set_memory_region's own
flags check, then the v2 path on a zeroed v2 struct (kvm_main.c:5228-5261).

A family module: `HANDLERS` maps each ioctl to a function of the model and the call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.model.state import Handle

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend


def set_memory_region_v1(model: ModelBackend, handle: Handle, arg: int) -> int:
    """Copy the 32 bytes of v1 into a zeroed v2; flags other than LOG_DIRTY_PAGES and READONLY → EINVAL."""
    name, fd = "KVM_SET_USER_MEMORY_REGION", handle.kind
    c = model.facts.constants
    v1 = model.copy_in(name, arg, fd)
    model.check(f"{name}.v1-flags", bool(v1["flags"] & ~(c["KVM_MEM_LOG_DIRTY_PAGES"] | c["KVM_MEM_READONLY"])), fd)
    v2 = dict.fromkeys((w.label for w in model.facts.structs["kvm_userspace_memory_region2"].words()), 0) | v1
    return model.memslot(name, fd, model.vm_of(handle), v2)


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_SET_USER_MEMORY_REGION": set_memory_region_v1,
}
