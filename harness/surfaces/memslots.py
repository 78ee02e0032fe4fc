"""KVM_SET_USER_MEMORY_REGION2: a memslot of user memory, optionally bound to a
guest_memfd range (KVM_MEM_GUEST_MEMFD); KVM_SET_USER_MEMORY_REGION, its v1 without
the binding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.cases.case import Case, hexv
from harness.cases.plan import Plan
from harness.cases.values import page_residues, wrap_points
from harness.rules import USER_MEM_SLOTS, Expect, MemslotInput, set_user_memory_region, set_user_memory_region2
from harness.surfaces.base import Ctx, Need, Port, Surface

FLAG_NAMES = ("KVM_MEM_LOG_DIRTY_PAGES", "KVM_MEM_READONLY", "KVM_MEM_GUEST_MEMFD")
NEEDS_GMEM = (Need(ioctl="KVM_CREATE_GUEST_MEMFD", fd=FdKind.VM),)
# the bound fd a property case draws: a valid binding half the time
BINDINGS = tuple((("binding", kind),) for kind in ("ok", "ok", "ok", "closed", "not-gmem", "other-vm"))
HUGE = 1 << 30
MAX_MEMSLOT = 1 << 43  # larger memslots are refused before anything is allocated


@dataclass(frozen=True)
class Memslot2(Surface):
    def heavy(self, values: Mapping[str, int], page: int) -> bool:
        return HUGE < values.get("memory_size", page) <= MAX_MEMSLOT

    def requirements(self, case: Case) -> tuple[Need, ...]:
        return NEEDS_GMEM if case.knob("binding") is not None else ()

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        values = {"slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": ctx.plan.page,
                  "userspace_addr": ctx.env.uaddr, "guest_memfd_offset": 0, "guest_memfd": 0}
        if ctx.case.knob("binding") is not None:
            values["flags"] = ctx.plan.facts.const("KVM_MEM_GUEST_MEMFD")
            values["guest_memfd"] = ctx.env.bind_fd
        return values

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        return set_user_memory_region2(self.rule_input(ctx, values))

    def rule_input(self, ctx: Ctx, values: Mapping[str, int]) -> MemslotInput:
        vt = ctx.case.vm_type
        return MemslotInput(
            values=values,
            struct=ctx.struct,
            page=ctx.plan.page,
            flag_bits={n: ctx.plan.facts.const(n) for n in FLAG_NAMES},
            has_guest_memfd=bool(ctx.plan.caps.at("KVM_CAP_GUEST_MEMFD", vt)),
            guest_memfd=str(ctx.case.knob("binding", "ok")),
            file_size=ctx.env.bind_size,
            range_bound=ctx.case.knob("bound") is not None,
            kernel=ctx.plan.kernel_data,
            address_spaces=ctx.plan.caps.at("KVM_CAP_MULTI_ADDRESS_SPACE", vt) or 1,
        )

    def leftover(self, ctx: Ctx, port: Port, values: Mapping[str, int]) -> str | None:
        """A rejected call creates no slot: deleting its slot (memory_size 0) must find none
        (EINVAL); success means the slot was there."""
        slot = values.get("slot", 0)
        r = port.vm_call(self.name, {"slot": slot})
        return None if r < 0 else f"slot {hexv(slot)} exists after the rejected call (deleting it returned {r})"


@dataclass(frozen=True)
class Memslot1(Memslot2):
    """v1: the v2 fields up to userspace_addr; no binding."""

    def requirements(self, case: Case) -> tuple[Need, ...]:
        return ()

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        return {"slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": ctx.plan.page, "userspace_addr": ctx.env.uaddr}

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        return set_user_memory_region(self.rule_input(ctx, values))


def memslot_versions(t: Plan) -> list[Case]:
    """The fields v1 and v2 share, changed alike through both (suites/test_parity.py)."""
    page = t.page
    rows: list[tuple[tuple[str, int], ...]] = [(), *((("flags", 1 << b),) for b in (0, 1, 2, 3, 31))]
    for field in ("guest_phys_addr", "memory_size", "userspace_addr"):
        rows += [((field, r),) for r in page_residues(page)]
        rows += [((field, w),) for w in wrap_points(page)]
    rows += [(("memory_size", 0),), (("guest_phys_addr", 1 << 52),)]
    rows += [(("slot", s),) for s in (USER_MEM_SLOTS - 1, USER_MEM_SLOTS, 1 << 16, 0xFFFFFFFF)]
    return [Case("parity", "KVM_SET_USER_MEMORY_REGION", FdKind.VM, vt, r, tag="shared-fields") for vt in t.vm_types for r in rows]


SURFACES = (
    Memslot2("KVM_SET_USER_MEMORY_REGION2", "memslots", "set_user_memory_region2",
             "KVM_SET_USER_MEMORY_REGION2: slot, flags, alignment, wrap, pads, the guest_memfd binding", user_memory=True,
             fd_words=frozenset({"guest_memfd"}), drawn_knobs=BINDINGS),
    Memslot1("KVM_SET_USER_MEMORY_REGION", "memslots", "set_user_memory_region",
             "KVM_SET_USER_MEMORY_REGION (v1): LOG_DIRTY_PAGES and READONLY only, then as v2", user_memory=True),
)

TABLES = {"memslot_versions": memslot_versions}
