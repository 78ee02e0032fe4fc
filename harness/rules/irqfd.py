"""KVM_IRQFD: an eventfd that injects an interrupt on a gsi of the in-kernel irqchip."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.facts import Struct
from harness.abi.linux import U64
from harness.rules import Expect, _reserved_set


@dataclass(frozen=True)
class IrqfdInput:
    """`kvm_irqfd` as sent; the flags; what `fd` names ("eventfd", "closed", "not-eventfd");
    whether the VM has an in-kernel irqchip, and whether the eventfd is an irqfd already."""

    values: Mapping[str, int]
    struct: Struct
    flag_bits: Mapping[str, int]  # KVM_IRQFD_FLAG_DEASSIGN, KVM_IRQFD_FLAG_RESAMPLE
    fd: str = "eventfd"
    irqchip: bool = True
    taken: bool = False

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64


def irqfd(i: IrqfdInput) -> Expect:
    """KVM_IRQFD (api.rst 4.75): flags DEASSIGN and RESAMPLE, others → EINVAL (eventfd.c:622);
    DEASSIGN removes the irqfd of fd and gsi (fd not open → EBADF, not an eventfd → EINVAL),
    RESAMPLE "need not be specified with DEASSIGN"; an irqfd needs an in-kernel irqchip
    (EINVAL, irq.c kvm_arch_irqfd_allowed); "when KVM_IRQFD_FLAG_RESAMPLE is set the user
    must pass an additional eventfd in resamplefd", so by the hygiene rules resamplefd is 0
    without it, and pad[] is 0; fd not open → EBADF, not an eventfd → EINVAL; an eventfd
    that is an irqfd already, of this VM or of any other, → EBUSY: the irqfd is the eventfd's
    one priority waiter (eventfd.c:340, add_wait_queue_priority_exclusive: wait.c:61-63)."""
    rule = "KVM_IRQFD rules"
    flags = i.get("flags")
    deassign, resample = i.flag_bits["KVM_IRQFD_FLAG_DEASSIGN"], i.flag_bits["KVM_IRQFD_FLAG_RESAMPLE"]
    if flags & ~(deassign | resample):
        return Expect(errno.EINVAL, rule, "flags other than DEASSIGN and RESAMPLE → EINVAL")
    bad_fd = {"closed": Expect(errno.EBADF, rule, "fd not open → EBADF"),
              "not-eventfd": Expect(errno.EINVAL, rule, "fd not an eventfd → EINVAL")}.get(i.fd)
    if flags & deassign:
        return bad_fd or Expect(0, rule, "DEASSIGN → 0")
    if not i.irqchip:
        return Expect(errno.EINVAL, rule, "no in-kernel irqchip → EINVAL")
    if not flags & resample and i.get("resamplefd"):
        return Expect(errno.EINVAL, rule, "resamplefd ≠ 0 without RESAMPLE → EINVAL (an unused field must be zero)")
    label = _reserved_set(i.struct, i.values)
    if label is not None:
        return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (padding must be zero)")
    if bad_fd is not None:
        return bad_fd
    if i.taken:
        return Expect(errno.EBUSY, rule, "an eventfd that is an irqfd already (in any VM) → EBUSY")
    return Expect(0, rule, "the irqfd assigned → 0")
