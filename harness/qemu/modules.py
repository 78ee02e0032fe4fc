"""Pick the kernel modules the guest needs and the order to load them in.

A distribution kernel builds KVM and 9p as modules, so the initramfs must carry them.
The guest init has no modprobe: it loads plain files in the order given, so the order
(dependencies first) is worked out here. Dependencies come from `modules.dep` when the
tree has one (a depmod'ed tree); Debian's package as unpacked by `debian-kernel` has
none, so otherwise they are read from each module's own `.modinfo` `depends=` field,
which is what depmod itself reads.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# What the runner asks for: the 9p client for the shared root, then KVM. A vendor module
# names the CPU flag it needs; the guest init skips it when /proc/cpuinfo lacks the flag.
WANTED: tuple[tuple[str, str], ...] = (
    ("9pnet_virtio", ""),
    ("9p", ""),
    ("kvm_amd", "svm"),
    ("kvm_intel", "vmx"),
)

KVM_MODULES = WANTED[2:]  # the executor's guest has no 9p root

_SUFFIXES = (".ko.xz", ".ko.gz", ".ko")


@dataclass(frozen=True)
class GuestModule:
    """A module to put in the initramfs; `cpu_flag` gates loading it ("" = always)."""

    name: str
    path: Path
    cpu_flag: str


def module_name(filename: str) -> str:
    """The kernel's name for a module file: `kvm-amd.ko.xz` -> `kvm_amd`."""
    base = filename.rsplit("/", 1)[-1]
    stem = base[: base.index(".ko")] if ".ko" in base else base
    return stem.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """`modules.dep` as {name: (relative path, names it depends on)}."""
    table: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, deps = line.partition(":")
        table[module_name(path.strip())] = (path.strip(), tuple(module_name(d) for d in deps.split()))
    return table


def modinfo_depends(elf: bytes) -> tuple[str, ...]:
    """The `depends=` names in a module's `.modinfo` section (ELF64 little-endian)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not an ELF64 little-endian module")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    names_at = sections[shstrndx][4]
    for name_off, _type, _flags, _addr, offset, size in sections:
        start = names_at + name_off
        if elf[start : elf.index(b"\0", start)] == b".modinfo":
            for field in elf[offset : offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    return tuple(d for d in field[8:].decode().split(",") if d)
            return ()
    raise ValueError("module has no .modinfo section")


def load_order(wanted: Iterable[str], depends: Callable[[str], Sequence[str]]) -> list[str]:
    """`wanted` and everything they need, each after all of its dependencies."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"module dependency cycle through {name}")
        visiting.add(name)
        for dep in depends(name):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def read_module(path: Path) -> bytes:
    """A module file's ELF bytes, decompressed so any kernel can load it with finit_module."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


class ModuleTree:
    """One `lib/modules/<release>` folder: where each module is and what it depends on."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Path] = {}
        for path in sorted(root.rglob("*.ko*")):
            if path.name.endswith(_SUFFIXES):
                self.files.setdefault(module_name(path.name), path)
        builtin = root / "modules.builtin"
        self.builtin = (
            {module_name(line) for line in builtin.read_text().split()} if builtin.exists() else set()
        )
        dep_file = root / "modules.dep"
        self._deps: dict[str, tuple[str, ...]] = (
            {name: deps for name, (_, deps) in parse_modules_dep(dep_file.read_text()).items()}
            if dep_file.exists()
            else {}
        )

    def depends(self, name: str) -> tuple[str, ...]:
        """Direct (or, from modules.dep, all) modules `name` needs, read once."""
        if name not in self._deps:
            self._deps[name] = modinfo_depends(read_module(self.files[name]))
        return self._deps[name]

    def guest_modules(self, wanted: Sequence[tuple[str, str]] = WANTED) -> list[GuestModule]:
        """Modules to load for `wanted`, in load order; built-in or absent ones are left out.

        An absent module is not an error here: the guest then reports what it lacks
        (no 9p root, no /dev/kvm) in its own words, which names the real problem.
        """
        flags: Mapping[str, str] = dict(wanted)
        present = [name for name, _ in wanted if name in self.files and name not in self.builtin]
        names = load_order(present, lambda n: [d for d in self.depends(n) if d not in self.builtin])
        return [GuestModule(n, self.files[n], flags.get(n, "")) for n in names]
