"""The ABI facts the suite runs on: struct layouts, ioctl numbers, caps and constants.

One place holds each fact. Facts come from a profile (a data file per uAPI revision) or
from a kernel's uapi header probed with gcc, which overrides the profile's numbers. A
symbol that the active source lacks is *absent*, with the reason, so checks that need it
skip and say what was missing; they are never given a guessed number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from harness.abi.fdkind import FdKind
from harness.abi.ioc import Dir, IocEncoding

SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}
TYPE_BY_SIZE = {v: k for k, v in SIZES.items()}
# What each role promises. "in": an input; "inout": an input the kernel writes back
# (KVM_PRE_FAULT_MEMORY's gpa and size); "out": written by the kernel, zero when sent;
# "reserved" and "pad": must be zero by the hygiene rules.
ROLES = ("in", "inout", "out", "reserved", "pad")
MUST_BE_ZERO = frozenset({"reserved", "pad", "out"})
KERNEL_WRITES = frozenset({"out", "inout"})


@dataclass(frozen=True)
class Field:
    """One member of a uapi struct; arrays keep their element type and count."""

    name: str
    type: str
    offset: int
    count: int = 1
    role: str = "in"  # one of ROLES

    @property
    def elem_size(self) -> int:
        return SIZES[self.type]

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

    def words(self) -> tuple[Word, ...]:
        return self._words

    @cached_property
    def _words(self) -> tuple[Word, ...]:
        """Made once per struct: a fill of 65,000 memslots reads every word of each call."""
        out: list[Word] = []
        for f in self.fields:
            if f.count == 1:
                out.append(Word(f.name, f, None, f.offset, f.elem_size))
            else:
                out += [Word(f"{f.name}[{i}]", f, i, f.offset + i * f.elem_size, f.elem_size) for i in range(f.count)]
        return tuple(out)

    @cached_property
    def _by_label(self) -> dict[str, Word]:
        return {w.label: w for w in self._words}

    def reserved_words(self) -> list[Word]:
        """Words that must be zero when sent: reserved words and pads, and output fields,
        which the kernel fills in (v3's `error_offset`: non-zero on input → EINVAL)."""
        return list(self._reserved)

    @cached_property
    def _reserved(self) -> tuple[Word, ...]:
        return tuple(w for w in self._words if w.field.role in MUST_BE_ZERO)

    def input_words(self) -> list[Word]:
        """Words a caller chooses: inputs and in/out fields."""
        return [w for w in self.words() if w.field.role in ("in", "inout")]

    def written_bytes(self) -> frozenset[int]:
        """Offsets the kernel may write: output and in/out fields."""
        return frozenset(b for f in self.fields if f.role in KERNEL_WRITES for b in range(f.offset, f.offset + f.size))

    def pack(self, values: Mapping[str, int]) -> bytes:
        """Bytes of the struct with `values` ("flags", "reserved[3]") set, the rest zero."""
        buf = bytearray(self.size)
        words = self._by_label
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
    fds: tuple[FdKind, ...]
    caps: Mapping[FdKind, str] = field(default_factory=dict)
    attributes_caps: Mapping[FdKind, str] = field(default_factory=dict)
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

    def cap_numbers(self, *, model: bool) -> dict[str, int]:
        """Every cap number the facts name; a profile's model-only numbers count only
        for the model backend (real kernels took those numbers for other caps)."""
        numbers = dict(self.caps)
        if model:
            numbers.update({k: v for k, v in self.model_caps.items() if k not in numbers})
        return numbers

    def cap_number(self, name: str, *, model: bool) -> int | None:
        return self.cap_numbers(model=model).get(name)

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
