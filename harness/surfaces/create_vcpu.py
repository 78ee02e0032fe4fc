"""vCPUs: KVM_CREATE_VCPU by id, and KVM_CHECK_EXTENSION asked on a vCPU fd (the third
scope). Neither takes a struct, so the family declares tables and rules, no surfaces."""

from __future__ import annotations

from harness.abi.fdkind import FdKind
from harness.abi.linux import U64
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.surfaces.base import Surface

# ids at the edges of KVM_CAP_MAX_VCPU_ID (4096 by default on x86), of KVM_CAP_MAX_VCPUS
# (1024) and of the widths an unsigned long could be cut to
VCPU_IDS = (0, 1, 0xFF, 0x100, 0x3FF, 0x400, 0xFFF, 1 << 12, (1 << 12) + 1, 1 << 31, 1 << 32, (1 << 32) + 1, U64)


LOWERED = (1, 16)  # KVM_ENABLE_CAP(KVM_CAP_MAX_VCPU_ID) limits a case sets before its vCPU


def vcpu_ids(t: Plan) -> list[Case]:
    """KVM_CREATE_VCPU with each id, on a VM without vCPUs, on one where the id is taken, and
    on one whose id limit KVM_CAP_MAX_VCPU_ID was lowered (the last id below it, and it)."""
    cases = [Case("caps", "KVM_CREATE_VCPU", FdKind.VM, vt, (("id", i),)) for vt in t.vm_types for i in VCPU_IDS]
    cases += [Case("caps", "KVM_CREATE_VCPU", FdKind.VM, vt, (("id", i),), knobs=(("taken", 1),))
              for vt in t.vm_types for i in (0, 1, 0xFFF)]
    cases += [Case("caps", "KVM_CREATE_VCPU", FdKind.VM, vt, (("id", i),), knobs=(("max_vcpu_id", n),))
              for vt in t.vm_types for n in LOWERED for i in (n - 1, n)]
    return cases


def vcpu_fill(t: Plan) -> list[Case]:
    """KVM_CAP_MAX_VCPUS vCPUs on one VM of each type, then one more (suites/test_limits.py)."""
    return [Case("caps", "KVM_CREATE_VCPU", FdKind.VM, vt, tag="every-vcpu") for vt in t.vm_types]


def vcpu_caps(t: Plan) -> list[Case]:
    """KVM_CHECK_EXTENSION of every cap the ABI facts name, on a vCPU fd."""
    return [Case("caps", "KVM_CHECK_EXTENSION", FdKind.VCPU, vt, knobs=(("cap", cap),))
            for vt in t.vm_types for cap in sorted(t.caps.system)]


SURFACES: tuple[Surface, ...] = ()
TABLES = {"vcpu_ids": vcpu_ids, "vcpu_caps": vcpu_caps, "vcpu_fill": vcpu_fill}
OTHER_RULES = {"create_vcpu": "KVM_CREATE_VCPU: ids below KVM_CAP_MAX_VCPU_ID (or the VM's lowered limit), each once, "
                              "at most KVM_CAP_MAX_VCPUS"}
