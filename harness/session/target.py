"""The kernel under test for one session: the backend that answers, and the run's plan.

Requirements are stated here, in one idiom: `require_*` skips the case with the reason
the plan gives (the symbol, or the cap and the fd it asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.abi.facts import AbiFacts, Ioctl
from harness.abi.fdkind import FdKind
from harness.abi.linux import PAGE_SIZE
from harness.abi.profile import DEFAULT_PROFILE, catalogue, load_profile
from harness.cases.captable import CapTable
from harness.cases.plan import Plan
from harness.host.backend import Backend
from harness.host.caps import probe_caps
from harness.host.fds import Kvm, Vm
from harness.host.header import facts_from_header
from harness.rules import KernelData
from harness.surfaces.base import Need


def load_facts(profile: str = DEFAULT_PROFILE, header: str | None = None) -> AbiFacts:
    if header:
        return facts_from_header(Path(header), profile)
    return load_profile(profile)


@dataclass(frozen=True)
class Target:
    """Everything a case needs to know about the kernel it runs against; built once."""

    backend: Backend
    plan: Plan
    device: str
    kernel: str
    how: str
    _kvm: list[Kvm] = field(default_factory=list, compare=False, repr=False)  # opened on first use

    @property
    def facts(self) -> AbiFacts:
        return self.plan.facts

    @property
    def caps(self) -> CapTable:
        return self.plan.caps

    @property
    def page(self) -> int:
        return self.plan.page

    @property
    def model(self) -> bool:
        return self.plan.model

    @property
    def kernel_data(self) -> KernelData:
        return self.plan.kernel_data

    @property
    def kvm(self) -> Kvm:
        """The session's /dev/kvm fd, opened once."""
        if not self._kvm:
            self._kvm.append(Kvm.open(self.backend, self.facts, self.device))
        return self._kvm[0]

    def held_fds(self) -> set[int]:
        """The fds the session keeps open across cases (its /dev/kvm fd, once opened)."""
        return {k.fd for k in self._kvm if k.fd >= 0}

    def vm(self, vm_type: int = 0) -> Vm:
        return self.kvm.create_vm(vm_type)

    def close(self) -> None:
        while self._kvm:
            self._kvm.pop().close()

    # -- requirements: each skips with the reason the plan gives --

    @staticmethod
    def _skip_if(why: str | None) -> None:
        if why is not None:
            pytest.skip(why)

    def require_symbol(self, symbol: str) -> None:
        self._skip_if(self.plan.why_not_symbol(symbol))

    def cap(self, name: str, vm_type: int | None = None) -> int:
        """A cap's probed value, skipping when its number is unknown to the ABI facts."""
        self._skip_if(self.plan.why_not_cap(name, vm_type))
        return self.caps.at(name, vm_type) or 0

    def require_cap(self, name: str, vm_type: int | None = None, bits: int | None = None) -> int:
        """Skip unless cap `name` is non-zero (or has all of `bits`) at that scope."""
        self._skip_if(self.plan.why_not_cap_set(name, vm_type, bits))
        return self.caps.at(name, vm_type) or 0

    def require_ioctl(self, name: str, fd: FdKind, vm_type: int = 0) -> Ioctl:
        """Skip unless the ABI facts define `name` on `fd` and the cap that announces it
        on that kind of fd is non-zero on /dev/kvm."""
        self._skip_if(self.plan.why_not_ioctl(name, fd, vm_type))
        return self.facts.ioctls[name]

    def require_vm(self, vm_type: int) -> None:
        self._skip_if(self.plan.why_not_vm(vm_type))

    def require(self, need: Need, vm_type: int) -> None:
        if need.ioctl is not None:
            self.require_ioctl(need.ioctl, need.fd, vm_type)
        if need.cap is not None:
            self.require_cap(need.cap, vm_type)


def make_target(backend: Backend, facts: AbiFacts, device: str, how: str, kernel: str, caps: CapTable | None = None,
                kernel_data: KernelData | None = None) -> Target:
    """The session's target: the facts flow down once, into its plan. Without `caps`, the
    device is opened and the caps probed: the one place a session touches the kernel first."""
    if caps is None:
        kvm = Kvm.open(backend, facts, device)
        try:
            caps = probe_caps(kvm, model=backend.is_model)
        finally:
            kvm.close()
    plan = Plan(facts, catalogue(facts.encoding), caps, PAGE_SIZE, backend.is_model, kernel_data or KernelData(),
                backend.limits())
    return Target(backend, plan, device, kernel, how)
