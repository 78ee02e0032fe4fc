"""The guest family: the vCPU-state ioctls a guest program needs (x86 registers,
segments, CPUID), and the tables of effect cases, whose outcome is the exits a guest
program gives (`harness.rules.guest`).

The vCPU-state ioctls take part in no generic table: they set up the guest, and what
they did is checked by every exit of the effect cases.
"""

from __future__ import annotations

from dataclasses import replace

from harness.abi.fdkind import FdKind
from harness.abi.guest_programs import PROGRAMS
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.surfaces.base import Surface
from harness.surfaces.memory_attributes import NO_TRACE_TAG

SETUP_DOC = "vCPU state a guest program runs on: checked through the exits of the guest cases"
SURFACES = tuple(Surface(name, "guest", "guest_run", SETUP_DOC, tables=())
                 for name in ("KVM_GET_SUPPORTED_CPUID", "KVM_SET_CPUID2", "KVM_GET_REGS", "KVM_SET_REGS",
                              "KVM_GET_SREGS", "KVM_SET_SREGS"))
RULES = {
    "guest_run": "the exits of a guest program: MMIO outside memslots, memory faults on private pages, I/O, hlt",
    "run_without_memslots": "KVM_RUN with no memslots: KVM_EXIT_INTERNAL_ERROR",
}

# What the test slot is, for the programs that touch it; the others run with plain memory.
MEMORIES = ("shared", "none", "deleted", "private", "private-deleted", "gmem-shared", "gmem-private", "gmem-mmap", "gmem-mmap-punched",
            "gmem-reshared", "readonly", "recreated")


def guest_runs(t: Plan) -> list[Case]:
    """Every program with every kind of test slot it can touch, per VM type; and KVM_RUN
    in a VM without memslots."""
    cases = []
    for vt in t.vm_types:
        for program in PROGRAMS.values():
            touches_test = any(s.op in ("load", "store") and s.gpa < 1 << 20 for s in program.steps)
            for memory in MEMORIES if touches_test else ("shared",):
                cases.append(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("program", program.name), ("memory", memory))))
        cases.append(Case("guest", "KVM_RUN", FdKind.VCPU, vt, knobs=(("memslots", "none"),)))
    return cases


def attribute_no_trace(t: Plan) -> list[Case]:
    """Every case of the memory-attribute tables on a VM fd (reserved words, flag bits,
    ranges), each followed by a guest load of the page the baseline names: after a
    rejected call the guest's access faults exactly as before it."""
    from harness.cases import tables  # the generic tables import the registry, which imports this module

    source = tables.reserved_words(t) + tables.flag_bits(t) + tables.attribute_ranges(t)
    return [replace(c, area="guest", tag=NO_TRACE_TAG) for c in source
            if c.surface in tables.ATTRIBUTE_IOCTLS and c.fd == FdKind.VM]


TABLES = {"guest_runs": guest_runs, "attribute_no_trace": attribute_no_trace}
