"""KVM_IOEVENTFD: an eventfd signalled by guest writes to a PIO or MMIO address."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass

from harness.abi.facts import Struct
from harness.abi.linux import U64, wraps
from harness.rules import Expect, _reserved_set

LENGTHS = (0, 1, 2, 4, 8)


@dataclass(frozen=True)
class IoeventfdInput:
    """`kvm_ioeventfd` as sent; the flags x86 defines; what `fd` names ("eventfd", "closed",
    "not-eventfd"); whether the same address, length and match is already registered."""

    values: Mapping[str, int]
    struct: Struct
    flag_bits: Mapping[str, int]  # KVM_IOEVENTFD_FLAG_DATAMATCH, _PIO, _DEASSIGN
    fd: str = "eventfd"
    taken: bool = False

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64


def ioeventfd(e: IoeventfdInput) -> Expect:
    """KVM_IOEVENTFD (api.rst 4.59): len "0, 1, 2, 4, or 8 bytes" (EINVAL); addr + len must
    not wrap (EINVAL); flags DATAMATCH, PIO and DEASSIGN (VIRTIO_CCW_NOTIFY is s390's:
    "for virtio-ccw devices on s390"), others → EINVAL; "an ioeventfd with no length can't
    be combined with DATAMATCH" (EINVAL); by the hygiene rules pad[] must be zero; fd not
    open → EBADF, not an eventfd → EINVAL (eventfd.c:870-872); the same address, length
    and match registered already → EEXIST; DEASSIGN of one not registered → ENOENT."""
    rule = "KVM_IOEVENTFD rules"
    flags, length = e.get("flags"), e.get("len")
    known = e.flag_bits["KVM_IOEVENTFD_FLAG_DATAMATCH"] | e.flag_bits["KVM_IOEVENTFD_FLAG_PIO"]
    deassign = e.flag_bits["KVM_IOEVENTFD_FLAG_DEASSIGN"]
    if length not in LENGTHS:
        return Expect(errno.EINVAL, rule, "len not 0, 1, 2, 4 or 8 → EINVAL")
    if wraps(e.get("addr"), length):
        return Expect(errno.EINVAL, rule, "addr + len wraps → EINVAL")
    if flags & ~(known | deassign):
        return Expect(errno.EINVAL, rule, "flags other than DATAMATCH, PIO and DEASSIGN (on x86) → EINVAL")
    if not length and flags & e.flag_bits["KVM_IOEVENTFD_FLAG_DATAMATCH"]:
        return Expect(errno.EINVAL, rule, "len 0 with DATAMATCH → EINVAL")
    label = _reserved_set(e.struct, e.values)
    if label is not None:
        return Expect(errno.EINVAL, rule, f"{label} ≠ 0 → EINVAL (padding must be zero)")
    if e.fd == "closed":
        return Expect(errno.EBADF, rule, "fd not open → EBADF")
    if e.fd == "not-eventfd":
        return Expect(errno.EINVAL, rule, "fd not an eventfd → EINVAL")
    if flags & deassign:
        if not e.taken:
            return Expect(errno.ENOENT, rule, "DEASSIGN of an ioeventfd not registered → ENOENT")
        return Expect(0, rule, "the ioeventfd deassigned → 0")
    if e.taken:
        return Expect(errno.EEXIST, rule, "the same address, length and match already registered → EEXIST")
    return Expect(0, rule, "the ioeventfd registered → 0")
