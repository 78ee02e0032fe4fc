"""A `newc` cpio writer, the format the kernel unpacks an initramfs from.

Written here rather than calling `cpio` so the initramfs needs no host tool, builds the
same bytes every time (fixed inode numbers, mtime 0) and can hold a device node
(`/dev/console`) without root privileges on the host.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from dataclasses import dataclass

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class CpioEntry:
    """One archive member: `name` is relative (no leading '/'), `mode` includes the type bits."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def directory(name: str, perm: int = 0o755) -> CpioEntry:
    """A directory entry."""
    return CpioEntry(name, stat.S_IFDIR | perm)


def regular_file(name: str, data: bytes, perm: int = 0o644) -> CpioEntry:
    """A regular file entry holding `data`."""
    return CpioEntry(name, stat.S_IFREG | perm, data)


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> CpioEntry:
    """A character device node, e.g. /dev/console (5, 1)."""
    return CpioEntry(name, stat.S_IFCHR | perm, rdev_major=major, rdev_minor=minor)


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _member(entry: CpioEntry, ino: int) -> bytes:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0,
              entry.rdev_major, entry.rdev_minor, len(name), 0)
    header = _MAGIC + b"".join(b"%08X" % value for value in fields)
    head = header + name
    return head + _pad4(len(head)) + entry.data + _pad4(len(entry.data))


def write_newc(entries: Iterable[CpioEntry]) -> bytes:
    """The archive bytes for `entries` in the given order (parents must precede children)."""
    members = []
    for ino, entry in enumerate(entries, start=1):
        if entry.name.startswith("/") or not entry.name:
            raise ValueError(f"cpio member name must be relative: {entry.name!r}")
        members.append(_member(entry, ino))
    members.append(_member(CpioEntry(_TRAILER, 0), 0))
    return b"".join(members)
