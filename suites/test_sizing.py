"""ioctl sizing: the number encodes the struct's size and direction, the kernel reads
exactly `sizeof` bytes and writes nothing outside the struct, other sizes and
directions of the same nr are other ioctls, and bad pointers fault."""

from __future__ import annotations

import pytest

from harness.abi.ioc import Dir
from harness.cases.tables import struct_surfaces
from harness.session.engine import Case, Outcome, run_ioctl_case, verdict
from harness.session.target import Target


@pytest.mark.parametrize("name", struct_surfaces("sizing"))
def test_number_encodes_struct(target: Target, name: str) -> None:
    """`_IOC_SIZE` of the header's number equals sizeof(struct) as the header lays it out,
    and `_IOC_DIR` is the profile's (the spec's: v1 in only, v2 in/out). A profile makes
    its numbers from its own sizes, so only a header gives something to compare."""
    target.require_symbol(name)
    if not target.facts.source.startswith("header"):
        pytest.skip(f"{name}'s number comes from {target.facts.source}, which encodes it from these sizes; give --kvm-header")
    io = target.facts.ioctls[name]
    assert io.struct is not None
    target.require_symbol(io.struct)
    direction, type_, _nr, size = target.facts.encoding.decode(io.number)
    struct = target.facts.structs[io.struct]
    assert (type_, size) == (0xAE, struct.size), (
        f"{name} = 0x{io.number:08x} encodes type 0x{type_:x} size {size}, but sizeof(struct {struct.name}) is {struct.size}"
    )
    assert direction == io.direction, (
        f"{name} = 0x{io.number:08x} is {direction.macro}, {target.facts.profile} says {io.direction.macro}"
    )


@pytest.mark.cases("sizing")
def test_copy_size(target: Target, case: Case) -> None:
    """Guard page, canaries, read-only struct, trailing bytes, NULL, unmapped, and the
    same nr with another size or direction."""
    outcome = run_ioctl_case(target, case)

    def wrote_outside_outputs(o: Outcome) -> str | None:
        """The kernel writes only the struct's output and in/out fields (none for an in-only struct)."""
        io = target.facts.ioctls[case.surface]
        assert io.struct is not None
        struct = target.facts.structs[io.struct]
        outputs = struct.written_bytes()
        stray = [b for b in o.wrote_inside if b not in outputs]
        if stray and Dir.READ not in io.direction:
            return f"{io.name} is {io.direction.macro} (in only) but the kernel wrote bytes {stray[:8]} of the struct"
        if stray:
            return f"the kernel wrote bytes {stray[:8]} of {struct.name}, which are not output fields"
        return None

    verdict(target, outcome, wrote_outside_outputs)
