"""The ABI facts the suite runs on: struct layouts, ioctl numbers, caps and constants.

One place holds each fact. Facts come from a profile (a data file per uAPI revision) or
from a kernel's uapi header probed with gcc, which overrides the profile's numbers. A
symbol that the active source lacks is *absent*, with the reason, so checks that need it
skip and say what was missing; they are never given a guessed number.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from harness.abi.ioc import Dir, IocEncoding

FD_KINDS = ("system", "vm", "guest_memfd")
CTYPES = {"u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64}
TYPE_BY_SIZE = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}


@dataclass(frozen=True)
class Field:
    """One member of a uapi struct; arrays keep their element type and count."""

    name: str
    type: str
    offset: int
    count: int = 1
    role: str = "in"  # "in", "reserved" (must be zero by the hygiene rules), "out" (written by the kernel; zero when sent)

    @property
    def elem_size(self) -> int:
        return ctypes.sizeof(CTYPES[self.type])

    @property
    def size(self) -> int:
        return self.elem_size * self.count

    @property
    def bits(self) -> int:
        return self.elem_size * 8


@dataclass(frozen=True)
class Word:
    """One scalar slot of a struct: a field, or one element of an array field."""

    label: str  # "flags", "reserved[3]"
    field: Field
    index: int | None
    offset: int
    size: int


@dataclass(frozen=True)
class Struct:
    """A uapi struct layout, with its ctypes twin built from the same data."""

    name: str
    size: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"struct {self.name} has no field {name}")

    def has(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    def words(self) -> Iterator[Word]:
        for f in self.fields:
            if f.count == 1:
                yield Word(f.name, f, None, f.offset, f.elem_size)
            else:
                for i in range(f.count):
                    yield Word(f"{f.name}[{i}]", f, i, f.offset + i * f.elem_size, f.elem_size)

    def reserved_words(self) -> list[Word]:
        """Words that must be zero when sent: reserved words and pads, and output fields,
        which the kernel fills in (v3's `error_offset`: non-zero on input → EINVAL)."""
        return [w for w in self.words() if w.field.role in ("reserved", "out")]

    @cached_property
    def ctype(self) -> type[ctypes.Structure]:
        """A ctypes.Structure with this exact layout (explicit padding where needed)."""
        members: list[tuple[str, type]] = []
        pos = 0
        for f in sorted(self.fields, key=lambda f: f.offset):
            if f.offset > pos:
                members.append((f"_pad_{pos}", ctypes.c_uint8 * (f.offset - pos)))
            base: Any = CTYPES[f.type]
            members.append((f.name, base * f.count if f.count > 1 else base))
            pos = f.offset + f.size
        if self.size > pos:
            members.append((f"_pad_{pos}", ctypes.c_uint8 * (self.size - pos)))
        cls = type(self.name, (ctypes.Structure,), {"_pack_": 1, "_fields_": members})
        assert ctypes.sizeof(cls) == self.size, self.name
        return cls

    def pack(self, values: Mapping[str, int]) -> bytes:
        """Bytes of the struct with `values` ("flags", "reserved[3]") set, the rest zero."""
        buf = bytearray(self.size)
        words = {w.label: w for w in self.words()}
        for label, value in values.items():
            w = words[label]
            buf[w.offset : w.offset + w.size] = (value & ((1 << (8 * w.size)) - 1)).to_bytes(w.size, "little")
        return bytes(buf)

    def unpack(self, data: bytes) -> dict[str, int]:
        return {w.label: int.from_bytes(data[w.offset : w.offset + w.size], "little") for w in self.words()}


@dataclass(frozen=True)
class Ioctl:
    """An ioctl: its number's parts, the fds it exists on, and the caps that describe it.

    `caps` maps an fd kind to the cap that, asked on /dev/kvm, says the ioctl exists on
    that kind of fd; `attributes_caps` maps an fd kind to the cap that, asked on the VM,
    gives the attribute bits the VM accepts through it; `flags_cap` gives accepted flags.
    """

    name: str
    direction: Dir
    nr: int
    struct: str | None
    number: int
    fds: tuple[str, ...]
    caps: Mapping[str, str] = field(default_factory=dict)
    attributes_caps: Mapping[str, str] = field(default_factory=dict)
    flags_cap: str | None = None
    type: int = 0xAE


@dataclass(frozen=True)
class AbiFacts:
    """Everything the suite knows about the uAPI of the kernel under test."""

    source: str  # "profile released", "header /x/kvm.h (semantics: profile rfc-v4)"
    profile: str
    encoding: IocEncoding
    structs: Mapping[str, Struct]
    ioctls: Mapping[str, Ioctl]
    caps: Mapping[str, int]
    constants: Mapping[str, int]
    cap_mirrors: Mapping[str, str] = field(default_factory=dict)
    model_caps: Mapping[str, int] = field(default_factory=dict)
    absent: Mapping[str, str] = field(default_factory=dict)

    def missing(self, symbol: str) -> str | None:
        """Why `symbol` is not usable here, or None when it is."""
        if symbol in self.ioctls or symbol in self.caps or symbol in self.constants or symbol in self.structs:
            return None
        return self.absent.get(symbol, f"{symbol} is not defined by {self.source}")

    def cap_number(self, name: str, *, model: bool = False) -> int | None:
        """A cap's number; numbers that only a profile's model knows count only for the model."""
        if name in self.caps:
            return self.caps[name]
        if model:
            return self.model_caps.get(name)
        return None

    def const(self, name: str) -> int:
        return self.constants[name]

    def ioctl_number(self, name: str, direction: Dir | None = None, size: int | None = None) -> int:
        """The number of `name`, or of a sibling with another direction or size (same nr)."""
        io = self.ioctls[name]
        return self.encoding.ioc(
            io.direction if direction is None else direction,
            io.type,
            io.nr,
            (self.structs[io.struct].size if io.struct else 0) if size is None else size,
        )
