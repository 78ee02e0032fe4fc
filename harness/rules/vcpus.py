"""KVM_CREATE_VCPU: a vCPU of a VM, by id."""

from __future__ import annotations

import errno

from harness.abi.linux import U64
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
