"""KVM_REGISTER_COALESCED_MMIO and KVM_UNREGISTER_COALESCED_MMIO on a VM: a zone of MMIO
or PIO addresses; an unregistering case first registers the zone it names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.abi.linux import U32, U64
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.rules import Expect
from harness.rules.coalesced_mmio import INT_MAX, coalesced_mmio_zone
from harness.surfaces.base import GENERIC_TABLES, Ctx, Port, Surface

REGISTER, UNREGISTER = "KVM_REGISTER_COALESCED_MMIO", "KVM_UNREGISTER_COALESCED_MMIO"
ZONE = 0xFEE0_0000  # an address in the MMIO hole below 4 GiB
# a drawn zone may wrap by two fields at once, which no single-field finding covers on a real kernel
AREA_TABLES = tuple(t for t in GENERIC_TABLES if t != "property")


@dataclass(frozen=True)
class CoalescedZone(Surface):
    def before(self, ctx: Ctx, port: Port) -> str | None:
        """Unregistering: the zone of the baseline is registered first."""
        if self.name != UNREGISTER:
            return None
        r = port.vm_call(REGISTER, self.baseline(ctx))
        return None if r == 0 else f"{REGISTER} of the baseline zone first answered {r}"

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        return {"addr": ZONE, "size": ctx.plan.page, "pio": 0}

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        return coalesced_mmio_zone(self.name, values)


def coalesced_zones(t: Plan) -> list[Case]:
    """pio values, sizes at 0 and the int's edge, zones that wrap or end exactly at 2^64, PIO ports."""
    page = t.page
    rows: list[tuple[tuple[str, int], ...]] = [(("pio", p),) for p in (1, 2, U32)]
    rows += [(("size", s),) for s in (0, 1, page - 1, INT_MAX, INT_MAX + 1, U32)]
    rows += [(("addr", a),) for a in (0, 1, 1 << 63, (1 << 64) - page)]
    rows += [(("addr", (1 << 64) - page), ("size", page + 1)), (("addr", U64), ("size", 2)), (("addr", U64), ("size", 1))]
    rows += [(("addr", 0x3F8), ("size", 8), ("pio", 1)), (("addr", 0xFFFF), ("size", 2), ("pio", 1))]
    return [Case("alignment", name, FdKind.VM, vt, r) for name in (REGISTER, UNREGISTER) for vt in t.vm_types for r in rows]


SURFACES = tuple(
    CoalescedZone(name, "coalesced mmio", "coalesced_mmio_zone",
                  "KVM_(UN)REGISTER_COALESCED_MMIO: pio 0 or 1, a zone of addresses (size, int width, wrap)",
                  tables=AREA_TABLES, bit_words=())
    for name in (REGISTER, UNREGISTER)
)

def coalesced_cap(t: Plan) -> list[Case]:
    """KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) on /dev/kvm and on each VM type: the ring's page."""
    scopes = [(FdKind.SYSTEM, 0)] + [(FdKind.VM, vt) for vt in t.vm_types]
    return [Case("caps", "KVM_CHECK_EXTENSION", fd, vt, knobs=(("cap", "KVM_CAP_COALESCED_MMIO"),), tag="page-offset")
            for fd, vt in scopes]


TABLES = {"coalesced_zones": coalesced_zones, "coalesced_cap": coalesced_cap}
OTHER_RULES = {"coalesced_mmio_cap": "KVM_CAP_COALESCED_MMIO answers KVM_COALESCED_MMIO_PAGE_OFFSET"}
