"""KVM_SET_MEMORY_ATTRIBUTES and KVM_SET_MEMORY_ATTRIBUTES2: a range of guest memory
(a file range through a guest_memfd) given attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.fdkind import FdKind
from harness.abi.guest_programs import HOST_PATTERN, PROGRAMS, TEST_GPA
from harness.rules import Expect, MemoryAttributesInput, set_memory_attributes
from harness.rules.guest import Page, attributes_after, guest_run, mismatch
from harness.surfaces.base import Ctx, Port, Surface

NO_TRACE_TAG = "guest-sees-no-trace"  # the effect table's cases (harness.surfaces.guest)

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

    def after(self, ctx: Ctx, port: Port, values: Mapping[str, int], result: int) -> str | None:
        return self.guest_sees(ctx, port, values, accepted=True)

    def leftover(self, ctx: Ctx, port: Port, values: Mapping[str, int]) -> str | None:
        return self.guest_sees(ctx, port, values, accepted=False)

    def guest_sees(self, ctx: Ctx, port: Port, values: Mapping[str, int], accepted: bool) -> str | None:
        """For the effect table's cases: a guest load of the test page gives the exits the
        attributes after the call make (unchanged after a rejected call)."""
        if ctx.case.tag != NO_TRACE_TAG:
            return None
        private_flag = ctx.plan.facts.constants["KVM_MEMORY_ATTRIBUTE_PRIVATE"]
        private = attributes_after(accepted, values["address"], values["size"], values["attributes"], TEST_GPA, private_flag)
        expected = guest_run(PROGRAMS["load-test"].steps, {TEST_GPA: Page(True, private=private, data=HOST_PATTERN)},
                             ctx.plan.page, ctx.plan.facts.constants["KVM_MEMORY_EXIT_FLAG_PRIVATE"], 0)
        wrong = mismatch(expected, port.guest_exits("load-test", HOST_PATTERN))
        state = "PRIVATE" if private else "shared"
        return f"a guest load of GPA 0x{TEST_GPA:x} ({state} by the rules), {wrong}" if wrong else None


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
