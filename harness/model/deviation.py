"""How a mutant of the model differs from the faithful model.

The model names each check it makes: `<ioctl or file call>.<clause>`, such as
`KVM_SET_MEMORY_ATTRIBUTES2.reserved[3]` or `fallocate.eof`. A deviation leaves checks
out, answers another errno for them, accepts extra bits, copies another number of
bytes, answers caps wrongly, leaves state behind or reports an exit's field wrongly: small, data-only overrides, so a
mutant breaks exactly one rule and the catalogue stays data. A check id prefixed with
an fd kind (`guest_memfd:KVM_SET_MEMORY_ATTRIBUTES2.reserved[11]`) deviates only on
that kind of fd.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CAP_MODES = ("zero", "system", "unstable", "flag")


@dataclass(frozen=True)
class Deviation:
    """The faithful model deviates in nothing: every field's default."""

    skip: frozenset[str] = frozenset()  # checks left out
    errnos: Mapping[str, int] = field(default_factory=dict)  # check → errno answered instead of its own
    extra_bits: Mapping[str, int] = field(default_factory=dict)  # check of a bit set → bits accepted beyond it
    copy: Mapping[str, int] = field(default_factory=dict)  # ioctl → bytes copied from user instead of sizeof
    aliases: tuple[tuple[str, str, int], ...] = ()  # (ioctl, direction macro, size): another number it answers to
    extra_fds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # ioctl → fd kinds it also exists on
    caps: Mapping[str, str] = field(default_factory=dict)  # cap → "zero", "system" (at VM scope), "unstable" or "flag" (1)
    keep_rejected: frozenset[str] = frozenset()  # ioctls whose rejected call still makes its fd or slot
    echo: frozenset[str] = frozenset()  # ioctls that write zeros over the struct after success
    write_past: Mapping[str, int] = field(default_factory=dict)  # ioctl → bytes written past the struct
    blksize: int | None = None  # st_blksize of a guest_memfd instead of the page size
    one_inode: bool = False  # every guest_memfd reports the same st_ino
    narrow: Mapping[str, int] = field(default_factory=dict)  # check → mask its argument is cut to (a long read as an int)
    # what a guest run reports → added to it: a kvm_run field, "dirty.offset" (the page a write marks),
    # "coalesced.phys_addr" (a coalesced entry's address)
    exit_skew: Mapping[str, int] = field(default_factory=dict)

    def skips(self, check: str, fd: str) -> bool:
        return check in self.skip or f"{fd}:{check}" in self.skip

    def errno_for(self, check: str, fd: str, default: int) -> int:
        return self.errnos.get(f"{fd}:{check}", self.errnos.get(check, default))

    def extra(self, check: str, fd: str) -> int:
        return self.extra_bits.get(check, 0) | self.extra_bits.get(f"{fd}:{check}", 0)


FAITHFUL = Deviation()
