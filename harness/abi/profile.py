"""Profiles: one TOML data file per uAPI revision, under harness/abi/profiles/.

A profile may inherit another and add or replace symbols; struct offsets follow the C
layout rules of the uapi headers (natural alignment), so a profile lists only types.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from harness.abi.facts import ROLES, SIZES, AbiFacts, Field, Ioctl, Struct
from harness.abi.fdkind import FdKind
from harness.abi.ioc import Dir, IocEncoding, host_encoding
from harness.errors import ProfileUnknown

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "released"
KVMIO = 0xAE


def clear_caches() -> None:
    """Forget the profiles read so far (for tests that point PROFILE_DIR elsewhere)."""
    for cached in (_raw, _load_profile, _catalogue):
        cached.cache_clear()


def revision_order() -> list[str]:
    """Profiles oldest first: by how many revisions each inherits from (v10 after v7)."""
    def depth(name: str) -> int:
        parent = _raw(name).get("inherits")
        return 0 if parent is None else 1 + depth(str(parent))

    return sorted(known_profiles(), key=lambda n: (depth(n), n))


def known_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


@cache
def _raw(name: str) -> dict[str, Any]:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProfileUnknown(f"unknown profile {name!r}; known profiles: {', '.join(known_profiles())}")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    parent = data.get("inherits")
    if parent is None:
        return data
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _raw(parent).items()}
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    for symbol in data.get("removes", []):
        for table in ("ioctls", "caps", "constants", "structs", "model_caps", "cap_mirrors"):
            merged.get(table, {}).pop(symbol, None)
    return merged


def c_layout(name: str, spec: list[Mapping[str, Any]]) -> Struct:
    """Offsets and size by the C rules: each member at its natural alignment, the
    struct padded to its largest member's alignment."""
    fields: list[Field] = []
    pos = 0
    align_max = 1
    for f in spec:
        probe = Field(f["name"], f["type"], 0, int(f.get("count", 1)), f.get("role", "in"))
        align = probe.elem_size
        align_max = max(align_max, align)
        pos = (pos + align - 1) // align * align
        fields.append(Field(probe.name, probe.type, pos, probe.count, probe.role))
        pos += probe.size
    size = (pos + align_max - 1) // align_max * align_max
    return Struct(name, size, tuple(fields))


def _per_fd(value: str | Mapping[str, str] | None, fds: tuple[FdKind, ...]) -> dict[FdKind, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        return dict.fromkeys(fds, value)
    return {FdKind.parse(k): v for k, v in value.items()}


def build_ioctl(name: str, spec: Mapping[str, Any], structs: Mapping[str, Struct], enc: IocEncoding) -> Ioctl:
    direction = Dir.from_macro(spec["dir"])
    struct = spec.get("struct")
    try:
        fds = tuple(FdKind.parse(k) for k in spec.get("fds", ["vm"]))
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    size = structs[struct].size if struct else 0
    return Ioctl(
        name=name,
        direction=direction,
        nr=int(spec["nr"]),
        struct=struct,
        number=enc.ioc(direction, KVMIO, int(spec["nr"]), size),
        fds=fds,
        caps=_per_fd(spec.get("cap"), fds),
        attributes_caps=_per_fd(spec.get("attributes_cap"), fds),
        flags_cap=spec.get("flags_cap"),
    )


def load_profile(name: str = DEFAULT_PROFILE, encoding: IocEncoding | None = None) -> AbiFacts:
    """The facts of profile `name`, encoded for `encoding` (default: this machine's)."""
    return _load_profile(name, encoding or host_encoding())


@cache
def _load_profile(name: str, enc: IocEncoding) -> AbiFacts:
    """Profiles are immutable data: built once per process (cases ask for them often)."""
    raw = _raw(name)
    structs = {sname: c_layout(sname, s["fields"]) for sname, s in raw.get("structs", {}).items()}
    for s in structs.values():
        for f in s.fields:
            if f.type not in SIZES:
                raise ValueError(f"profile {name}: {s.name}.{f.name} has unknown type {f.type}")
            if f.role not in ROLES:
                raise ValueError(f"profile {name}: {s.name}.{f.name} has unknown role {f.role}; roles: {', '.join(ROLES)}")
    ioctls = {iname: build_ioctl(iname, spec, structs, enc) for iname, spec in raw.get("ioctls", {}).items()}
    return AbiFacts(
        source=f"profile {name}",
        profile=name,
        encoding=enc,
        structs=structs,
        ioctls=ioctls,
        caps=dict(raw.get("caps", {})),
        constants=dict(raw.get("constants", {})),
        cap_mirrors=dict(raw.get("cap_mirrors", {})),
        model_caps=dict(raw.get("model_caps", {})),
    )


def profile_summary(name: str) -> str:
    return str(_raw(name).get("summary", name))


def catalogue(encoding: IocEncoding | None = None) -> AbiFacts:
    """Every symbol any profile defines (see `_catalogue`)."""
    return _catalogue(encoding or host_encoding())


@cache
def _catalogue(encoding: IocEncoding) -> AbiFacts:
    """Every symbol any profile defines, later revisions last: the layouts from which
    cases are generated even when the active revision lacks a surface, so that runs of
    two revisions have the same case ids and compare cleanly."""
    facts = [load_profile(n, encoding) for n in revision_order()]
    structs: dict[str, Struct] = {}
    ioctls: dict[str, Ioctl] = {}
    for f in reversed(facts):
        for k, s in f.structs.items():
            structs.setdefault(k, s)
        for k, i in f.ioctls.items():
            ioctls.setdefault(k, i)
    for k, i in ioctls.items():
        # an ioctl keeps every fd kind any revision gives it (v5 drops the VM fd that
        # rfc-v4 had), so its cases exist, and skip, in every revision
        revs = [f.ioctls[k] for f in facts if k in f.ioctls]
        fds = tuple(fd for fd in FdKind if any(fd in r.fds for r in revs))
        caps = {fd: c for r in revs for fd, c in r.caps.items()}
        attrs = {fd: c for r in revs for fd, c in r.attributes_caps.items()}
        ioctls[k] = replace(i, fds=fds, caps=caps, attributes_caps=attrs)
    base = facts[0]
    return AbiFacts(
        source="catalogue of all profiles",
        profile="catalogue",
        encoding=base.encoding,
        structs=structs,
        ioctls=ioctls,
        caps={k: v for f in facts for k, v in f.caps.items()},
        constants={k: v for f in facts for k, v in f.constants.items()},
    )
