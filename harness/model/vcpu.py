"""The model's vCPUs: KVM_GET_VCPU_MMAP_SIZE and KVM_CREATE_VCPU (kvm_main.c).

A family module: `HANDLERS` maps each ioctl to a function of the model and the call;
the model backend registers them (`harness.model.backend.FAMILIES`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.fdkind import FdKind
from harness.abi.linux import PAGE_SIZE, U32
from harness.model.state import Handle, VcpuState

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend

MMAP_PAGES = 3  # kvm_run, the PIO data page and the coalesced MMIO ring (x86)
MAX_VCPUS, MAX_VCPU_IDS = 1024, 4096  # x86 KVM_MAX_VCPUS and KVM_MAX_VCPU_IDS by default


def vcpu_mmap_size(model: ModelBackend, handle: Handle, arg: int) -> int:
    """KVM_GET_VCPU_MMAP_SIZE: the length of a vCPU's mapping."""
    return MMAP_PAGES * PAGE_SIZE


def create_vcpu(model: ModelBackend, handle: Handle, arg: int) -> int:
    """kvm_vm_ioctl_create_vcpu(): an id below KVM_MAX_VCPU_IDS (EINVAL), at most
    KVM_MAX_VCPUS vCPUs (EINVAL), an id not taken yet (EEXIST); then kvm_arch_vcpu_precreate():
    the VM's id limit, KVM_MAX_VCPU_IDS unless KVM_CAP_MAX_VCPU_ID lowered it (EINVAL). A
    vCPU outlives its fd: it is the VM's until the VM goes."""
    name, fd = "KVM_CREATE_VCPU", handle.kind
    vm = model.vm_of(handle)
    model.check(f"{name}.id", arg >= MAX_VCPU_IDS, fd)
    model.check(f"{name}.count", len(vm.vcpus) >= MAX_VCPUS, fd)
    model.check(f"{name}.duplicate", arg in vm.vcpus, fd, errno.EEXIST)
    vm.max_vcpu_ids = vm.max_vcpu_ids or MAX_VCPU_IDS
    # kvm_arch_vcpu_precreate() takes an unsigned int: only the check above sees the id whole
    model.check(f"{name}.lowered", arg & U32 >= vm.max_vcpu_ids, fd)
    vm.vcpus.add(arg)
    return model.open_handle(Handle(FdKind.VCPU, vm=vm, vcpu=VcpuState(arg)))


def set_boot_cpu_id(model: ModelBackend, handle: Handle, arg: int) -> int:
    """KVM_SET_BOOT_CPU_ID (x86.c:4602-4613): before any vCPU (EBUSY), an id no higher than
    KVM_MAX_VCPU_IDS nor than the VM's limit, when one is set (EINVAL)."""
    name, fd = "KVM_SET_BOOT_CPU_ID", handle.kind
    vm = model.vm_of(handle)
    model.check(f"{name}.busy", bool(vm.vcpus), fd, errno.EBUSY)
    model.check(f"{name}.id", arg > MAX_VCPU_IDS, fd)
    model.check(f"{name}.lowered", bool(vm.max_vcpu_ids) and arg > vm.max_vcpu_ids, fd)
    vm.bsp_vcpu_id = arg
    return 0


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_GET_VCPU_MMAP_SIZE": vcpu_mmap_size,
    "KVM_CREATE_VCPU": create_vcpu,
    "KVM_SET_BOOT_CPU_ID": set_boot_cpu_id,
}
