"""Every surface, in one registry: tables, the session, the mutant catalogue and the
report iterate over it. A new ioctl is one surface (in its family's module) plus its
ABI data; a struct ioctl in the ABI facts without a surface is an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

from harness.abi.facts import AbiFacts
from harness.cases.case import Case
from harness.cases.plan import Plan
from harness.surfaces import (
    coalesced_mmio,
    create_vcpu,
    dirty_log,
    enable_cap,
    guest,
    guest_memfd,
    ioeventfd,
    irqfd,
    memory_attributes,
    memslots,
    prefault,
)
from harness.surfaces.base import FileCall, Surface

# one module per family; each declares SURFACES, and may declare FILE_CALLS, TABLES, RULES and OTHER_RULES
FAMILIES: tuple[ModuleType, ...] = (memory_attributes, guest_memfd, memslots, prefault, create_vcpu, enable_cap, dirty_log,
                                     coalesced_mmio, ioeventfd, irqfd, guest)
SURFACES: tuple[Surface, ...] = tuple(s for m in FAMILIES for s in m.SURFACES)
FILE_CALLS: tuple[FileCall, ...] = tuple(c for m in FAMILIES for c in getattr(m, "FILE_CALLS", ()))
# Rules of calls that take no struct (the dispatch rules hold for every surface).
OTHER_RULES: dict[str, str] = {
    "create_vm": "KVM_CREATE_VM: only types in KVM_CAP_VM_TYPES",
    "unknown_cap": "KVM_CHECK_EXTENSION compares its long argument whole: a number no cap has → 0",
    "absent_ioctl": "the whole number dispatches: another size, direction or fd kind → ENOTTY (EINVAL on /dev/kvm and a vCPU)",
    "bad_pointer": "a NULL, unmapped or partly unreadable struct → EFAULT",
}
_BY_NAME = {s.name: s for s in SURFACES}
assert len(_BY_NAME) == len(SURFACES), "two surfaces with one name"


class SurfaceMissing(Exception):
    """A struct ioctl of the ABI facts has no surface: it would silently get no cases."""


def surface(name: str) -> Surface:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SurfaceMissing(f"{name} has no surface in harness/surfaces/ (add it to its family's module)") from None


def with_table(table: str) -> Iterator[Surface]:
    """The surfaces that take part in an area table, in registry order."""
    return (s for s in SURFACES if table in s.tables)


def check_covered(catalogue: AbiFacts) -> None:
    """Every struct ioctl any revision defines has a surface."""
    missing = sorted(n for n, io in catalogue.ioctls.items() if io.struct is not None and n not in _BY_NAME)
    if missing:
        raise SurfaceMissing(f"struct ioctls without a surface in harness/surfaces/: {', '.join(missing)}")


def family_tables() -> dict[str, Callable[[Plan], list[Case]]]:
    """The case tables surface families declare in their modules' `TABLES`."""
    out: dict[str, Callable[[Plan], list[Case]]] = {}
    for module in FAMILIES:
        out.update(getattr(module, "TABLES", {}))
    return out


def rules() -> dict[str, str]:
    """Every rule a surface or call names, with what it covers (for the mutant catalogue)."""
    out = {s.rule: s.rule_doc for s in SURFACES}
    out.update({c.rule: c.rule_doc for c in FILE_CALLS})
    out.update(OTHER_RULES)
    for module in FAMILIES:  # rules of a family's effect cases, which no surface names
        out.update(getattr(module, "RULES", {}))
        out.update(getattr(module, "OTHER_RULES", {}))
    return out
