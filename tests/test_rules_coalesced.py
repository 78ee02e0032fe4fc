"""The coalesced zone rule on its own (coalesced_mmio.c:122-190, api.rst 4.116)."""

from __future__ import annotations

import errno

import pytest

from harness.abi.linux import PAGE_SIZE
from harness.rules.coalesced_mmio import INT_MAX, coalesced_mmio_zone

P = PAGE_SIZE


@pytest.mark.parametrize(("zone", "want"), [
    ({"addr": 0xFEE00000, "size": P, "pio": 0}, 0), ({"addr": 0x3F8, "size": 8, "pio": 1}, 0),
    ({"addr": 0, "size": P, "pio": 2}, errno.EINVAL), ({"addr": 0, "size": 0}, errno.EINVAL),
    ({"addr": 0, "size": INT_MAX}, 0), ({"addr": 0, "size": INT_MAX + 1}, errno.EINVAL),
    ({"addr": (1 << 64) - P, "size": P - 1}, 0), ({"addr": (1 << 64) - P, "size": P}, errno.EINVAL),
])
def test_zone(zone: dict[str, int], want: int) -> None:
    """pio 0 or 1, first; then a zone of addresses: a size, within an int, no wrap."""
    for name in ("KVM_REGISTER_COALESCED_MMIO", "KVM_UNREGISTER_COALESCED_MMIO"):
        assert coalesced_mmio_zone(name, zone).errno == want
