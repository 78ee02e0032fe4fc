"""Linux ABI facts that are not KVM's: integer widths, fallocate modes, mmap flags, the
page size. One definition each; the rules, the tables and the model all read them here.
"""

from __future__ import annotations

import os

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
S64_MAX = (1 << 63) - 1  # LLONG_MAX: the largest loff_t

# This host's page size (sysconf), never a literal.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# include/uapi/linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_NO_HIDE_STALE = 0x04  # a reserved codepoint: no mode accepts it
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40
FALLOC_FL_WRITE_ZEROES = 0x80
# include/linux/falloc.h: the exclusive modes (FALLOC_FL_ALLOCATE_RANGE is no bit at all)
FALLOC_FL_MODE_MASK = (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE
                       | FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES)

# include/uapi/asm-generic/mman-common.h and mman.h
PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0x0, 0x1, 0x2, 0x4
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_TYPE = 0x01, 0x02, 0x03, 0x0F
MAP_ANONYMOUS = 0x20
MAP_SYNC = 0x080000  # not in LEGACY_MAP_MASK: only files with FOP_MMAP_SYNC take it
MAP_FIXED = 0x10
MADV_DONTNEED, MADV_HUGEPAGE, MADV_COLLAPSE = 4, 14, 25
# include/uapi/linux/mempolicy.h: the modes up to MPOL_WEIGHTED_INTERLEAVE (6), then MPOL_MAX
MPOL_DEFAULT, MPOL_BIND, MPOL_INTERLEAVE, MPOL_MAX = 0, 2, 3, 7
MPOL_F_ADDR = 1 << 1
SIGBUS = 7
# include/uapi/linux/stat.h, asm-generic/ioctls.h, fcntl.h
S_IFREG = 0o100000
FIONREAD = 0x541B
F_GETFD, FD_CLOEXEC = 1, 1
SEEK_SET = 0


def as_s64(v: int) -> int:
    """A 64-bit word read as the kernel's signed `loff_t` / `s64`."""
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def wraps(a: int, b: int) -> bool:
    """a + b overflows unsigned 64-bit arithmetic."""
    return (a & U64) + (b & U64) > U64
