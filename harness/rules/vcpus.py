"""KVM_CREATE_VCPU: a vCPU of a VM, by id."""

from __future__ import annotations

import errno

from harness.abi.linux import MAP_SHARED, PROT_EXEC, U64
from harness.rules import Expect


def create_vcpu(vcpu_id: int, max_vcpu_id: int, max_vcpus: int, taken: bool = False, created: int = 0,
                lowered: int | None = None) -> Expect:
    """KVM_CREATE_VCPU (api.rst 4.7): "the vcpu id is an integer in the range [0, max_vcpu_id)"
    where max_vcpu_id is KVM_CAP_MAX_VCPU_ID on the VM, else EINVAL (the argument is an
    unsigned long, compared whole: kvm_main.c:4231-4232); "the maximum possible value for
    max_vcpus" is KVM_CAP_MAX_VCPUS: with that many created, another → EINVAL
    (kvm_main.c:4234-4235); an id already created → EEXIST (kvm_main.c:4237-4238); an id at
    or above the VM's own limit, `lowered` by KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) ("the
    maximum vcpu id of the VM"), → EINVAL (kvm_arch_vcpu_precreate, x86.c:9337-9338);
    returns a new vCPU fd."""
    rule = "KVM_CREATE_VCPU rules"
    if vcpu_id & U64 >= max_vcpu_id:
        return Expect(errno.EINVAL, rule, "vcpu id ≥ KVM_CAP_MAX_VCPU_ID → EINVAL")
    if created >= max_vcpus:
        return Expect(errno.EINVAL, rule, "KVM_CAP_MAX_VCPUS vCPUs created already → EINVAL")
    if taken:
        return Expect(errno.EEXIST, rule, "a vcpu id already created → EEXIST")
    if lowered is not None and vcpu_id >= lowered:
        return Expect(errno.EINVAL, rule, "vcpu id ≥ the VM's KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) → EINVAL")
    return Expect(0, rule, "a new vcpu id below KVM_CAP_MAX_VCPU_ID → a new vCPU fd")


def set_boot_cpu_id(boot_id: int, max_vcpu_id: int, created: bool = False, lowered: int = 0) -> Expect:
    """KVM_SET_BOOT_CPU_ID (api.rst 4.41, x86.c:4602-4613): "Define which vcpu is the
    Bootstrap Processor (BSP)"; "This ioctl has to be called before vcpu creation,
    otherwise it will return EBUSY error"; an id above KVM_MAX_VCPU_IDS (what KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPU_ID)
    answers, x86.c:2354-2355), or above the VM's limit KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) set,
    → EINVAL. The argument is an unsigned long compared whole, and the bound is `>`: the id
    equal to the limit is accepted."""
    rule = "KVM_SET_BOOT_CPU_ID rules"
    if created:
        return Expect(errno.EBUSY, rule, "a vCPU already created → EBUSY")
    if boot_id & U64 > max_vcpu_id:
        return Expect(errno.EINVAL, rule, "an id above KVM_CAP_MAX_VCPU_ID → EINVAL")
    if lowered and boot_id > lowered:
        return Expect(errno.EINVAL, rule, "an id above the VM's KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) → EINVAL")
    return Expect(0, rule, "an id no higher than the vCPU id limit, before any vCPU → 0")


def vcpu_mmap(offset: int, length: int, prot: int, map_flags: int, ring_bytes: int, ring_page: int, page: int) -> Expect:
    """mmap of a vCPU fd (kvm_vcpu_mmap, kvm_main.c:4139-4151): a mapping whose first or last
    page is in the dirty ring (kvm_page_in_dirty_ring, kvm_main.c:4098-4107: pages
    [KVM_DIRTY_LOG_PAGE_OFFSET, + dirty_ring_size / PAGE_SIZE), none without a ring) must be
    MAP_SHARED and not executable, else EINVAL; any other range maps (a fault on a page the vCPU has not is
    SIGBUS). Before it, do_mmap: length 0 → EINVAL, and the vCPU fd is an anon inode on a
    pseudo fs, which is SB_I_NOEXEC (init_pseudo, fs/libfs.c:738): PROT_EXEC → EPERM
    (mm/mmap.c:479-481)."""
    rule = "vCPU mmap rules"
    if length == 0:
        return Expect(errno.EINVAL, rule, "length 0 → EINVAL (do_mmap)")
    if prot & PROT_EXEC:
        return Expect(errno.EPERM, rule, "PROT_EXEC on the noexec anon inode pseudo fs → EPERM (do_mmap)")
    ring = range(ring_page, ring_page + ring_bytes // page)
    if (offset // page in ring or (offset + length - 1) // page in ring) and not map_flags & MAP_SHARED:
        return Expect(errno.EINVAL, rule, "a dirty ring page mapped without MAP_SHARED → EINVAL")
    return Expect(0, rule, "a mapping of the vCPU's pages → 0")
