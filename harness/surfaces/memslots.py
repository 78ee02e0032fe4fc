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
from harness.rules import MEM_MAX_NR_PAGES, USER_MEM_SLOTS, Expect, MemslotInput, set_user_memory_region, set_user_memory_region2
from harness.surfaces.base import CaseEnv, Ctx, Need, Port, Surface

FLAG_NAMES = ("KVM_MEM_LOG_DIRTY_PAGES", "KVM_MEM_READONLY", "KVM_MEM_GUEST_MEMFD")
NEEDS_GMEM = (Need(ioctl="KVM_CREATE_GUEST_MEMFD", fd=FdKind.VM),)
# the bound fd a property case draws: a valid binding half the time
BINDINGS = tuple((("binding", kind),) for kind in ("ok", "ok", "ok", "closed", "not-gmem", "other-vm"))
HUGE = 1 << 30
FILL_GPA = 1 << 32  # where the fill's slot 0 starts: clear of SLOT_GPA and of the 32-bit hole
V1 = "KVM_SET_USER_MEMORY_REGION"


@dataclass(frozen=True)
class Memslot2(Surface):
    def heavy(self, values: Mapping[str, int], page: int) -> bool:
        return HUGE < values.get("memory_size", page) <= MEM_MAX_NR_PAGES * page

    def requirements(self, case: Case) -> tuple[Need, ...]:
        return NEEDS_GMEM if case.knob("binding") is not None else ()

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        values = {"slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": ctx.plan.page,
                  "userspace_addr": ctx.env.uaddr, "guest_memfd_offset": 0, "guest_memfd": ctx.env.bind_fd}
        if ctx.case.knob("binding") is not None:
            values["flags"] = ctx.plan.facts.const("KVM_MEM_GUEST_MEMFD")
        at, page, host = ctx.case.knob("at"), ctx.plan.page, ctx.plan.host
        if at in ("user-end", "user-past"):
            values["userspace_addr"] = host.user_limit - (page if at == "user-end" else 0)
        elif at in ("gpa-end", "gpa-past"):
            values["guest_phys_addr"] = (1 << host.gpa_bits) - (page if at == "gpa-end" else 0)
        return values

    def before(self, ctx: Ctx, port: Port) -> str | None:
        """The slots a case finds: its own slot already set (`existing`), a slot beside it
        (`neighbour`: slot 1 over the same guest page), or a binding of part of the file."""
        page, gmem_flag = ctx.plan.page, ctx.plan.facts.const("KVM_MEM_GUEST_MEMFD")
        plain = {"slot": 0, "flags": 0, "guest_phys_addr": 0, "memory_size": page, "userspace_addr": ctx.env.uaddr}
        slots: list[dict[str, int]] = []
        existing = ctx.case.knob("existing")
        if existing is not None:
            ctx.env.existing = plain if existing == "plain" else {**plain, "flags": gmem_flag, "guest_memfd": ctx.env.bind_fd}
            slots.append(ctx.env.existing)
        if ctx.case.knob("neighbour") is not None:
            slots.append({**plain, "slot": 1})
            ctx.env.overlaps = True
        bound = ctx.case.knob("bound")
        if bound is not None:
            start, end = {"front": (0, 2 * page), "back": (2 * page, 4 * page)}.get(str(bound), (0, ctx.env.bind_size))
            slots.append({"slot": 1, "flags": gmem_flag, "guest_phys_addr": 1 << 32, "memory_size": end - start,
                          "userspace_addr": 0, "guest_memfd_offset": start, "guest_memfd": ctx.env.bind_fd})
            ctx.env.bound = (start, end)
        for values in slots:
            r = port.vm_call(self.name, values)
            if r != 0:
                return f"setting up slot {values['slot']} for the case: {self.name} returned {r}"
        return None

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        return set_user_memory_region2(self.rule_input(ctx, values))

    def rule_input(self, ctx: Ctx, values: Mapping[str, int]) -> MemslotInput:
        vt = ctx.case.vm_type
        off, size = values.get("guest_memfd_offset", 0), values.get("memory_size", 0)
        bound = ctx.env.bound
        gpa, end = values.get("guest_phys_addr", 0), values.get("guest_phys_addr", 0) + size
        overlaps = ctx.env.overlaps and values.get("slot", 0) >> 16 == 0 and gpa < ctx.plan.page and end > 0
        return MemslotInput(
            values=values,
            struct=ctx.struct,
            page=ctx.plan.page,
            flag_bits={n: ctx.plan.facts.const(n) for n in FLAG_NAMES},
            has_guest_memfd=bool(ctx.plan.caps.at("KVM_CAP_GUEST_MEMFD", vt)),
            guest_memfd=str(ctx.case.knob("binding", "not-gmem")),
            file_size=ctx.env.bind_size,
            range_bound=bound is not None and off < bound[1] and bound[0] < off + size,
            kernel=ctx.plan.kernel_data,
            address_spaces=ctx.plan.caps.at("KVM_CAP_MULTI_ADDRESS_SPACE", vt) or 1,
            slots=ctx.plan.caps.at("KVM_CAP_NR_MEMSLOTS", vt) or USER_MEM_SLOTS,
            host=ctx.plan.host,
            readonly_mem=vt not in protected_state_types(ctx.plan),
            existing=ctx.env.existing,
            overlaps=overlaps,
        )

    def leftover(self, ctx: Ctx, port: Port, values: Mapping[str, int]) -> str | None:
        """A rejected call creates no slot and removes none: deleting its slot (memory_size
        0) must find none (EINVAL), or find the slot the case set before the call."""
        slot = values.get("slot", 0)
        r = port.vm_call(self.name, {"slot": slot})
        if ctx.env.existing is not None and ctx.env.existing.get("slot", 0) == slot:
            return None if r == 0 else f"slot {hexv(slot)}, set before the rejected call, is gone (deleting it returned {r})"
        return None if r < 0 else f"slot {hexv(slot)} exists after the rejected call (deleting it returned {r})"


def protected_state_types(plan: Plan) -> frozenset[int]:
    """VM types with protected state (sev_vm_init, tdx_vm_init): no read-only memory."""
    names = ("KVM_X86_SEV_ES_VM", "KVM_X86_SNP_VM", "KVM_X86_TDX_VM")
    return frozenset(plan.facts.constants[n] for n in names if n in plan.facts.constants)


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


def memslot_fill(t: Plan) -> list[Case]:
    """Every slot KVM_CAP_NR_MEMSLOTS and KVM_CAP_MULTI_ADDRESS_SPACE give, on one VM of each type (suites/test_caps.py)."""
    return [Case("caps", V1, FdKind.VM, vt, tag="every-slot") for vt in t.vm_types]


def every_slot(plan: Plan, case: Case, uaddr: int) -> list[tuple[dict[str, int], Expect]]:
    """The fill's calls, each with the rule's answer: ids 0 to KVM_CAP_NR_MEMSLOTS - 1 in each
    of the KVM_CAP_MULTI_ADDRESS_SPACE address spaces (as_id in bits 16-31; 0 means 1), one
    page each at FILL_GPA + id pages, every space over the same pages (SMM's map is its
    own), all backed by the page at `uaddr`; then the first id past them and the first
    address space past them. Ids are all a slot count has: with every id taken, one slot
    more is one of these two."""
    page, vt = plan.page, case.vm_type
    slots = plan.caps.at("KVM_CAP_NR_MEMSLOTS", vt) or 0
    spaces = plan.caps.at("KVM_CAP_MULTI_ADDRESS_SPACE", vt) or 1
    io = plan.facts.ioctls[V1]
    assert io.struct is not None
    ctx = Ctx(plan, case, io, plan.facts.structs[io.struct], CaseEnv(uaddr=uaddr))
    surface = next(s for s in SURFACES if s.name == V1)

    def call(slot: int, gpa: int) -> tuple[dict[str, int], Expect]:
        values = {"slot": slot, "flags": 0, "guest_phys_addr": gpa, "memory_size": page, "userspace_addr": uaddr}
        return values, surface.expect(ctx, values)

    calls = [call(space << 16 | i, FILL_GPA + i * page) for space in range(spaces) for i in range(slots)]
    return [*calls, call(slots, FILL_GPA + slots * page), call(spaces << 16, FILL_GPA - page)]


SURFACES = (
    Memslot2("KVM_SET_USER_MEMORY_REGION2", "memslots", "set_user_memory_region2",
             "KVM_SET_USER_MEMORY_REGION2: slot, flags, alignment, wrap, pads, the guest_memfd binding", user_memory=True,
             fd_words=frozenset({"guest_memfd"}), drawn_knobs=BINDINGS),
    Memslot1("KVM_SET_USER_MEMORY_REGION", "memslots", "set_user_memory_region",
             "KVM_SET_USER_MEMORY_REGION (v1): LOG_DIRTY_PAGES and READONLY only, then as v2", user_memory=True),
)

TABLES = {"memslot_versions": memslot_versions, "memslot_fill": memslot_fill}
