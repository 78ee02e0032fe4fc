"""Capabilities, probed once per session at both scopes: only cap numbers the ABI facts
name are asked, on /dev/kvm and on a VM of each type in KVM_CAP_VM_TYPES."""

from __future__ import annotations

from harness.abi.fdkind import vm_label
from harness.cases.captable import CapTable, vm_types_of
from harness.host.fds import Kvm


def probe_caps(kvm: Kvm, model: bool = False) -> CapTable:
    """Ask every known cap on /dev/kvm and on a VM of each type in KVM_CAP_VM_TYPES
    (only the default type when that cap is unknown or 0)."""
    numbers = kvm.facts.cap_numbers(model=model)
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
