"""The pure half of the header probe: prepare, ask, read back, match.

A kernel's uapi `kvm.h` is prepared the way `scripts/headers_install.sh` prepares it
(the `<linux/compiler.h>` include and `__user` and friends go), then compiled to
assembly only, as the kernel's own `asm-offsets` does: each value is an immediate
operand of an `.ascii` directive, which gcc writes into the `.s` file. Nothing built
from the header ever runs. `harness.host.header` runs gcc; everything else is here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from harness.abi.exits import MEMBER_PREFIX
from harness.abi.facts import TYPE_BY_SIZE, AbiFacts, Field, Ioctl, Struct
from harness.abi.ioc import IocEncoding
from harness.abi.linux import U64
from harness.abi.profile import catalogue, known_profiles, load_profile, revision_order

# A probe's answer: {"syms": {name: value}, "structs": {name: {"size": n, "fields": [[f, offset, size]]}}}
RawProbe = dict[str, object]

REQUIRED = ("KVM_CREATE_VM", "KVM_CHECK_EXTENSION")
# The probe includes the header by this name, from a folder the probe writes it to.
INCLUDE_NAME = "linux/kvm.h"
# headers_install runs `unifdef -D__EXPORTED_HEADERS__`: uapi/linux/types.h asks for it.
GCC_DEFINES = ("-D__EXPORTED_HEADERS__",)

# scripts/headers_install.sh's sed, line by line, in order (unifdef -U__KERNEL__ is
# what compiling without __KERNEL__ does anyway).
_HEADERS_INSTALL = (
    (rb"([\s(])(__user|__force|__iomem)\s", rb"\1"),
    (rb"__attribute_const__(\s|$)", rb"\1"),
    (rb"^#include <linux/compiler.h>", rb""),
    (rb"(^|[^a-zA-Z0-9])__packed([^a-zA-Z0-9_]|$)", rb"\1__attribute__((packed))\2"),
    (rb"(^|[\s(])(inline|asm|volatile)([\s(]|$)", rb"\1__\2__\3"),
    (rb"#(ifndef|define|endif\s*/[*])\s*_UAPI", rb"#\1 "),
    (rb"__ASSEMBLY__", rb"__ASSEMBLER__"),
)

_PRELUDE = f"""#include <stddef.h>
#include <{INCLUDE_NAME}>
#define KVMCONF_EMIT(what, value) \\
    __asm__ volatile("\\n.ascii \\"->kvmconf " what " %0\\"" : : "i" ((unsigned long long)(value)))
#define SYM(x) KVMCONF_EMIT("sym " #x, x);
#define SIZE(s) KVMCONF_EMIT("size " #s, sizeof(struct s));
#define FIELD(s, f) KVMCONF_EMIT("offset " #s " " #f, offsetof(struct s, f)); \\
    KVMCONF_EMIT("fieldsize " #s " " #f, sizeof(((struct s *)0)->f));
#define MSIZE(s, o, m) KVMCONF_EMIT("size " #s, sizeof(((struct o *)0)->m));
#define MFIELD(s, o, m, f) KVMCONF_EMIT("offset " #s " " #f, offsetof(struct o, m.f) - offsetof(struct o, m)); \\
    KVMCONF_EMIT("fieldsize " #s " " #f, sizeof(((struct o *)0)->m.f));
void kvmconf_probe(void) {{
"""
# gcc prints an immediate as `$123` (AT&T syntax) inside the string it was asked to emit
_EMITTED = re.compile(r'->kvmconf (sym|size|offset|fieldsize) ([A-Za-z_][\w .]*?) \$?(-?\d+)"')


def prepare(header: bytes) -> bytes:
    """A source tree's header as `make headers_install` would have written it."""
    lines = header.split(b"\n")
    for pattern, repl in _HEADERS_INSTALL:
        rx = re.compile(pattern)
        lines = [rx.sub(repl, line) for line in lines]
    return b"\n".join(lines)


def include_candidates(header: Path) -> list[Path]:
    """The folders a header's own includes come from, before the system's: the folder
    above its linux/, and in a kernel source tree (include/uapi) the x86 uapi folders."""
    root = header.parent.parent if header.parent.name == "linux" else header.parent
    if root.name == "uapi" and root.parent.name == "include":
        tree = root.parent.parent
        return [tree / "arch" / "x86" / "include" / "uapi", tree / "arch" / "x86" / "include" / "generated" / "uapi", root]
    return [root]


def program(body: Iterable[str]) -> str:
    """The probe's C: the header, then one emitting statement per value asked."""
    return _PRELUDE + "\n".join(body) + "\n}\n"


def symbol_lines(symbols: Iterable[str]) -> list[str]:
    return [f"#ifdef {s}\nSYM({s})\n#endif" for s in symbols]


def struct_lines(name: str, fields: Iterable[Field]) -> list[str]:
    """The size line, then one line per field; a `kvm_run_exit_*` layout is a member of
    kvm_run's anonymous exit union, measured there (offsets from the member's start)."""
    if name.startswith(MEMBER_PREFIX):
        member = name.removeprefix(MEMBER_PREFIX)
        return [f"MSIZE({name}, kvm_run, {member})", *(f"MFIELD({name}, kvm_run, {member}, {f.name})" for f in fields)]
    return [f"SIZE({name})", *(f"FIELD({name}, {f.name})" for f in fields)]


def parse_assembly(text: str) -> RawProbe:
    """The values gcc emitted into the probe's assembly."""
    syms: dict[str, int] = {}
    structs: dict[str, dict[str, object]] = {}
    offsets: dict[str, int] = {}
    for kind, what, value in _EMITTED.findall(text):
        number = int(value) & U64
        if kind == "sym":
            syms[what] = number
        elif kind == "size":
            structs.setdefault(what, {"fields": []})["size"] = number
        elif kind == "offset":
            offsets[what] = number
        else:
            sname, fname = what.split()
            fields = structs.setdefault(sname, {"fields": []})["fields"]
            assert isinstance(fields, list)
            fields.append([fname, offsets[what], number])
    return {"syms": syms, "structs": structs}


def model_cap_names() -> set[str]:
    """Caps of unmerged revisions that have no agreed number: asked of the header too."""
    return {c for p in known_profiles() for c in load_profile(p).model_caps}


def asked_symbols() -> list[str]:
    cat = catalogue()
    return sorted({*cat.ioctls, *cat.caps, *cat.constants, *model_cap_names()})


def facts_from_probe(raw: RawProbe, label: str, profile: str, encoding: IocEncoding) -> AbiFacts:
    """Facts with the header's numbers and layouts over the profile's semantics."""
    syms: dict[str, int] = dict(raw["syms"])  # type: ignore[call-overload]
    probed: dict[str, dict[str, object]] = dict(raw["structs"])  # type: ignore[call-overload]
    base = load_profile(profile)
    cat = catalogue()
    why = f"not defined in {label}"
    structs: dict[str, Struct] = {}
    for sname, info in probed.items():
        known = base.structs.get(sname) or cat.structs[sname]
        fields = []
        for fname, offset, size in info["fields"]:  # type: ignore[attr-defined]
            k = known.field(fname)
            fields.append(Field(fname, k.type, offset, size // k.elem_size, k.role) if size % k.elem_size == 0
                          else Field(fname, TYPE_BY_SIZE.get(size, "u8"), offset, 1 if size in TYPE_BY_SIZE else size, k.role))
        structs[sname] = Struct(sname, int(info["size"]), tuple(fields))  # type: ignore[call-overload]
    ioctls: dict[str, Ioctl] = {}
    for iname, known_io in cat.ioctls.items():
        if iname in syms:
            # the number is the header's; the direction and struct stay the spec's, so the
            # sizing checks compare the header's encoding against them
            ioctls[iname] = replace(base.ioctls.get(iname, known_io), number=syms[iname])
    caps = {c: syms[c] for c in {*cat.caps, *model_cap_names()} if c in syms}
    constants = {c: syms[c] for c in cat.constants if c in syms}
    absent = {s: f"{s} is {why}" for s in [*cat.ioctls, *cat.caps, *cat.constants, *cat.structs]
              if s not in ioctls and s not in caps and s not in constants and s not in structs}
    return AbiFacts(
        source=f"{label} (semantics: profile {profile})",
        profile=profile,
        encoding=encoding,
        structs=structs,
        ioctls=ioctls,
        caps=caps,
        constants=constants,
        cap_mirrors={k: v for k, v in base.cap_mirrors.items() if k in caps and v in caps},
        model_caps={},
        absent=absent,
    )


@dataclass(frozen=True)
class ProfileMatch:
    """The profile chosen for a header, the symbols on which they disagree, and the
    symbols the header lacks that every profile has (they tell no revision apart:
    a header folder without its asm/kvm.h lacks the VM types, say)."""

    profile: str
    differences: tuple[str, ...]
    lacking: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        if not self.differences:
            why = f"{self.profile} (the header matches its symbols and layouts"
        else:
            why = (f"{self.profile}, the closest (no profile matches the header; "
                   f"{_count(self.differences, 'difference')} from {self.profile}: {_some(self.differences)}")
        if self.lacking:
            why += f"; it lacks {_count(self.lacking, 'symbol')} every profile has: {_some(self.lacking, ', ', 3)}"
        return why + ")"


def _some(items: tuple[str, ...], sep: str = "; ", shown: int = 5) -> str:
    return sep.join(items[:shown]) + (f"{sep}..." if len(items) > shown else "")


def _count(items: tuple[str, ...], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _layout(s: Struct) -> tuple[int, tuple[tuple[str, int, int], ...]]:
    return s.size, tuple((f.name, f.offset, f.size) for f in s.fields)


def _raw_layout(info: Mapping[str, object]) -> tuple[int, tuple[tuple[str, int, int], ...]]:
    fields = info["fields"]
    assert isinstance(fields, list)
    return int(info["size"]), tuple((str(n), int(o), int(z)) for n, o, z in fields)  # type: ignore[call-overload]


def _values(profile: AbiFacts) -> dict[str, object]:
    """A profile's symbols and what the header must say of each: a number or a layout."""
    return {**{k: v.number for k, v in profile.ioctls.items()}, **profile.caps, **profile.constants,
            **{f"struct {k}": _layout(v) for k, v in profile.structs.items()}}


def _header_values(raw: RawProbe) -> dict[str, object]:
    syms: Mapping[str, int] = raw["syms"]  # type: ignore[assignment]
    probed: Mapping[str, Mapping[str, object]] = raw["structs"]  # type: ignore[assignment]
    return {**syms, **{f"struct {k}": _raw_layout(v) for k, v in probed.items()}}


def _show(value: object) -> str:
    return f"{value:#x}" if isinstance(value, int) else "another layout"


def compare(raw: RawProbe, profile: AbiFacts, common: Mapping[str, object]) -> ProfileMatch:
    """Where the header and a profile disagree: a value, a layout, a symbol one lacks.
    A symbol of `common` (the same in every profile) that the header lacks is only lacking."""
    header = _header_values(raw)
    ours = _values(profile)
    cat = catalogue(profile.encoding)
    asked = [*cat.ioctls, *cat.caps, *cat.constants, *(f"struct {k}" for k in cat.structs)]
    out: list[str] = []
    lacking: list[str] = []
    for sym in sorted(asked):
        mine, theirs = header.get(sym), ours.get(sym)
        if mine == theirs:
            continue
        if theirs is None:
            out.append(f"{sym} is in the header, not in the profile")
        elif mine is None:
            if sym in common:
                lacking.append(sym)
            else:
                out.append(f"{sym} is in the profile, not in the header")
        elif sym.startswith("struct "):
            out.append(f"{sym} has another layout in the header")
        else:
            out.append(f"{sym} is {_show(mine)} in the header, {_show(theirs)} in the profile")
    for sym in sorted(model_cap_names() - set(profile.model_caps) - set(profile.caps)):
        if sym in header:
            out.append(f"{sym} is in the header, not in the profile")
    return ProfileMatch(profile.profile, tuple(out), tuple(lacking))


def choose_profile(raw: RawProbe, encoding: IocEncoding | None = None) -> ProfileMatch:
    """The profile whose symbols and layouts the header matches; else the closest (the
    newest of those with fewest differences), with the differences."""
    profiles = [load_profile(name, encoding) for name in revision_order()]
    first, *rest = [_values(p) for p in profiles]
    common = {k: v for k, v in first.items() if all(other.get(k) == v for other in rest)}
    found = [compare(raw, p, common) for p in profiles]
    fewest = min(len(m.differences) for m in found)
    return [m for m in found if len(m.differences) == fewest][-1]
