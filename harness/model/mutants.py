"""The mutant catalogue: deliberate deviations of the model, each breaking one rule.

The catalogue is data (`mutants.toml`): a name, the rule it breaks, the profile it runs
on, why it is wrong, and a `Deviation`. A mutant the suite does not kill is a missing or
weak check in the suite, never an entry to drop. `RULES` lists every rule a mutant may
name: each surface's rule (from the surface registry) and the checks the suites make
beyond an answer; every rule has at least one mutant.
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
from harness.surfaces import registry

CATALOGUE = Path(__file__).with_name("mutants.toml")

# the suites' checks beyond an answer
SUITE_CHECKS: dict[str, str] = {
    "exact-copy": "the kernel reads exactly sizeof bytes: a struct ending at a guard page is read whole",
    "writes": "nothing written outside the struct, nor inside it except output and in/out fields",
    "cap-value": "a cap tells the truth at its scope: a VM's own bits (within /dev/kvm's), all of them accepted",
    "cap-mirror": "KVM_CAP_MEMORY_ATTRIBUTES2 returns what KVM_CAP_MEMORY_ATTRIBUTES returns, at both scopes",
    "cap-announces": "a non-zero announcing cap on /dev/kvm ⇔ the ioctl exists on that kind of fd",
    "cap-stable": "a cap answers the same on every call",
    "no-trace": "a rejected call leaves no fd and no memslot behind",
    "parity": "the VM fd and the guest_memfd fd answer a matrix alike, except the documented differences",
}
# every rule a mutant may name: each surface's rule (the registry's) and the suites' checks
RULES: dict[str, str] = {**registry.rules(), **SUITE_CHECKS}


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
        elif key == "narrow":
            args[key] = {check: (1 << int(bits)) - 1 for check, bits in value.items()}
        elif key == "aliases":
            args[key] = tuple((str(a), str(d), int(s)) for a, d, s in value)
        elif key == "exit_skew":
            args[key] = {field: int(delta) for field, delta in value.items()}
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
