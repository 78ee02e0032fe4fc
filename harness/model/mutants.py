"""The mutant catalogue: deliberate deviations of the model, each breaking one rule.

The catalogue is data (`mutants.toml`): a name, the rule it breaks, the profile it runs
on, why it is wrong, and a `Deviation`. A mutant the suite does not kill is a missing or
weak check in the suite, never an entry to drop. `RULES` lists every rule a mutant may
name: each function of `harness.rules` that gives an expected answer, and the checks the
suites make beyond an answer; every rule has at least one mutant.
"""

from __future__ import annotations

import errno
import tomllib
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from harness.abi.profile import known_profiles
from harness.errors import KvmconfError
from harness.model.deviation import CAP_MODES, Deviation

CATALOGUE = Path(__file__).with_name("mutants.toml")

RULES: dict[str, str] = {
    # harness.rules: the expected answer of each surface
    "set_memory_attributes": "KVM_SET_MEMORY_ATTRIBUTES{,2}: flags, attributes, size, wrap, alignment, reserved words, file bounds",
    "create_guest_memfd": "KVM_CREATE_GUEST_MEMFD: advertised flags, signed size > 0 and aligned, reserved words zero",
    "create_vm": "KVM_CREATE_VM: only types in KVM_CAP_VM_TYPES",
    "set_user_memory_region2": "KVM_SET_USER_MEMORY_REGION2: slot, flags, alignment, wrap, pads, the guest_memfd binding",
    "guest_memfd_fallocate": "fallocate on a guest_memfd: modes, alignment, allocation inside the file",
    "guest_memfd_mmap": "mmap of a guest_memfd: noexec, GUEST_MEMFD_FLAG_MMAP, MAP_SHARED only",
    "guest_memfd_io": "read/write EINVAL, pread/pwrite ESPIPE (EINVAL at a negative position)",
    "absent_ioctl": "the whole number dispatches: another size, direction or fd kind → ENOTTY",
    "bad_pointer": "a NULL, unmapped or partly unreadable struct → EFAULT",
    # the suites' checks beyond an answer
    "exact-copy": "the kernel reads exactly sizeof bytes: a struct ending at a guard page is read whole",
    "writes": "nothing written outside the struct, nor inside it except output fields",
    "cap-value": "a cap tells the truth at its scope: a VM's own bits (within /dev/kvm's), all of them accepted",
    "cap-mirror": "KVM_CAP_MEMORY_ATTRIBUTES2 returns what KVM_CAP_MEMORY_ATTRIBUTES returns, at both scopes",
    "cap-announces": "a non-zero announcing cap on /dev/kvm ⇔ the ioctl exists on that kind of fd",
    "cap-stable": "a cap answers the same on every call",
    "no-trace": "a rejected call leaves no fd and no memslot behind",
    "fstat": "fstat of a guest_memfd: st_size the size asked for, st_blksize the page size",
    "parity": "the VM fd and the guest_memfd fd answer a matrix alike, except the documented differences",
}


class MutantError(KvmconfError):
    """An unknown mutant, a malformed catalogue, or --mutant without the model backend."""

    exit_code = 51


@dataclass(frozen=True)
class Mutant:
    name: str
    rule: str
    profile: str
    why: str
    deviation: Deviation


def _deviation(name: str, raw: dict[str, Any]) -> Deviation:
    """A Deviation from its TOML table: errnos by name, extra bits as bit numbers."""
    known = {f.name for f in fields(Deviation)}
    unknown = set(raw) - known
    if unknown:
        raise MutantError(f"{CATALOGUE}: mutant {name}: unknown deviation keys {sorted(unknown)}")
    args: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("skip", "keep_rejected", "echo"):
            args[key] = frozenset(value)
        elif key == "errnos":
            bad = [v for v in value.values() if not (isinstance(v, str) and v.startswith("E") and hasattr(errno, v))]
            if bad:
                raise MutantError(f"{CATALOGUE}: mutant {name}: errnos {bad} are not errno names")
            args[key] = {check: int(getattr(errno, v)) for check, v in value.items()}
        elif key == "extra_bits":
            args[key] = {check: sum(1 << b for b in bits) for check, bits in value.items()}
        elif key == "caps":
            bad = [v for v in value.values() if v not in CAP_MODES]
            if bad:
                raise MutantError(f"{CATALOGUE}: mutant {name}: cap modes {bad} are not one of {CAP_MODES}")
            args[key] = dict(value)
        elif key == "aliases":
            args[key] = tuple((str(a), str(d), int(s)) for a, d, s in value)
        elif key == "extra_fds":
            args[key] = {io: tuple(kinds) for io, kinds in value.items()}
        else:
            args[key] = value
    return Deviation(**args)


@cache
def catalogue() -> tuple[Mutant, ...]:
    """Every mutant, in the file's order; a defect names the file and the mutant."""
    with CATALOGUE.open("rb") as fh:
        data = tomllib.load(fh)
    out: list[Mutant] = []
    for entry in data.get("mutant", []):
        name = str(entry.get("name", "?"))
        missing = {"name", "rule", "profile", "why", "deviation"} - set(entry)
        if missing:
            raise MutantError(f"{CATALOGUE}: mutant {name}: missing {sorted(missing)}")
        if entry["rule"] not in RULES:
            raise MutantError(f"{CATALOGUE}: mutant {name}: rule {entry['rule']!r} is not one of harness.model.mutants.RULES")
        if entry["profile"] not in known_profiles():
            raise MutantError(f"{CATALOGUE}: mutant {name}: unknown profile {entry['profile']!r}")
        out.append(Mutant(name, entry["rule"], entry["profile"], entry["why"], _deviation(name, entry["deviation"])))
    names = [m.name for m in out]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise MutantError(f"{CATALOGUE}: mutants named twice: {dups}")
    return tuple(out)


def mutant(name: str) -> Mutant:
    for m in catalogue():
        if m.name == name:
            return m
    raise MutantError(f"unknown mutant {name!r}; known mutants: {', '.join(m.name for m in catalogue())}")
