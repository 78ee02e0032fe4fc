"""The model's coalesced MMIO zones (coalesced_mmio.c), with the range rules kept: a
zone has a size, fits an int and does not wrap.

A family module: `HANDLERS` maps each ioctl to a function of the model and the call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from harness.abi.linux import U64
from harness.model.state import Handle

if TYPE_CHECKING:
    from harness.model.backend import ModelBackend


CAPS = {"KVM_CAP_COALESCED_PIO": 1}  # x86 has coalesced PIO zones too (kvm_main.c:4945-4946)


def zone(model: ModelBackend, name: str, handle: Handle, arg: int) -> tuple[int, int, int]:
    """The zone copied in and checked: pio, size, int width, wrap."""
    fd = handle.kind
    v = model.copy_in(name, arg, fd)
    addr, size, pio = v["addr"], v["size"], v["pio"]
    model.check(f"{name}.pio", pio not in (0, 1), fd)
    model.check(f"{name}.size", size == 0, fd)
    model.check(f"{name}.int", size >= 1 << 31, fd)
    model.check(f"{name}.wrap", addr + size > U64, fd)
    return addr, size, pio


def register(model: ModelBackend, handle: Handle, arg: int) -> int:
    model.vm_of(handle).zones.append(zone(model, "KVM_REGISTER_COALESCED_MMIO", handle, arg))
    return 0


def unregister(model: ModelBackend, handle: Handle, arg: int) -> int:
    """Every zone of the same bus that contains the one named goes; none need match."""
    addr, size, pio = zone(model, "KVM_UNREGISTER_COALESCED_MMIO", handle, arg)
    vm = model.vm_of(handle)
    vm.zones = [z for z in vm.zones if not (z[2] == pio and z[0] <= addr and addr + size <= z[0] + z[1])]
    return 0


HANDLERS: Mapping[str, Callable[[ModelBackend, Handle, int], int]] = {
    "KVM_REGISTER_COALESCED_MMIO": register,
    "KVM_UNREGISTER_COALESCED_MMIO": unregister,
}
