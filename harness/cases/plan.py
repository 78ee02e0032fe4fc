"""The run's facts, built once and passed down: the ABI facts the run was given, the
catalogue of every revision (so case ids are the same across revisions), the probed
caps, the page size and the per-kernel data. Tables, surfaces and rules read these and
nothing else; nothing below reads a profile on its own.

The requirement idiom's logic is here too, pure: each `why_not_*` returns why a case
cannot run (naming the symbol, or the cap and the fd asked) or None; the session turns
a reason into a skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.abi.facts import AbiFacts, Ioctl
from harness.abi.fdkind import SYSTEM_LABEL, FdKind, vm_label
from harness.cases.captable import CapTable
from harness.rules import HostLimits, KernelData


@dataclass(frozen=True)
class Plan:
    facts: AbiFacts
    catalogue: AbiFacts
    caps: CapTable
    page: int
    model: bool = False  # the model backend answers (it knows the profiles' model-only caps)
    kernel_data: KernelData = field(default_factory=KernelData)
    host: HostLimits = field(default_factory=HostLimits)

    @property
    def vm_types(self) -> tuple[int, ...]:
        return self.caps.vm_types

    def why_not_symbol(self, symbol: str) -> str | None:
        return self.facts.missing(symbol)

    def why_not_cap(self, name: str, vm_type: int | None) -> str | None:
        """Why cap `name` has no value at that scope (its number being unknown)."""
        if self.caps.at(name, vm_type) is None:
            where = SYSTEM_LABEL if vm_type is None else vm_label(vm_type)
            return f"{name} has no number in {self.facts.source}, so it was not asked on {where}"
        return None

    def why_not_cap_set(self, name: str, vm_type: int | None, bits: int | None = None) -> str | None:
        """Why cap `name` is not non-zero (or lacks some of `bits`) at that scope."""
        why = self.why_not_cap(name, vm_type)
        if why is not None:
            return why
        value = self.caps.at(name, vm_type) or 0
        where = SYSTEM_LABEL if vm_type is None else vm_label(vm_type)
        if value <= 0:
            return f"{name} is {value} on {where}"
        if bits is not None and value & bits != bits:
            return f"{name} is 0x{value:x} on {where}, without 0x{bits:x}"
        return None

    def why_not_ioctl(self, name: str, fd: FdKind, vm_type: int = 0) -> str | None:
        """Why the ABI facts do not define `name` on `fd`, or the cap that announces it
        on that kind of fd is not non-zero on /dev/kvm."""
        where = fd.label(vm_type)
        io = self.facts.ioctls.get(name)
        if io is None:
            known = self.catalogue.ioctls.get(name)
            cap = known.caps.get(fd) if known else None
            if cap is not None and self.caps.at(cap, None) is None:
                return f"{name} on {where} needs {cap}, which {self.facts.source} does not define"
            return self.facts.missing(name)
        if fd not in io.fds:
            return f"{name} is not an ioctl of a {fd} fd in {self.facts.source}"
        cap = io.caps.get(fd)
        if cap is not None:
            value = self.caps.at(cap, None)
            if value is None:
                return f"{name} on {where} needs {cap}, which {self.facts.source} gives no number"
            if value <= 0:
                return f"{cap} is {value} on /dev/kvm, so {name} does not exist on {where}"
        return None

    def why_not_vm(self, vm_type: int) -> str | None:
        return self.caps.vm_errors.get(vm_type)

    def generated(self, name: str) -> Ioctl:
        """The ioctl cases are generated from: the catalogue's, with every fd kind any
        revision gives it, so the same cases exist (and skip) in every revision."""
        return self.catalogue.ioctls[name]

    def struct_for(self, name: str) -> AbiFacts:
        """The facts whose layout of `name`'s struct cases use: the run's where it has one."""
        io = self.catalogue.ioctls[name]
        return self.facts if io.struct in self.facts.structs else self.catalogue
