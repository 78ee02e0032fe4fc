"""ioctl number encoding (`_IOC`) per architecture.

The kernel dispatches on the whole 32-bit number, so direction and size are part of
an ioctl's identity: the same `nr` with another size or direction is another ioctl.
Two families exist: asm-generic (14 size bits, NONE=0 WRITE=1 READ=2) and the
13-size-bit family (powerpc, mips, sparc, alpha: NONE=1 READ=2 WRITE=4).
"""

from __future__ import annotations

import enum
import platform
from dataclasses import dataclass


class Dir(enum.Flag):
    """Transfer direction as seen from userspace (`_IOW` = the kernel reads)."""

    NONE = 0
    WRITE = enum.auto()
    READ = enum.auto()

    @property
    def macro(self) -> str:
        """The uapi macro that makes a number of this direction."""
        return {Dir.NONE: "_IO", Dir.WRITE: "_IOW", Dir.READ: "_IOR"}.get(self, "_IOWR")

    @classmethod
    def from_macro(cls, macro: str) -> Dir:
        """Inverse of `macro`: "_IOWR" -> WRITE|READ."""
        table = {"_IO": cls.NONE, "_IOW": cls.WRITE, "_IOR": cls.READ, "_IOWR": cls.WRITE | cls.READ}
        try:
            return table[macro]
        except KeyError:
            raise ValueError(f"unknown ioctl direction macro {macro!r}") from None


@dataclass(frozen=True)
class IocEncoding:
    """One architecture family's `_IOC` layout (include/uapi/asm-generic/ioctl.h)."""

    family: str
    size_bits: int
    dir_none: int
    dir_write: int
    dir_read: int

    nr_shift = 0
    type_shift = 8
    size_shift = 16

    @property
    def dir_shift(self) -> int:
        return self.size_shift + self.size_bits

    @property
    def max_size(self) -> int:
        return (1 << self.size_bits) - 1

    def dir_bits(self, direction: Dir) -> int:
        bits = self.dir_none if direction == Dir.NONE else 0
        if Dir.WRITE in direction:
            bits |= self.dir_write
        if Dir.READ in direction:
            bits |= self.dir_read
        return bits

    def ioc(self, direction: Dir, type_: int, nr: int, size: int) -> int:
        """`_IOC(dir, type, nr, size)`; rejects sizes the field cannot hold, as the
        kernel's `_IOC_TYPECHECK` does at build time."""
        if not 0 <= size <= self.max_size:
            raise ValueError(f"ioctl size {size} does not fit {self.size_bits} bits ({self.family})")
        if not (0 <= type_ <= 0xFF and 0 <= nr <= 0xFF):
            raise ValueError(f"ioctl type 0x{type_:x} / nr 0x{nr:x} out of range")
        return (
            self.dir_bits(direction) << self.dir_shift
            | size << self.size_shift
            | type_ << self.type_shift
            | nr << self.nr_shift
        )

    def decode(self, number: int) -> tuple[Dir, int, int, int]:
        """(direction, type, nr, size) of a number: `_IOC_DIR`, `_IOC_TYPE`, ..."""
        raw_dir = number >> self.dir_shift
        direction = Dir.NONE
        if raw_dir & self.dir_write:
            direction |= Dir.WRITE
        if raw_dir & self.dir_read:
            direction |= Dir.READ
        return (
            direction,
            (number >> self.type_shift) & 0xFF,
            (number >> self.nr_shift) & 0xFF,
            (number >> self.size_shift) & self.max_size,
        )


ASM_GENERIC = IocEncoding("asm-generic", size_bits=14, dir_none=0, dir_write=1, dir_read=2)
IOC_13BIT = IocEncoding("13-bit size (powerpc, mips, sparc, alpha)", size_bits=13, dir_none=1, dir_write=4, dir_read=2)

_BY_MACHINE = {
    "ppc": IOC_13BIT,
    "powerpc": IOC_13BIT,
    "mips": IOC_13BIT,
    "sparc": IOC_13BIT,
    "alpha": IOC_13BIT,
}


def encoding_for(machine: str) -> IocEncoding:
    """The encoding for a `uname -m` value (ppc64le, mips64, sparc64, x86_64, ...)."""
    for prefix, enc in _BY_MACHINE.items():
        if machine.startswith(prefix):
            return enc
    return ASM_GENERIC


def host_encoding() -> IocEncoding:
    return encoding_for(platform.machine())
