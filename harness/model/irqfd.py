"""The model's KVM_CREATE_IRQCHIP and KVM_IRQFD (x86.c, eventfd.c kvm_irqfd), with the
hygiene rules kept: pad[] zero, resamplefd 0 without RESAMPLE.

A family module: `HANDLERS` maps each ioctl to a function of the model and the call.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.fdkind import FdKind
from harness.model.ioeventfd import eventfd_inode
from harness.model.state import Handle

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend


def create_irqchip(model: ModelBackend, handle: Handle, arg: int) -> int:
    """One irqchip per VM (EEXIST), before any vCPU (EINVAL)."""
    name, fd = "KVM_CREATE_IRQCHIP", handle.kind
    vm = model.vm_of(handle)
    model.check(f"{name}.twice", vm.irqchip, fd, errno.EEXIST)
    model.check(f"{name}.vcpus", bool(vm.vcpus), fd)
    vm.irqchip = True
    return 0


def irqfd(model: ModelBackend, handle: Handle, arg: int) -> int:
    """flags; DEASSIGN (the eventfd checked, then 0); the irqchip, resamplefd, pad[], the
    eventfd, one irqfd per eventfd in any open VM (EBUSY)."""
    name, fd = "KVM_IRQFD", handle.kind
    c = model.facts.constants
    deassign, resample = c["KVM_IRQFD_FLAG_DEASSIGN"], c["KVM_IRQFD_FLAG_RESAMPLE"]
    vm = model.vm_of(handle)
    v = model.copy_in(name, arg, fd)
    flags = v["flags"]
    model.check(f"{name}.flags", bool(flags & ~(deassign | resample | model.dev.extra(f"{name}.flags", fd))), fd)
    if flags & deassign:
        ino = eventfd_inode(v["fd"]) if v["fd"] < 1 << 31 else -1
        model.check(f"{name}.fd", ino == -1, fd, errno.EBADF)
        model.check(f"{name}.not-eventfd", ino is None, fd)
        assert ino is not None
        vm.irqfds.discard(ino)
        return 0
    model.check(f"{name}.irqchip", not vm.irqchip, fd)
    model.check(f"{name}.resamplefd", not flags & resample and v["resamplefd"] != 0, fd)
    model.zero_words(name, model.facts.structs["kvm_irqfd"], v, fd)
    ino = eventfd_inode(v["fd"]) if v["fd"] < 1 << 31 else -1
    model.check(f"{name}.fd", ino == -1, fd, errno.EBADF)
    model.check(f"{name}.not-eventfd", ino is None, fd)
    assert ino is not None
    model.check(f"{name}.busy", ino in vm.irqfds, fd, errno.EBUSY)
    # the eventfd's wait queue takes one priority waiter, whichever VM's (wait.c:61-63); a VM's go with its fd
    others = {id(h.vm): h.vm for h in model.files.values() if h.kind == FdKind.VM and h.vm is not None and h.vm is not vm}
    model.check(f"{name}.busy-other-vm", any(ino in o.irqfds for o in others.values()), fd, errno.EBUSY)
    vm.irqfds.add(ino)
    return 0


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_CREATE_IRQCHIP": create_irqchip,
    "KVM_IRQFD": irqfd,
}
