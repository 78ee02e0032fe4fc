"""Capabilities, probed once per session at both scopes.

Only cap numbers that the ABI facts name are asked. The table is plain data (JSON
round-trip) so the xdist controller probes once and every worker parametrizes from
the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.abi.facts import AbiFacts
from harness.host.fds import Kvm, vm_label


@dataclass(frozen=True)
class CapTable:
    """Cap values by name: `system` on /dev/kvm, `vm[type]` on a fresh VM of that type."""

    system: dict[str, int]
    vm: dict[int, dict[str, int]]
    vm_types: tuple[int, ...]
    vm_errors: dict[int, str]

    def at(self, cap: str, vm_type: int | None) -> int | None:
        """A cap's value at one scope (None: not asked, its number being unknown)."""
        table = self.system if vm_type is None else self.vm.get(vm_type, {})
        return table.get(cap)

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "vm": {str(k): v for k, v in self.vm.items()},
            "vm_types": list(self.vm_types),
            "vm_errors": {str(k): v for k, v in self.vm_errors.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CapTable:
        return cls(
            dict(data["system"]),
            {int(k): dict(v) for k, v in data["vm"].items()},
            tuple(data["vm_types"]),
            {int(k): str(v) for k, v in data["vm_errors"].items()},
        )


def cap_numbers(facts: AbiFacts, model: bool) -> dict[str, int]:
    numbers = dict(facts.caps)
    if model:
        numbers.update({k: v for k, v in facts.model_caps.items() if k not in numbers})
    return numbers


def vm_types_of(mask: int) -> tuple[int, ...]:
    return tuple(t for t in range(64) if (mask >> t) & 1)


def probe_caps(kvm: Kvm, model: bool = False) -> CapTable:
    """Ask every known cap on /dev/kvm and on a VM of each type in KVM_CAP_VM_TYPES
    (only the default type when that cap is unknown or 0)."""
    numbers = cap_numbers(kvm.facts, model)
    system = {name: kvm.check_extension(num) for name, num in sorted(numbers.items())}
    mask = system.get("KVM_CAP_VM_TYPES", 0)
    types = vm_types_of(mask) if mask > 0 else (0,)
    per_vm: dict[int, dict[str, int]] = {}
    errors: dict[int, str] = {}
    for t in types:
        try:
            with kvm.create_vm(t) as vm:
                per_vm[t] = {name: vm.check_extension(num) for name, num in sorted(numbers.items())}
        except OSError as e:
            errors[t] = f"KVM_CREATE_VM for {vm_label(t)} failed: {e.strerror}"
    return CapTable(system, per_vm, types, errors)
