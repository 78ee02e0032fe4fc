"""Find the bootable image (and its modules, if any) behind a `--kernel` path.

Two layouts are accepted: a folder made by `shared/kernels/debian-kernel` (`vmlinuz`,
`modules/lib/modules/<release>/`) and a bare `bzImage` (or a folder holding one, as
`build-kernel` makes, or a kernel build tree) with everything the guest needs built
in. The image is recognised by the x86 boot protocol's `HdrS` magic, so a vmlinux,
a module or a random file is rejected before QEMU is started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.qemu.errors import KernelNotFoundError, NotBootableKernelError

_HDRS_OFFSET = 0x202
_VERSION_PTR_OFFSET = 0x20E
_SETUP_BASE = 0x200
_SETUP_MAX = 0x200 * 256  # the real-mode setup, where kernel_version points, fits in this
_IMAGE_NAMES = ("vmlinuz", "bzImage", "arch/x86/boot/bzImage")


@dataclass(frozen=True)
class KernelImage:
    """A bootable image, the release its header names, and its module tree if it has one."""

    image: Path
    release: str
    modules: Path | None


def is_bzimage(header: bytes) -> bool:
    """Whether the first bytes of a file carry the x86 boot protocol magic."""
    return header[_HDRS_OFFSET : _HDRS_OFFSET + 4] == b"HdrS"


def bzimage_release(header: bytes) -> str:
    """The release (`uname -r`) in a bzImage's kernel_version string, or "" if absent."""
    if len(header) < _VERSION_PTR_OFFSET + 2:
        return ""
    pointer = int.from_bytes(header[_VERSION_PTR_OFFSET : _VERSION_PTR_OFFSET + 2], "little")
    start = _SETUP_BASE + pointer
    if pointer == 0 or start >= len(header):
        return ""
    text = header[start : start + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return text.split(" ", 1)[0]


def _modules_for(folder: Path, release: str) -> Path | None:
    base = folder / "modules" / "lib" / "modules"
    if not base.is_dir():
        return None
    if release and (base / release).is_dir():
        return base / release
    trees = [p for p in base.iterdir() if p.is_dir()]
    return trees[0] if len(trees) == 1 else None


def find_kernel(path: Path) -> KernelImage:
    """The image to boot for `path` (a file or a folder), or a named error."""
    if not path.exists():
        raise KernelNotFoundError(f"kernel path {path} does not exist")
    image = path
    if path.is_dir():
        found = [path / name for name in _IMAGE_NAMES if (path / name).is_file()]
        if not found:
            raise NotBootableKernelError(
                f"{path} is not a bootable kernel: no {', '.join(_IMAGE_NAMES)} in it"
            )
        image = found[0]
    with image.open("rb") as f:
        header = f.read(_SETUP_MAX)
    if not is_bzimage(header):
        raise NotBootableKernelError(f"{image} is not a bootable kernel (no x86 bzImage header)")
    release = bzimage_release(header)
    return KernelImage(image.resolve(), release, _modules_for(image.parent, release))
