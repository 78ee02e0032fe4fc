"""KVM_IOEVENTFD's rule on its own (eventfd.c:968-1038, api.rst 4.59)."""

from __future__ import annotations

import errno
from collections.abc import Mapping

import pytest

from harness.abi.profile import load_profile
from harness.rules.ioeventfd import IoeventfdInput, ioeventfd

FACTS = load_profile("released")
FLAGS = {n: FACTS.const(n) for n in ("KVM_IOEVENTFD_FLAG_DATAMATCH", "KVM_IOEVENTFD_FLAG_PIO", "KVM_IOEVENTFD_FLAG_DEASSIGN")}
DATAMATCH, PIO, DEASSIGN = 1, 2, 4


BASE = {"addr": 0xFEB00000, "len": 4, "fd": 5}


def answer(values: Mapping[str, int], fd: str = "eventfd", taken: bool = False) -> int:
    sent = {**BASE, **values}
    return ioeventfd(IoeventfdInput(sent, FACTS.structs["kvm_ioeventfd"], FLAGS, fd, BASE if taken else None)).errno


@pytest.mark.parametrize(("values", "want"), [
    ({}, 0), ({"len": 0}, 0), ({"len": 8}, 0), ({"len": 3}, errno.EINVAL), ({"len": 16}, errno.EINVAL),
    ({"addr": (1 << 64) - 4}, errno.EINVAL), ({"addr": (1 << 64) - 5}, 0), ({"flags": DATAMATCH | PIO}, 0),
    ({"flags": 8}, errno.EINVAL), ({"flags": 1 << 31}, errno.EINVAL), ({"len": 0, "flags": DATAMATCH}, errno.EINVAL),
    ({"pad[35]": 1}, errno.EINVAL), ({"flags": DEASSIGN}, errno.ENOENT),
])
def test_ioeventfd(values: dict[str, int], want: int) -> None:
    assert answer(values) == want


def test_fd_and_state() -> None:
    """EBADF for a closed fd, EINVAL for one that is not an eventfd; EEXIST when taken; deassigning what is there."""
    assert answer({}, fd="closed") == errno.EBADF and answer({}, fd="not-eventfd") == errno.EINVAL
    assert answer({}, taken=True) == errno.EEXIST and answer({"flags": DEASSIGN}, taken=True) == 0


@pytest.mark.parametrize(("values", "want"), [
    ({"flags": DEASSIGN, "len": 2}, errno.ENOENT), ({"flags": DEASSIGN | PIO}, errno.ENOENT),
    ({"flags": DEASSIGN, "addr": 0xFEB00004}, errno.ENOENT), ({"flags": DEASSIGN | DATAMATCH}, errno.ENOENT),
    ({"flags": DEASSIGN, "datamatch": 7}, 0), ({"len": 2}, 0), ({"len": 0}, errno.EEXIST), ({"flags": PIO}, 0),
    ({"flags": DATAMATCH, "datamatch": 7}, errno.EEXIST),
])
def test_ioeventfd_against_one_registered(values: dict[str, int], want: int) -> None:
    """A wildcard of length 4 registered: deassigning matches bus, address, length and wildcard
    (eventfd.c:942-951); registering collides on a length 0 or a match of the same length (835-850)."""
    assert answer(values, taken=True) == want
