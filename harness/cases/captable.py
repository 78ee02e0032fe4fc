"""The probed capabilities, as plain data (the probe itself is `harness.host.caps`).

Only cap numbers that the ABI facts name are asked. The table is plain data (JSON
round-trip) so the xdist controller probes once and every worker parametrizes from
the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


def vm_types_of(mask: int) -> tuple[int, ...]:
    return tuple(t for t in range(64) if (mask >> t) & 1)
