"""KVM_PRE_FAULT_MEMORY on a vCPU: a range of guest memory mapped ahead of the guest,
the range it did not map written back into the struct's in/out `gpa` and `size`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.cases.values import page_residues, wrap_points
from harness.rules import Expect
from harness.rules.prefault import PreFaultInput, pre_fault_left, pre_fault_memory
from harness.surfaces.base import SLOT_GPA, Ctx, Port, Surface

NAME = "KVM_PRE_FAULT_MEMORY"
SLOT_PAGES = 2


@dataclass(frozen=True)
class PreFault(Surface):
    def baseline(self, ctx: Ctx) -> dict[str, int]:
        return {"gpa": ctx.env.slot_gpa, "size": ctx.plan.page, "flags": 0}

    def rule_input(self, ctx: Ctx, values: Mapping[str, int]) -> PreFaultInput:
        return PreFaultInput(values, ctx.struct, ctx.plan.page, ctx.env.slot_gpa, ctx.env.slot_gpa + ctx.env.slot_size)

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        return pre_fault_memory(self.rule_input(ctx, values))

    def written_back(self, ctx: Ctx, port: Port, values: Mapping[str, int]) -> str | None:
        """The struct as the kernel left it is the range it did not map, the rest as sent."""
        left = port.struct_left()
        if left is None:
            return None
        want = pre_fault_left(self.rule_input(ctx, values))
        wrong = [f"{k}={left[k]:#x} (not {v:#x})" for k, v in want.items() if left[k] != v]
        return f"{NAME} on {ctx.case.where} wrote back {', '.join(wrong)}" if wrong else None

    def after(self, ctx: Ctx, port: Port, values: Mapping[str, int], result: int) -> str | None:
        return self.written_back(ctx, port, values)

    def leftover(self, ctx: Ctx, port: Port, values: Mapping[str, int]) -> str | None:
        return self.written_back(ctx, port, values)


def pre_fault_ranges(t: Plan) -> list[Case]:
    """gpa and size: residues, size 0, wraps, outside the memslot, across its end, all of it."""
    page = t.page
    end = SLOT_GPA + SLOT_PAGES * page
    vals: list[tuple[tuple[str, int], ...]] = []
    for r in page_residues(page):
        vals += [(("gpa", SLOT_GPA + r),), (("size", r),)]
    vals.append((("size", 0),))
    for w in wrap_points(page):
        vals += [(("gpa", w),), (("size", w),), (("gpa", w), ("size", w))]
    vals += [(("gpa", (1 << 64) - page), ("size", page)), (("gpa", (1 << 64) - page), ("size", 2 * page))]
    vals += [(("gpa", 0),), (("gpa", SLOT_GPA - page),), (("gpa", end),), (("gpa", SLOT_GPA - page), ("size", 2 * page)),
             (("size", SLOT_PAGES * page),), (("gpa", end - page), ("size", 2 * page)), (("size", 1 << 40),)]
    return [Case("alignment", NAME, FdKind.VCPU, vt, v) for vt in t.vm_types for v in vals]


SURFACES = (
    PreFault(NAME, "pre-fault memory", "pre_fault_memory",
             "KVM_PRE_FAULT_MEMORY: flags, alignment, size 0, wrap, padding[], memslots, the range written back",
             memslot_pages=SLOT_PAGES),
)

TABLES = {"pre_fault_ranges": pre_fault_ranges}
