"""KVM_IOEVENTFD on a VM: an eventfd the case owns, bound to an MMIO or PIO address."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.abi.linux import U32, U64
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.rules import Expect
from harness.rules.ioeventfd import IoeventfdInput, ioeventfd
from harness.surfaces.base import GENERIC_TABLES, Ctx, Port, Surface

NAME = "KVM_IOEVENTFD"
ADDR = 0xFEB0_0000  # an MMIO address nothing else claims
FLAG_NAMES = ("KVM_IOEVENTFD_FLAG_DATAMATCH", "KVM_IOEVENTFD_FLAG_PIO", "KVM_IOEVENTFD_FLAG_DEASSIGN")
# the eventfd a property case would draw is the environment's, and a drawn DEASSIGN with a
# bad length is a finding no single-field pattern covers: no property cases
AREA_TABLES = tuple(t for t in GENERIC_TABLES if t != "property")


@dataclass(frozen=True)
class Ioeventfd(Surface):
    def before(self, ctx: Ctx, port: Port) -> str | None:
        """A "taken" case registers the baseline's ioeventfd first."""
        if ctx.case.knob("taken") is None:
            return None
        r = port.vm_call(NAME, self.baseline(ctx))
        return None if r == 0 else f"registering the baseline's ioeventfd first answered {r}"

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        return {"datamatch": 0, "addr": ADDR, "len": 4, "fd": ctx.env.event_fd, "flags": 0}

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        return ioeventfd(IoeventfdInput(values, ctx.struct, {n: ctx.plan.facts.const(n) for n in FLAG_NAMES},
                                        str(ctx.case.knob("event_fd", "eventfd")),
                                        self.baseline(ctx) if ctx.case.knob("taken") is not None else None))


def ioeventfd_cases(t: Plan) -> list[Case]:
    """len, wrap, len 0 with DATAMATCH, the fd's kinds, collisions, deassigning (with the same checks), what it matches."""
    c = t.facts.constants
    datamatch, pio, deassign = (c.get(n, 0) for n in FLAG_NAMES)
    rows: list[tuple[tuple[str, int], ...]] = [(("len", n),) for n in (0, 1, 2, 3, 5, 8, 16, U32)]
    rows += [(("len", 0), ("flags", datamatch)), (("addr", U64 - 3),), (("addr", U64 - 4),), (("addr", U64), ("len", 1)),
             (("datamatch", 7),), (("datamatch", 7), ("flags", datamatch)), (("addr", 0x3F8), ("flags", pio)),
             (("flags", deassign),)]
    knobs: list[tuple[tuple[str, int | str], ...]] = [(("event_fd", "closed"),), (("event_fd", "not-eventfd"),), (("taken", 1),)]
    cases = [Case("reserved", NAME, FdKind.VM, vt, r) for vt in t.vm_types for r in rows]
    cases += [Case("reserved", NAME, FdKind.VM, vt, knobs=k) for vt in t.vm_types for k in knobs]
    cases += [Case("reserved", NAME, FdKind.VM, vt, (("flags", deassign),), knobs=(("taken", 1),)) for vt in t.vm_types]
    # deassigning is held to the same checks as assigning
    undo: list[tuple[tuple[str, int], ...]] = [(("flags", deassign), ("len", 3)), (("flags", deassign | 1 << 20),),
                                               (("flags", deassign), ("addr", U64 - 3))]
    cases += [Case("reserved", NAME, FdKind.VM, vt, r, knobs=(("taken", 1),)) for vt in t.vm_types for r in undo]
    # what deassigning matches: another length, bus, address or wildcard is ENOENT, a wildcard's datamatch is not read;
    # what registering collides with: a wildcard of one length, never another length or bus
    match: list[tuple[tuple[str, int], ...]] = [
        (("flags", deassign), ("len", 2)), (("flags", deassign | pio),), (("flags", deassign), ("addr", ADDR + 4)),
        (("flags", deassign | datamatch),), (("flags", deassign), ("datamatch", 7)),
        (("len", 2),), (("len", 0),), (("flags", pio),), (("flags", datamatch), ("datamatch", 7)),
    ]
    cases += [Case("reserved", NAME, FdKind.VM, vt, r, knobs=(("taken", 1),)) for vt in t.vm_types for r in match]
    return cases


SURFACES = (
    Ioeventfd(NAME, "ioeventfd", "ioeventfd", "KVM_IOEVENTFD: len, wrap, flags, pad[], the eventfd, collisions, deassign",
              tables=AREA_TABLES, fd_words=frozenset({"fd"}), event_fd=True),
)

TABLES = {"ioeventfd_cases": ioeventfd_cases}
