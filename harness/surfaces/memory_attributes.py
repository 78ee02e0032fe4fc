"""KVM_SET_MEMORY_ATTRIBUTES and KVM_SET_MEMORY_ATTRIBUTES2: a range of guest memory
(a file range through a guest_memfd) given attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.rules import Expect, MemoryAttributesInput, set_memory_attributes
from harness.surfaces.base import Ctx, Surface

HUGE = 1 << 30  # attributes over more than 1 GiB make a real kernel allocate


@dataclass(frozen=True)
class MemoryAttributes(Surface):
    def why_not(self, ctx: Ctx) -> str | None:
        caps = (ctx.io.attributes_caps.get(ctx.case.fd), ctx.io.flags_cap)
        return next((why for c in caps if c for why in [ctx.plan.why_not_cap(c, ctx.case.vm_type)] if why), None)

    def heavy(self, values: Mapping[str, int], page: int) -> bool:
        return bool(values.get("attributes", 0)) and values.get("size", page) > HUGE

    def baseline(self, ctx: Ctx) -> dict[str, int]:
        return {"address": 0, "size": ctx.plan.page, "attributes": 0, "flags": 0}

    def expect(self, ctx: Ctx, values: Mapping[str, int]) -> Expect:
        vt = ctx.case.vm_type
        return set_memory_attributes(
            MemoryAttributesInput(
                values=values,
                struct=ctx.struct,
                supported_attributes=supported_attributes(ctx, ctx.case.fd),
                page=ctx.plan.page,
                allowed_flags=(ctx.plan.caps.at(ctx.io.flags_cap, vt) or 0) if ctx.io.flags_cap else 0,
                file_size=ctx.env.gmem_size if ctx.case.fd == FdKind.GUEST_MEMFD else None,
            )
        )


def supported_attributes(ctx: Ctx, fd: FdKind) -> int:
    """The attribute bits a VM of the case's type accepts through the ioctl on `fd`."""
    cap = ctx.io.attributes_caps.get(fd)
    return (ctx.plan.caps.at(cap, ctx.case.vm_type) or 0) if cap else 0


RULE_DOC = "KVM_SET_MEMORY_ATTRIBUTES{,2}: flags, attributes, size, wrap, alignment, reserved words, file bounds"
SURFACES = (
    MemoryAttributes("KVM_SET_MEMORY_ATTRIBUTES", "memory attributes", "set_memory_attributes", RULE_DOC,
                     bit_words=("flags", "attributes")),
    MemoryAttributes("KVM_SET_MEMORY_ATTRIBUTES2", "memory attributes", "set_memory_attributes", RULE_DOC,
                     bit_words=("flags", "attributes")),
)
