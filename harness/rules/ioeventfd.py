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
    "not-eventfd"); the ioeventfd registered before the call with the same eventfd, if any."""

    values: Mapping[str, int]
    struct: Struct
    flag_bits: Mapping[str, int]  # KVM_IOEVENTFD_FLAG_DATAMATCH, _PIO, _DEASSIGN
    fd: str = "eventfd"
    registered: Mapping[str, int] | None = None

    def get(self, name: str) -> int:
        return self.values.get(name, 0) & U64

    def key(self, values: Mapping[str, int]) -> tuple[bool, int, int, int | None]:
        """What tells ioeventfds apart: the bus (PIO or MMIO), address, length, and the
        datamatch, None for a wildcard (no DATAMATCH)."""
        flags = values.get("flags", 0)
        match = values.get("datamatch", 0) & U64 if flags & self.flag_bits["KVM_IOEVENTFD_FLAG_DATAMATCH"] else None
        return bool(flags & self.flag_bits["KVM_IOEVENTFD_FLAG_PIO"]), values.get("addr", 0) & U64, values.get("len", 0), match


def ioeventfd(e: IoeventfdInput) -> Expect:
    """KVM_IOEVENTFD (api.rst 4.59): len "0, 1, 2, 4, or 8 bytes" (EINVAL); addr + len must
    not wrap (EINVAL); flags DATAMATCH, PIO and DEASSIGN (VIRTIO_CCW_NOTIFY is s390's:
    "for virtio-ccw devices on s390"), others → EINVAL; "an ioeventfd with no length can't
    be combined with DATAMATCH" (EINVAL); by the hygiene rules pad[] must be zero; fd not
    open → EBADF, not an eventfd → EINVAL (eventfd.c:870-872); one on the same bus and
    address whose length is 0, or is the same with a wildcard or the same datamatch on
    either side, registered already → EEXIST (ioeventfd_check_collision, eventfd.c:835-850);
    DEASSIGN removes the one of this eventfd with the same bus, address, length and
    wildcard, and datamatch unless a wildcard, and nothing else matches: → ENOENT
    (kvm_deassign_ioeventfd_idx, eventfd.c:942-951)."""
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
    old = None if e.registered is None else e.key(e.registered)
    me = e.key(e.values)
    if flags & deassign:
        if old != me:
            return Expect(errno.ENOENT, rule, "DEASSIGN with no ioeventfd of the same bus, address, length and match → ENOENT")
        return Expect(0, rule, "the ioeventfd deassigned → 0")
    same_length = old is not None and old[2] == me[2] and (None in (old[3], me[3]) or old[3] == me[3])
    if old is not None and old[:2] == me[:2] and (not old[2] or not me[2] or same_length):
        return Expect(errno.EEXIST, rule, "one on the same bus and address, of length 0 or the same length and match, registered → EEXIST")
    return Expect(0, rule, "the ioeventfd registered → 0")
