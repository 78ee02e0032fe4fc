"""KVM_ENABLE_CAP on a VM and on a vCPU: the memory caps (manual dirty-log protection,
halt polling, the dirty ring), each with its flags, args[] and pad[] tried."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.abi.linux import U32, U64
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.rules import Expect
from harness.rules.enable_cap import RINGS, VCPU_CAPS, VM_CAPS, EnableCapInput, enable_cap
from harness.surfaces.base import GENERIC_TABLES, Ctx, Need, Port, Surface

NAME = "KVM_ENABLE_CAP"
RING_SIZE = 1 << 16  # a valid ring on every x86 host (with PML the least is 16 KiB)
# the cap a case enables when it names none, per fd kind: valid with flags and args 0
# caps tried only as they are: x86 never enables WITH_BITMAP (no CONFIG_NEED_KVM_DIRTY_RING_WITH_BITMAP),
# so its args[] and pad[] cannot show whether they are checked
BARE = frozenset({"KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP"})
BASELINE_CAP = {FdKind.VM: "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", FdKind.VCPU: "KVM_CAP_ENFORCE_PV_FEATURE_CPUID"}


@dataclass(frozen=True)
class EnableCap(Surface):
    def cap(self, ctx: Ctx) -> str:
        return str(ctx.case.knob("cap", BASELINE_CAP[ctx.case.fd]))

    def requirements(self, case: Case) -> tuple[Need, ...]:
        """A case that sets the boot vCPU first needs KVM_SET_BOOT_CPU_ID."""
        return self.needs + ((Need("KVM_SET_BOOT_CPU_ID"),) if case.knob("boot") is not None else ())

    def why_not(self, ctx: Ctx) -> str | None:
        return ctx.plan.why_not_cap(self.cap(ctx), ctx.case.vm_type)

    def before(self, ctx: Ctx, port: Port) -> str | None:
        """A case of a VM whose dirty ring is enabled, or whose vCPU ids are lowered, enables it
        first; one whose boot vCPU is set sets it first."""
        boot = ctx.case.knob("boot")
        if boot is not None:
            r = port.vm_ioctl("KVM_SET_BOOT_CPU_ID", int(boot))
            return None if r == 0 else f"KVM_SET_BOOT_CPU_ID({boot}) first answered {r}"
        lowered = ctx.case.knob("lowered")
        cap, arg0 = ("KVM_CAP_MAX_VCPU_ID", int(lowered)) if lowered is not None else ("KVM_CAP_DIRTY_LOG_RING", RING_SIZE)
        if lowered is None and ctx.case.knob("ring") is None:
            return None
        number = ctx.plan.facts.cap_number(cap, model=ctx.plan.model)
        r = port.vm_call(NAME, {"cap": number or 0, "args[0]": arg0})
        return None if r == 0 else f"enabling {cap} with {arg0:#x} first answered {r}"

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        cap = self.cap(ctx)
        number = ctx.plan.facts.cap_number(cap, model=ctx.plan.model)
        return {"cap": number or 0, "flags": 0, "args[0]": RING_SIZE if cap in RINGS else 0}

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        numbers = ctx.plan.facts.cap_numbers(model=ctx.plan.model)
        cap = next((n for n, v in numbers.items() if v == values.get("cap", 0)), None)
        return enable_cap(EnableCapInput(
            values, ctx.struct, ctx.case.fd, cap, (ctx.plan.caps.at(cap, ctx.case.vm_type) or 0) if cap else 0, ctx.plan.page,
            ring_set=ctx.case.knob("ring") is not None, has_vcpu=ctx.case.fd == FdKind.VCPU or ctx.case.knob("vcpu") is not None,
            lowered=int(ctx.case.knob("lowered", 0) or 0), boot=int(ctx.case.knob("boot", 0) or 0),
            cpu_dirty_log_size=ctx.plan.host.cpu_dirty_log_size))


def enable_cap_args(t: Plan) -> list[Case]:
    """Per memory cap: flags, every args[i] a cap does not read, args[0] at its edges, a pad
    byte; the ring sizes; the ring once and before vCPUs; numbers no cap has."""
    cases = []
    for fd, caps in ((FdKind.VM, VM_CAPS), (FdKind.VCPU, VCPU_CAPS)):
        for vt in t.vm_types:
            for cap in sorted(caps):
                if cap in BARE:
                    cases.append(Case("reserved", NAME, fd, vt, knobs=(("cap", cap),)))
                    continue
                rows: list[tuple[tuple[str, int], ...]] = [(), (("flags", 1),), (("pad[63]", 1),)]
                rows += [((f"args[{i}]", 1),) for i in range(1, 4)]
                rows += [(("args[0]", v),) for v in (1, 2, 3, 4, U32, U32 + 1, 1 << 63, U64)]
                if cap == "KVM_CAP_DISABLE_QUIRKS2":  # the slot-zap quirk (a header without asm/kvm.h lacks it), the first bit past x86's
                    zap = t.facts.constants.get("KVM_X86_QUIRK_SLOT_ZAP_ALL")
                    rows += [(("args[0]", v),) for v in (zap, 1 << 12) if v is not None]
                if cap in RINGS:
                    rows += [(("args[0]", v),) for v in (0, 2048, 3 << 12, 1 << 20, 1 << 21, (1 << 32) | (1 << 16))]
                cases += [Case("reserved", NAME, fd, vt, r, knobs=(("cap", cap),)) for r in rows]
            # every cap of the other fd kind, which this one cannot enable
            cases += [Case("reserved", NAME, fd, vt, knobs=(("cap", c),)) for c in sorted(VM_CAPS | VCPU_CAPS) if c not in caps]
            cases += [Case("reserved", NAME, fd, vt, (("cap", n),)) for n in (0, 0xFFFF, U32)]
    for vt in t.vm_types:
        for cap in sorted(RINGS):
            cases.append(Case("reserved", NAME, FdKind.VM, vt, knobs=(("cap", cap), ("ring", 1))))
            cases.append(Case("reserved", NAME, FdKind.VM, vt, knobs=(("cap", cap), ("vcpu", 1))))
        cases.append(Case("reserved", NAME, FdKind.VM, vt, knobs=(("cap", "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP"), ("ring", 1))))
        # the vCPU id limit: at KVM_MAX_VCPU_IDS and past it; after a vCPU set it, after an enable set it
        ids: tuple[tuple[str, int | str], ...] = (("cap", "KVM_CAP_MAX_VCPU_ID"),)
        limits: list[tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int | str], ...]]] = [
            ((("args[0]", 1 << 12),), ()), ((("args[0]", (1 << 12) + 1),), ()),
            ((("args[0]", 16),), (("vcpu", 1),)), ((("args[0]", 1 << 12),), (("vcpu", 1),)), ((("args[0]", 0),), (("vcpu", 1),)),
            ((("args[0]", 16),), (("lowered", 16),)), ((("args[0]", 32),), (("lowered", 16),)), ((("args[0]", 0),), (("lowered", 16),)),
            ((("args[0]", 1),), (("boot", 2),)), ((("args[0]", 2),), (("boot", 2),)),  # below and at the boot vCPU's id
        ]
        cases += [Case("reserved", NAME, FdKind.VM, vt, v, knobs=ids + k) for v, k in limits]
    return cases


SURFACES = (
    EnableCap(NAME, "enable cap", "enable_cap",
              "KVM_ENABLE_CAP: flags, unused args[] and pad[] zero; manual protect bits, halt-poll width, ring size rules",
              tables=tuple(t for t in GENERIC_TABLES if t != "property")),
)

TABLES = {"enable_cap_args": enable_cap_args}
