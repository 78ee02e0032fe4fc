"""A conformance case: its id says the surface, the fd, and what differs from valid."""

from __future__ import annotations

from dataclasses import dataclass

from harness.abi.fdkind import FdKind


def hexv(v: int) -> str:
    return f"0x{v:x}" if v > 9 else str(v)


GMEM_PAGES = 4  # size of the guest_memfd a case binds, sends attributes through or maps

@dataclass(frozen=True)
class Case:
    """One case; a change of the surface's valid baseline in one place."""

    area: str
    surface: str
    fd: FdKind = FdKind.VM
    vm_type: int = 0
    values: tuple[tuple[str, int], ...] = ()
    placement: str = "normal"  # normal exact overhang canaries readonly trailing null unmapped
    number: int | None = None  # another number with the same nr (wrong size or direction)
    number_tag: str = ""
    knobs: tuple[tuple[str, int | str], ...] = ()  # setup choices, e.g. ("binding", "closed")
    tag: str = ""

    @property
    def id(self) -> str:
        parts = [self.surface, self.fd.tag(self.vm_type)]
        parts += [f"{k}={hexv(v)}" for k, v in self.values]
        parts += [f"{k}={v if isinstance(v, str) else hexv(v)}" for k, v in self.knobs]
        if self.number_tag:
            parts.append(self.number_tag)
        if self.placement != "normal":
            parts.append(self.placement)
        if self.tag:
            parts.append(self.tag)
        return "/".join(parts)

    @property
    def where(self) -> str:
        """The case's fd for messages."""
        return self.fd.label(self.vm_type)

    def knob(self, name: str, default: int | str | None = None) -> int | str | None:
        return dict(self.knobs).get(name, default)

    def __str__(self) -> str:
        return self.id
