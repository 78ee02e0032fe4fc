"""KVM_CREATE_VCPU: a vCPU of a VM, by id."""

from __future__ import annotations

import errno

from harness.abi.linux import U64
from harness.rules import Expect


def create_vcpu(vcpu_id: int, max_vcpu_id: int, taken: bool) -> Expect:
    """KVM_CREATE_VCPU (api.rst 4.7): "the vcpu id is an integer in the range [0, max_vcpu_id)"
    where max_vcpu_id is KVM_CAP_MAX_VCPU_ID on the VM, else EINVAL (the argument is an
    unsigned long, compared whole: kvm_main.c:4231-4232); an id already created → EEXIST
    (kvm_main.c:4237-4238); returns a new vCPU fd."""
    rule = "KVM_CREATE_VCPU rules"
    if vcpu_id & U64 >= max_vcpu_id:
        return Expect(errno.EINVAL, rule, "vcpu id ≥ KVM_CAP_MAX_VCPU_ID → EINVAL")
    if taken:
        return Expect(errno.EEXIST, rule, "a vcpu id already created → EEXIST")
    return Expect(0, rule, "a new vcpu id below KVM_CAP_MAX_VCPU_ID → a new vCPU fd")

