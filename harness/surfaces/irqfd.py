"""KVM_IRQFD on a VM with an in-kernel irqchip (KVM_CREATE_IRQCHIP first, unless the
case says none), with an eventfd the case owns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.rules import Expect
from harness.rules.irqfd import IrqfdInput, irqfd
from harness.surfaces.base import GENERIC_TABLES, Ctx, Port, Surface

NAME = "KVM_IRQFD"
GSI = 5  # an IOAPIC pin of the default routing
FLAG_NAMES = ("KVM_IRQFD_FLAG_DEASSIGN", "KVM_IRQFD_FLAG_RESAMPLE")
AREA_TABLES = tuple(t for t in GENERIC_TABLES if t != "property")  # both fd words are the environment's


@dataclass(frozen=True)
class Irqfd(Surface):
    def before(self, ctx: Ctx, port: Port) -> str | None:
        """The irqchip (unless the case has none), then, for a "taken" case, the baseline's irqfd,
        on this VM or ("other-vm") on a second VM with its own irqchip."""
        if ctx.case.knob("irqchip") != "none":
            r = port.vm_ioctl("KVM_CREATE_IRQCHIP", 0)
            if r != 0:
                return f"KVM_CREATE_IRQCHIP first answered {r}"
        taken = ctx.case.knob("taken")
        if taken == "other-vm":
            port = port.other_vm()
            r = port.vm_ioctl("KVM_CREATE_IRQCHIP", 0)
            if r != 0:
                return f"KVM_CREATE_IRQCHIP on the second VM first answered {r}"
        if taken is not None:
            r = port.vm_call(NAME, self.baseline(ctx))
            return None if r == 0 else f"assigning the baseline's irqfd first answered {r}"
        return None

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        """An irqfd on GSI; with RESAMPLE the case's eventfd is its resamplefd too."""
        resample = dict(ctx.case.values).get("flags", 0) & ctx.plan.facts.const("KVM_IRQFD_FLAG_RESAMPLE")
        return {"fd": ctx.env.event_fd, "gsi": GSI, "flags": 0, "resamplefd": ctx.env.event_fd if resample else 0}

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        return irqfd(IrqfdInput(values, ctx.struct, {n: ctx.plan.facts.const(n) for n in FLAG_NAMES},
                                str(ctx.case.knob("event_fd", "eventfd")), ctx.case.knob("irqchip") != "none",
                                ctx.case.knob("taken") is not None))


def irqfd_cases(t: Plan) -> list[Case]:
    """The fd's kinds, no irqchip, resamplefd without RESAMPLE, a second irqfd on one eventfd (in
    this VM or another), deassigning."""
    deassign, resample = (t.facts.constants.get(n, 0) for n in FLAG_NAMES)
    rows: list[tuple[tuple[str, int], ...]] = [(("resamplefd", 0xDEADBEEF),), (("flags", deassign | resample),), (("gsi", 23),)]
    knobs: list[tuple[tuple[str, int | str], ...]] = [(("event_fd", "closed"),), (("event_fd", "not-eventfd"),),
                                                     (("irqchip", "none"),), (("taken", 1),), (("taken", "other-vm"),)]
    cases = [Case("reserved", NAME, FdKind.VM, vt, r) for vt in t.vm_types for r in rows]
    cases += [Case("reserved", NAME, FdKind.VM, vt, knobs=k) for vt in t.vm_types for k in knobs]
    cases += [Case("reserved", NAME, FdKind.VM, vt, (("flags", deassign),), knobs=k)
              for vt in t.vm_types for k in ((("event_fd", "closed"),), (("taken", 1),), (("irqchip", "none"),))]
    return cases


SURFACES = (
    Irqfd(NAME, "irqfd", "irqfd", "KVM_IRQFD: flags, the irqchip, resamplefd only with RESAMPLE, pad[], the eventfd, EBUSY",
          tables=AREA_TABLES, fd_words=frozenset({"fd", "resamplefd"}), event_fd=True),
)

TABLES = {"irqfd_cases": irqfd_cases}
