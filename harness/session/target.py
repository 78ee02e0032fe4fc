"""The kernel under test for one session: backend, ABI facts, caps and known findings.

Requirements are stated here, in one idiom: `require_*` skips the case with a reason
that names the symbol, or the cap and the fd it asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.abi.facts import AbiFacts, Ioctl
from harness.abi.profile import DEFAULT_PROFILE, catalogue, load_profile
from harness.host.backend import Backend
from harness.host.caps import CapTable, probe_caps
from harness.host.fds import Kvm, Vm, vm_label
from harness.host.header import facts_from_header
from harness.host.usermem import PAGE_SIZE
from harness.rules import KernelData

SYSTEM_LABEL = "/dev/kvm"


def load_facts(profile: str = DEFAULT_PROFILE, header: str | None = None) -> AbiFacts:
    if header:
        return facts_from_header(Path(header), profile)
    return load_profile(profile)


@dataclass
class Target:
    """Everything a case needs to know about the kernel it runs against."""

    backend: Backend
    facts: AbiFacts
    device: str
    caps: CapTable
    kernel: str
    how: str
    kernel_data: KernelData = field(default_factory=KernelData)
    page: int = PAGE_SIZE
    _kvm: Kvm | None = None

    @property
    def model(self) -> bool:
        return self.backend.name.startswith("model")

    @property
    def kvm(self) -> Kvm:
        """The session's /dev/kvm fd, opened once."""
        if self._kvm is None:
            self._kvm = Kvm.open(self.backend, self.facts, self.device)
        return self._kvm

    def held_fds(self) -> set[int]:
        """The fds the session keeps open across cases (its /dev/kvm fd, once opened)."""
        return {self._kvm.fd} if self._kvm is not None and self._kvm.fd >= 0 else set()

    def vm(self, vm_type: int = 0) -> Vm:
        return self.kvm.create_vm(vm_type)

    def close(self) -> None:
        if self._kvm is not None:
            self._kvm.close()
            self._kvm = None

    # -- requirements: each skips with the symbol, or the cap and the fd it asked --

    def require_symbol(self, symbol: str) -> None:
        why = self.facts.missing(symbol)
        if why is not None:
            pytest.skip(why)

    def cap(self, name: str, vm_type: int | None = None) -> int:
        """A cap's probed value, skipping when its number is unknown to the ABI facts."""
        value = self.caps.at(name, vm_type)
        if value is None:
            where = SYSTEM_LABEL if vm_type is None else vm_label(vm_type)
            pytest.skip(f"{name} has no number in {self.facts.source}, so it was not asked on {where}")
        return value

    def require_cap(self, name: str, vm_type: int | None = None, bits: int | None = None) -> int:
        """Skip unless cap `name` is non-zero (or has all of `bits`) at that scope."""
        value = self.cap(name, vm_type)
        where = SYSTEM_LABEL if vm_type is None else vm_label(vm_type)
        if value <= 0:
            pytest.skip(f"{name} is {value} on {where}")
        if bits is not None and value & bits != bits:
            pytest.skip(f"{name} is 0x{value:x} on {where}, without 0x{bits:x}")
        return value

    def require_ioctl(self, name: str, fd_kind: str, vm_type: int = 0) -> Ioctl:
        """Skip unless the ABI facts define `name` on `fd_kind` and the cap that
        announces it on that kind of fd is non-zero on /dev/kvm."""
        if name not in self.facts.ioctls:
            known = catalogue(self.facts.encoding).ioctls.get(name)
            cap = known.caps.get(fd_kind) if known else None
            where = fd_label(fd_kind, vm_type)
            if cap is not None and self.caps.at(cap, None) is None:
                pytest.skip(f"{name} on {where} needs {cap}, which {self.facts.source} does not define")
            self.require_symbol(name)
        io = self.facts.ioctls[name]
        if fd_kind not in io.fds:
            pytest.skip(f"{name} is not an ioctl of a {fd_kind} fd in {self.facts.source}")
        cap = io.caps.get(fd_kind)
        if cap is not None:
            where = fd_label(fd_kind, vm_type)
            value = self.caps.at(cap, None)
            if value is None:
                pytest.skip(f"{name} on {where} needs {cap}, which {self.facts.source} gives no number")
            if value <= 0:
                pytest.skip(f"{cap} is {value} on /dev/kvm, so {name} does not exist on {where}")
        return io

    def require_vm(self, vm_type: int) -> None:
        if vm_type in self.caps.vm_errors:
            pytest.skip(self.caps.vm_errors[vm_type])

    def supported_attributes(self, io: Ioctl, fd_kind: str, vm_type: int) -> int:
        """The attribute bits a VM of `vm_type` accepts through `io` on `fd_kind`."""
        cap = io.attributes_caps.get(fd_kind)
        if cap is None:
            return 0
        return self.cap(cap, vm_type)


def fd_label(fd: str, vm_type: int) -> str:
    """The fd for messages: "/dev/kvm", "a VM of type 0", "a guest_memfd of a VM of type 0"."""
    return {"system": SYSTEM_LABEL, "vm": vm_label(vm_type), "guest_memfd": f"a guest_memfd of {vm_label(vm_type)}"}[fd]


def make_target(backend: Backend, facts: AbiFacts, device: str, how: str, kernel: str) -> Target:
    """Open the device and probe the caps: the one place a session touches the kernel first."""
    kvm = Kvm.open(backend, facts, device)
    try:
        caps = probe_caps(kvm, model=backend.name.startswith("model"))
    finally:
        kvm.close()
    return Target(backend, facts, device, caps, kernel, how)
