"""A uapi struct's ctypes twin, built from the ABI facts' layout (explicit padding where
the C layout has holes), for code that hands a struct to C by reference."""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

from harness.abi.facts import Struct

CTYPES: dict[str, Any] = {"u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32, "u64": ctypes.c_uint64}


@cache
def ctype_of(struct: Struct) -> type[ctypes.Structure]:
    """A ctypes.Structure with exactly `struct`'s layout."""
    members: list[tuple[str, Any]] = []
    pos = 0
    for f in sorted(struct.fields, key=lambda f: f.offset):
        if f.offset > pos:
            members.append((f"_pad_{pos}", ctypes.c_uint8 * (f.offset - pos)))
        base = CTYPES[f.type]
        members.append((f.name, base * f.count if f.count > 1 else base))
        pos = f.offset + f.size
    if struct.size > pos:
        members.append((f"_pad_{pos}", ctypes.c_uint8 * (struct.size - pos)))
    cls = type(struct.name, (ctypes.Structure,), {"_pack_": 1, "_fields_": members})
    assert ctypes.sizeof(cls) == struct.size, struct.name
    return cls
