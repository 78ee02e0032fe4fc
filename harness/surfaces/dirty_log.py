"""KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG on a VM with one logging memslot, and
KVM_RESET_DIRTY_RINGS (no struct: a table and a rule)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.abi.linux import U32, U64
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.rules import USER_MEM_SLOTS, Expect
from harness.rules.dirty_log import DirtyLogInput, clear_dirty_log, get_dirty_log
from harness.surfaces.base import GENERIC_TABLES, Ctx, Port, Surface

GET, CLEAR, RESET = "KVM_GET_DIRTY_LOG", "KVM_CLEAR_DIRTY_LOG", "KVM_RESET_DIRTY_RINGS"
NPAGES = 130  # not a multiple of 64: the slot's last 2 pages are the exception to 64-page alignment
BITMAP_BYTES = (NPAGES + 63) // 64 * 8  # ALIGN(npages, BITS_PER_LONG) / 8
RING_SIZE = 1 << 16
# the pointer word holds the case's buffer: drawing it would hand the kernel random memory
TABLES_WITHOUT_PROPERTY = tuple(t for t in GENERIC_TABLES if t != "property")


def enable(ctx: Ctx, port: Port, cap: str, arg0: int) -> str | None:
    number = ctx.plan.facts.cap_number(cap, model=ctx.plan.model) or 0
    r = port.vm_call("KVM_ENABLE_CAP", {"cap": number, "args[0]": arg0})
    return None if r == 0 else f"KVM_ENABLE_CAP({cap}, {arg0:#x}) first answered {r}"


@dataclass(frozen=True)
class DirtyLog(Surface):
    def slot_flags(self, case: Case, constants: Mapping[str, int]) -> int:
        return 0 if case.knob("logging") == "off" else constants["KVM_MEM_LOG_DIRTY_PAGES"]

    def before(self, ctx: Ctx, port: Port) -> str | None:
        """A case may first enable a dirty ring, or manual dirty-log protection."""
        if ctx.case.knob("ring") is not None:
            return enable(ctx, port, "KVM_CAP_DIRTY_LOG_RING", RING_SIZE)
        if ctx.case.knob("manual") is not None:
            return enable(ctx, port, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", 1)
        return None

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        values = {"slot": 0, "dirty_bitmap": ctx.env.buffer}
        if self.name == CLEAR:
            values.update(first_page=0, num_pages=NPAGES)
        return values

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        d = DirtyLogInput(values, ctx.struct, NPAGES, ctx.case.knob("logging") != "off", ctx.case.knob("ring") is not None,
                          ctx.plan.caps.at("KVM_CAP_MULTI_ADDRESS_SPACE", ctx.case.vm_type) or 1, ctx.env.buffer)
        return clear_dirty_log(d) if self.name == CLEAR else get_dirty_log(d)


def dirty_log_cases(t: Plan) -> list[Case]:
    """Both calls: slot ids, a slot without logging, a ring, a NULL or kernel bitmap; CLEAR's
    first_page and num_pages at 64-page edges and the slot's end, with and without manual protection."""
    cases = []
    for vt in t.vm_types:
        for name in (GET, CLEAR):
            rows: list[tuple[tuple[str, int], ...]] = [()]
            rows += [(("slot", s),) for s in (1, USER_MEM_SLOTS - 1, USER_MEM_SLOTS, 1 << 16, U32)]
            rows += [(("dirty_bitmap", p),) for p in (0, 1 << 63)]
            cases += [Case("alignment", name, FdKind.VM, vt, r) for r in rows]
            cases += [Case("alignment", name, FdKind.VM, vt, knobs=((k, v),)) for k, v in (("logging", "off"), ("ring", 1))]
        ranges = [(0, 0), (0, 1), (0, 63), (0, 64), (0, 65), (0, 128), (0, NPAGES - 1), (0, NPAGES + 1), (0, U32),
                  (1, 64), (32, 64), (63, 1), (64, 64), (64, NPAGES - 64), (64, NPAGES - 63), (128, 1), (128, 2), (128, 3),
                  (NPAGES, 0), (192, 0), (1 << 32, 0), (U64 & ~63, 64)]
        for manual in ((), (("manual", 1),)):
            cases += [Case("alignment", CLEAR, FdKind.VM, vt, (("first_page", f), ("num_pages", n)), knobs=manual)
                      for f, n in ranges]
    return cases


def reset_rings(t: Plan) -> list[Case]:
    """KVM_RESET_DIRTY_RINGS with and without a ring, with an argument, on a vCPU; and whether it
    exists exactly when KVM_CAP_DIRTY_LOG_RING says so (it takes no struct: asked with 0)."""
    cases = []
    for vt in t.vm_types:
        cases.append(Case("caps", RESET, FdKind.VM, vt, tag="exists-iff-cap"))
        cases += [Case("caps", RESET, FdKind.VM, vt, (("arg", a),), knobs=k) for a in (0, 1) for k in ((), (("ring", 1),))]
        cases.append(Case("caps", RESET, FdKind.VCPU, vt, knobs=(("ring", 1),)))
    return cases


SURFACES = (
    DirtyLog(GET, "dirty log", "get_dirty_log", "KVM_GET_DIRTY_LOG: ring ENXIO, slot ids, ENOENT, padding1, the bitmap pointer",
             tables=TABLES_WITHOUT_PROPERTY, bit_words=(), memslot_pages=NPAGES, buffer_bytes=BITMAP_BYTES),
    DirtyLog(CLEAR, "dirty log", "clear_dirty_log",
             "KVM_CLEAR_DIRTY_LOG: first_page and num_pages 64-aligned except at the slot's end, inside the slot",
             tables=TABLES_WITHOUT_PROPERTY, bit_words=(), memslot_pages=NPAGES, buffer_bytes=BITMAP_BYTES),
)

TABLES = {"dirty_log_cases": dirty_log_cases, "reset_rings": reset_rings}
OTHER_RULES = {"reset_dirty_rings": "KVM_RESET_DIRTY_RINGS: EINVAL without a ring, takes no argument"}
