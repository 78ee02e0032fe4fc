"""The kinds of fd KVM's memory uAPI lives on, as one type.

Each kind's tag (in case ids) and label (in messages) are defined here and nowhere
else; opening and closing each kind lives in one place on the I/O side
(`harness.host.fds.open_kind`). An unknown kind is an error, never a fallback.
"""

from __future__ import annotations

import enum
import re


class FdKind(enum.StrEnum):
    SYSTEM = "system"  # /dev/kvm
    VM = "vm"
    VCPU = "vcpu"
    GUEST_MEMFD = "guest_memfd"

    @classmethod
    def parse(cls, name: str) -> FdKind:
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"unknown fd kind {name!r}; known kinds: {', '.join(k.value for k in cls)}") from None

    @classmethod
    def from_tag(cls, tag: str) -> FdKind:
        """The kind a case id's fd part names ("vm0", "gmem@vm1", "kvm")."""
        for kind, pattern in _TAGS.items():
            if re.fullmatch(pattern.replace("{t}", r"\d+"), tag):
                return kind
        raise ValueError(f"{tag!r} names no fd kind")

    def tag(self, vm_type: int) -> str:
        """Short name for case ids: "kvm", "vm0", "vcpu0@vm0", "gmem@vm0"."""
        return _TAGS[self].format(t=vm_type)

    def label(self, vm_type: int) -> str:
        """The fd for messages: "/dev/kvm", "a VM of type 0", "vCPU 0 of a VM of type 0"."""
        return _LABELS[self].format(t=vm_type)


SYSTEM_LABEL = "/dev/kvm"
_TAGS = {FdKind.SYSTEM: "kvm", FdKind.VM: "vm{t}", FdKind.VCPU: "vcpu0@vm{t}", FdKind.GUEST_MEMFD: "gmem@vm{t}"}
_LABELS = {FdKind.SYSTEM: SYSTEM_LABEL, FdKind.VM: "a VM of type {t}", FdKind.VCPU: "vCPU 0 of a VM of type {t}",
           FdKind.GUEST_MEMFD: "a guest_memfd of a VM of type {t}"}
assert set(_TAGS) == set(_LABELS) == set(FdKind)


def vm_label(vm_type: int) -> str:
    return FdKind.VM.label(vm_type)
