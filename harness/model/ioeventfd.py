"""The model's KVM_IOEVENTFD (eventfd.c kvm_ioeventfd), with the hygiene rules kept:
pad[] zero, only the flags x86 defines, and the same checks when deassigning.

A family module: `HANDLERS` maps each ioctl to a function of the model and the call.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.linux import U64
from harness.model.state import Handle

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend


def eventfd_inode(number: int) -> int | None:
    """The eventfd an fd number names in this process (its inode), or None when it is open but not one."""
    try:
        if os.readlink(f"/proc/self/fd/{number}") != "anon_inode:[eventfd]":
            return None
        return os.fstat(number).st_ino
    except OSError:
        return -1


Ioeventfd = tuple[bool, int, int, int | None, int | None]  # (pio, addr, len, datamatch or None, eventfd)


def collides(a: Ioeventfd, b: Ioeventfd, any_length: bool = False) -> bool:
    """ioeventfd_check_collision(): one bus and address, and either length 0, or one length
    and either a wildcard or one datamatch (`any_length`: a mutant's, on the address alone)."""
    same_len = a[2] == b[2] and (a[3] is None or b[3] is None or a[3] == b[3])
    return a[0] == b[0] and a[1] == b[1] and (not a[2] or not b[2] or same_len or any_length)


def ioeventfd(model: ModelBackend, handle: Handle, arg: int) -> int:
    """len, wrap, flags, len 0 without DATAMATCH, pad[], the eventfd; then register
    (EEXIST on a collision) or deassign (ENOENT when nothing matches)."""
    name, fd = "KVM_IOEVENTFD", handle.kind
    c = model.facts.constants
    datamatch, pio, deassign = (c[f"KVM_IOEVENTFD_FLAG_{n}"] for n in ("DATAMATCH", "PIO", "DEASSIGN"))
    vm = model.vm_of(handle)
    v = model.copy_in(name, arg, fd)
    addr, length, flags = v["addr"], v["len"], v["flags"]
    model.check(f"{name}.len", length not in (0, 1, 2, 4, 8), fd)
    model.check(f"{name}.wrap", addr + length > U64, fd)
    model.check(f"{name}.flags", bool(flags & ~(datamatch | pio | deassign | model.dev.extra(f"{name}.flags", fd))), fd)
    model.check(f"{name}.len0-datamatch", length == 0 and bool(flags & datamatch), fd)
    model.zero_words(name, model.facts.structs["kvm_ioeventfd"], v, fd)
    ino = eventfd_inode(v["fd"]) if v["fd"] < 1 << 31 else -1
    model.check(f"{name}.fd", ino == -1, fd, errno.EBADF)
    model.check(f"{name}.not-eventfd", ino is None, fd)
    match = v["datamatch"] if flags & datamatch else None
    me = (bool(flags & pio), addr, length, match, ino)
    if flags & deassign:
        # kvm_deassign_ioeventfd_idx(): bus, eventfd, address, length, wildcard, datamatch (a mutant: address alone)
        loose = model.dev.skips(f"{name}.deassign-match", fd)
        found = next((o for o in vm.ioeventfds if o == me or (loose and o[:2] == me[:2])), None)
        model.check(f"{name}.no-such", found is None, fd, errno.ENOENT)
        vm.ioeventfds.remove(found)  # type: ignore[arg-type]
        return 0
    any_length = model.dev.skips(f"{name}.collision-length", fd)
    model.check(f"{name}.collision", any(collides(o, me, any_length) for o in vm.ioeventfds), fd, errno.EEXIST)
    vm.ioeventfds.append(me)
    return 0


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_IOEVENTFD": ioeventfd,
}
