"""Find the bootable image, its modules and its uapi header behind a `--kernel` path.

Three layouts are accepted: a folder made by `tools/debian-kernel` (`vmlinuz`,
`modules/lib/modules/<release>/`, `include/linux/kvm.h`), a bare `bzImage` (or a
folder holding one and its header, as `build-kernel` makes) with everything the guest
needs built in, and a built kernel tree: `arch/x86/boot/bzImage`, and its header from
`usr/include/linux/kvm.h` when `make headers` made one, else the source tree's
`include/uapi/linux/kvm.h` (which the header probe prepares as headers_install does).
The image is recognised by the x86 boot protocol's `HdrS` magic, so a vmlinux, a
module or a random file is rejected before QEMU is started; a FIFO or a device is
rejected before it is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.errors import KernelUnreadable
from harness.qemu.errors import KernelNotFoundError, NotBootableKernelError

_HDRS_OFFSET = 0x202
_VERSION_PTR_OFFSET = 0x20E
_SETUP_BASE = 0x200
_SETUP_MAX = 0x200 * 256  # the real-mode setup, where kernel_version points, fits in this
_IMAGE_NAMES = ("vmlinuz", "bzImage", "arch/x86/boot/bzImage")
_HEADER_NAMES = ("include/linux/kvm.h", "usr/include/linux/kvm.h", "include/uapi/linux/kvm.h")


@dataclass(frozen=True)
class KernelImage:
    """A bootable image, the release its header names, its module tree and uapi header
    if its folder has them, and the folder when it is a kernel tree (arch/x86/boot/bzImage)."""

    image: Path
    release: str
    modules: Path | None
    header: Path | None = None
    tree: Path | None = None


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


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def find_kernel(path: Path) -> KernelImage:
    """The image to boot for `path` (a file or a folder), or a named error."""
    if not path.exists():
        raise KernelNotFoundError(f"kernel path {path} does not exist")
    folder = path if path.is_dir() else None
    image = _first(path, _IMAGE_NAMES) if folder is not None else path
    if image is None:
        raise NotBootableKernelError(f"{path} is not a bootable kernel: no {', '.join(_IMAGE_NAMES)} in it")
    if not image.is_file():  # a FIFO would block the read below forever
        raise NotBootableKernelError(f"{image} is not a bootable kernel: not a regular file")
    try:
        with image.open("rb") as f:
            setup = f.read(_SETUP_MAX)
    except OSError as e:
        raise KernelUnreadable(f"{image}: cannot be read ({e.strerror}); check its permissions") from None
    if not is_bzimage(setup):
        raise NotBootableKernelError(f"{image} is not a bootable kernel (no x86 bzImage header)")
    release = bzimage_release(setup)
    header = _first(folder, _HEADER_NAMES) if folder is not None else None
    tree = folder.resolve() if folder is not None and image == folder / _IMAGE_NAMES[-1] else None
    return KernelImage(image.resolve(), release, _modules_for(image.parent, release),
                       header.resolve() if header is not None else None, tree)
