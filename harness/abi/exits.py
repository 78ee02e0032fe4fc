"""kvm_run's exit as an outcome: the reason and its payload, decoded by name.

Pure: it reads the bytes of a vCPU's `kvm_run` with the profile's layouts of `struct
kvm_run` and of the exit union's members (`kvm_run_exit_*`) and names every number the way api.rst
does, so a failure message never shows a bare exit code.
"""

from __future__ import annotations

import errno as _errno
from dataclasses import dataclass

from harness.abi.facts import AbiFacts, Struct
from harness.abi.profile import catalogue

# the exit union's member each reason fills (api.rst, "struct kvm_run")
PAYLOAD = {"KVM_EXIT_IO": "io", "KVM_EXIT_MMIO": "mmio", "KVM_EXIT_MEMORY_FAULT": "memory_fault",
           "KVM_EXIT_INTERNAL_ERROR": "internal"}
MEMBER_PREFIX = "kvm_run_exit_"  # a layout named kvm_run_exit_<m> is member <m> of kvm_run's exit union


def reason_name(facts: AbiFacts, reason: int) -> str:
    for name, value in facts.constants.items():
        if name.startswith("KVM_EXIT_") and not name.startswith("KVM_EXIT_IO_") and value == reason:
            return name
    return f"exit reason {reason} (unnamed in {facts.source})"


@dataclass(frozen=True)
class Exit:
    """One KVM_RUN: its result (0 or -errno), the exit reason by name and the payload
    member's fields ("mmio.phys_addr"), with `data` the bytes the exit carried."""

    result: int
    reason: str
    fields: tuple[tuple[str, int], ...] = ()
    flag_names: str = ""  # memory_fault.flags by name

    def field(self, name: str) -> int | None:
        return dict(self.fields).get(name)

    def __str__(self) -> str:
        rc = "" if self.result >= 0 else f"-{_errno.errorcode.get(-self.result, -self.result)} with "
        shown = " ".join(f"{k.split('.', 1)[-1]}={show_field(k, v)}" for k, v in self.fields)
        shown += f" ({self.flag_names})" if self.flag_names else ""
        return f"{rc}{self.reason}" + (f" {shown}" if shown else "")


def show_field(name: str, value: int) -> str:
    """A payload field's value as messages show it: a direction by name, flags and big values in hex."""
    if name == "io.direction":
        return "OUT" if value else "IN"
    return f"0x{value:x}" if value > 9 or name.endswith("flags") else str(value)


def _member(facts: AbiFacts, member: str) -> Struct:
    """The layout of an exit-union member: the run's facts, or the profiles' where a
    kernel header stands in (the members are anonymous structs in C)."""
    name = MEMBER_PREFIX + member
    return facts.structs.get(name) or catalogue().structs[name]


def run_fields(facts: AbiFacts) -> dict[str, tuple[int, int]]:
    """Every kvm_run field read or written here, by label ("exit_reason", "mmio.data[0]"):
    its offset in kvm_run and its size."""
    run = facts.structs["kvm_run"]
    base = run.field("padding").offset
    out = {f.name: (f.offset, f.size) for f in run.fields if f.count == 1}
    for member in PAYLOAD.values():
        out.update({f"{member}.{w.label}": (base + w.offset, w.size) for w in _member(facts, member).words()})
    return out


def decode(facts: AbiFacts, run: bytes, result: int, io_data: bytes = b"") -> Exit:
    """The exit in `run` (the first bytes of the vCPU's mapping) after KVM_RUN gave
    `result`. `io_data` is the port data at `io.data_offset` (the caller reads it there)."""
    values = {label: int.from_bytes(run[o : o + n], "little") for label, (o, n) in run_fields(facts).items()}
    reason = reason_name(facts, values["exit_reason"])
    member = PAYLOAD.get(reason)
    fields: list[tuple[str, int]] = []
    names = ""
    if member == "mmio":
        length = values["mmio.len"]
        data = bytes(values[f"mmio.data[{i}]"] for i in range(8))[:length]
        fields = [("mmio.phys_addr", values["mmio.phys_addr"]), ("mmio.len", length),
                  ("mmio.is_write", values["mmio.is_write"])]
        if values["mmio.is_write"]:
            fields.append(("mmio.data", int.from_bytes(data, "little")))
    elif member == "io":
        fields = [(f"io.{k}", values[f"io.{k}"]) for k in ("direction", "size", "port", "count")]
        if values["io.direction"] == facts.constants["KVM_EXIT_IO_OUT"]:
            fields.append(("io.data", int.from_bytes(io_data[: values["io.size"] * values["io.count"]], "little")))
    elif member == "memory_fault":
        fields = [(f"memory_fault.{k}", values[f"memory_fault.{k}"]) for k in ("flags", "gpa", "size")]
        names = flag_names(facts, values["memory_fault.flags"])
    elif member == "internal":
        fields = [("internal.suberror", values["internal.suberror"]), ("internal.ndata", values["internal.ndata"])]
    return Exit(result, reason, tuple(fields), names)


def flag_names(facts: AbiFacts, flags: int) -> str:
    """memory_fault.flags as KVM_MEMORY_EXIT_FLAG_* names (and any unnamed bits)."""
    names = [n for n, v in facts.constants.items() if n.startswith("KVM_MEMORY_EXIT_FLAG_") and flags & v]
    rest = flags & ~sum(facts.constants[n] for n in names)
    return "|".join(names + ([f"0x{rest:x}"] if rest else [])) if flags else "no flags"
