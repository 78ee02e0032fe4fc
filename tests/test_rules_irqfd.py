"""KVM_IRQFD's rule on its own (eventfd.c:371-629, irq.c:186-191, api.rst 4.75)."""

from __future__ import annotations

import errno
from collections.abc import Mapping

import pytest

from harness.abi.profile import load_profile
from harness.rules.irqfd import IrqfdInput, irqfd

FACTS = load_profile("released")
FLAGS = {n: FACTS.const(n) for n in ("KVM_IRQFD_FLAG_DEASSIGN", "KVM_IRQFD_FLAG_RESAMPLE")}
DEASSIGN, RESAMPLE = 1, 2


def answer(values: Mapping[str, int], fd: str = "eventfd", irqchip: bool = True, taken: bool = False) -> int:
    return irqfd(IrqfdInput({"fd": 5, "gsi": 5, **values}, FACTS.structs["kvm_irqfd"], FLAGS, fd, irqchip, taken)).errno


@pytest.mark.parametrize(("values", "kw", "want"), [
    ({}, {}, 0), ({"flags": RESAMPLE, "resamplefd": 5}, {}, 0), ({"flags": 4}, {}, errno.EINVAL),
    ({}, {"irqchip": False}, errno.EINVAL), ({"flags": DEASSIGN}, {"irqchip": False}, 0),
    ({"flags": DEASSIGN | RESAMPLE}, {}, 0), ({"flags": DEASSIGN}, {"fd": "closed"}, errno.EBADF),
    ({"resamplefd": 7}, {}, errno.EINVAL), ({"pad[0]": 1}, {}, errno.EINVAL), ({}, {"fd": "closed"}, errno.EBADF),
    ({}, {"fd": "not-eventfd"}, errno.EINVAL), ({}, {"taken": True}, errno.EBUSY),
])
def test_irqfd(values: dict[str, int], kw: dict[str, object], want: int) -> None:
    assert answer(values, **kw) == want  # type: ignore[arg-type]
