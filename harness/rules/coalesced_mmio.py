"""KVM_REGISTER_COALESCED_MMIO and KVM_UNREGISTER_COALESCED_MMIO: a zone of guest MMIO
(or PIO) addresses whose writes are recorded in a ring instead of exiting."""

from __future__ import annotations

import errno
from collections.abc import Mapping

from harness.abi.linux import U64, wraps
from harness.rules import Expect

INT_MAX = (1 << 31) - 1  # the zone's size reaches the I/O bus as an int


def coalesced_mmio_zone(name: str, values: Mapping[str, int]) -> Expect:
    """KVM_(UN)REGISTER_COALESCED_MMIO (api.rst 4.116): "pio" says the zone is on the PIO
    bus (1) or the MMIO bus (0), anything else → EINVAL (coalesced_mmio.c:128-129,
    163-164); a zone is a range of addresses: size 0, a size the bus cannot take (wider
    than an int), or addr + size wrapping past 2^64 names none → EINVAL."""
    rule = f"{name} rules"
    addr, size, pio = (values.get(k, 0) & U64 for k in ("addr", "size", "pio"))
    if pio not in (0, 1):
        return Expect(errno.EINVAL, rule, "pio neither 0 (MMIO) nor 1 (PIO) → EINVAL")
    if size == 0:
        return Expect(errno.EINVAL, rule, "size 0 → EINVAL (a zone of no addresses)")
    if size > INT_MAX:
        return Expect(errno.EINVAL, rule, "size wider than an int (the I/O bus's length) → EINVAL")
    if wraps(addr, size):
        return Expect(errno.EINVAL, rule, "addr + size reaches 2^64 (wraps) → EINVAL")
    return Expect(0, rule, "a zone on the bus pio names → 0")


def coalesced_mmio_cap(page_offset: int) -> Expect:
    """KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO) answers the coalesced ring's page in the
    vCPU mmap, KVM_COALESCED_MMIO_PAGE_OFFSET (kvm_main.c:4943-4944; api.rst 4.5: "a page at
    KVM_COALESCED_MMIO_PAGE_OFFSET * PAGE_SIZE"), not a feature flag's 1."""
    return Expect(0, "KVM_CAP_COALESCED_MMIO rules", f"KVM_CAP_COALESCED_MMIO is KVM_COALESCED_MMIO_PAGE_OFFSET ({page_offset})")
