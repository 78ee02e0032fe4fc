"""vCPUs: KVM_CREATE_VCPU by id, KVM_SET_BOOT_CPU_ID, KVM_CHECK_EXTENSION asked on a vCPU fd
(the third scope), and mmap of a vCPU fd (its dirty ring). None takes a struct, so the family
declares tables and rules, no surfaces."""

from __future__ import annotations

from harness.abi.fdkind import FdKind
from harness.abi.linux import MAP_PRIVATE, MAP_SHARED, PROT_EXEC, PROT_READ, PROT_WRITE, U64
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.surfaces.base import FileCall, Surface

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


BOOT_IDS = (0, 1, 0xFFF, 1 << 12, (1 << 12) + 1, 1 << 32, U64)  # at KVM_MAX_VCPU_IDS (4096 on x86) and past it, wide


def boot_cpu_ids(t: Plan) -> list[Case]:
    """KVM_SET_BOOT_CPU_ID with each id on a VM without vCPUs; after a vCPU exists; on a VM
    whose id limit KVM_CAP_MAX_VCPU_ID was lowered (at the limit, and past it)."""
    name = "KVM_SET_BOOT_CPU_ID"
    cases = [Case("caps", name, FdKind.VM, vt, (("id", i),)) for vt in t.vm_types for i in BOOT_IDS]
    cases += [Case("caps", name, FdKind.VM, vt, (("id", i),), knobs=(("vcpu", 1),)) for vt in t.vm_types for i in (0, 1)]
    cases += [Case("caps", name, FdKind.VM, vt, (("id", i),), knobs=(("max_vcpu_id", 16),)) for vt in t.vm_types for i in (16, 17)]
    return cases


VCPU_MMAP = "vCPU mmap"
VCPU_MMAP_WAYS = ((MAP_PRIVATE, PROT_READ), (MAP_PRIVATE, PROT_READ | PROT_EXEC), (MAP_SHARED, PROT_READ | PROT_WRITE),
                  (MAP_SHARED, PROT_READ | PROT_EXEC))


def vcpu_mmaps(t: Plan) -> list[Case]:
    """mmap of a vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET (the ring's length) private, private and
    executable, shared, shared and executable: with a dirty ring enabled, and without one
    (those pages are then no ring's); and kvm_run at offset 0, private."""
    cases = [Case("caps", VCPU_MMAP, FdKind.VCPU, vt, (("map", m), ("prot", p)), knobs=ring)
             for vt in t.vm_types for m, p in VCPU_MMAP_WAYS for ring in ((("ring", 1),), ())]
    cases += [Case("caps", VCPU_MMAP, FdKind.VCPU, vt, (("map", MAP_PRIVATE), ("prot", PROT_READ), ("offset", 0)),
                   knobs=(("ring", 1),)) for vt in t.vm_types]
    return cases


SURFACES: tuple[Surface, ...] = ()
FILE_CALLS = (FileCall(VCPU_MMAP, "mmap", "vcpu_mmap", "mmap of a vCPU fd: noexec, the dirty ring's pages MAP_SHARED only"),)
TABLES = {"vcpu_ids": vcpu_ids, "vcpu_caps": vcpu_caps, "vcpu_fill": vcpu_fill, "boot_cpu_ids": boot_cpu_ids,
          "vcpu_mmaps": vcpu_mmaps}
OTHER_RULES = {"create_vcpu": "KVM_CREATE_VCPU: ids below KVM_CAP_MAX_VCPU_ID (or the VM's lowered limit), each once, "
                              "at most KVM_CAP_MAX_VCPUS",
               "set_boot_cpu_id": "KVM_SET_BOOT_CPU_ID: before any vCPU, an id no higher than the vCPU id limit"}
