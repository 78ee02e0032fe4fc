"""Recognising a bootable image and its module tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.qemu.errors import KernelNotFoundError, NotBootableKernelError
from harness.qemu.kernel import bzimage_release, find_kernel, is_bzimage


def fake_bzimage(version: str = "7.3.4+deb13-amd64 (builder@host) #1 SMP") -> bytes:
    """A setup header with the HdrS magic and a kernel_version string, as bzImages have."""
    image = bytearray(0x5000)
    image[0x202:0x206] = b"HdrS"
    pointer = 0x4300
    image[0x20E:0x210] = pointer.to_bytes(2, "little")
    text = version.encode() + b"\0"
    image[0x200 + pointer : 0x200 + pointer + len(text)] = text
    return bytes(image)


def test_header_parsing() -> None:
    assert is_bzimage(fake_bzimage())
    assert not is_bzimage(b"\x7fELF" + b"\0" * 0x300)
    assert bzimage_release(fake_bzimage()) == "7.3.4+deb13-amd64"
    assert bzimage_release(b"\0" * 0x300) == ""


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(KernelNotFoundError) as caught:
        find_kernel(tmp_path / "nope")
    assert caught.value.exit_code == 20 and "does not exist" in str(caught.value)


def test_file_without_boot_header_is_not_bootable(tmp_path: Path) -> None:
    (tmp_path / "vmlinux").write_bytes(b"\x7fELF" + b"\0" * 0x1000)
    with pytest.raises(NotBootableKernelError) as caught:
        find_kernel(tmp_path / "vmlinux")
    assert caught.value.exit_code == 21 and "not a bootable kernel" in str(caught.value)


def test_folder_without_image_is_not_bootable(tmp_path: Path) -> None:
    with pytest.raises(NotBootableKernelError, match="not a bootable kernel"):
        find_kernel(tmp_path)


def test_debian_layout_finds_release_and_modules(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(fake_bzimage())
    modules = tmp_path / "modules/lib/modules/7.3.4+deb13-amd64"
    modules.mkdir(parents=True)
    found = find_kernel(tmp_path)
    assert found.image == (tmp_path / "vmlinuz").resolve()
    assert found.release == "7.3.4+deb13-amd64"
    assert found.modules == modules


def test_bare_bzimage_has_no_modules(tmp_path: Path) -> None:
    (tmp_path / "bzImage").write_bytes(fake_bzimage("7.3.4 (me@box) #1"))
    for path in (tmp_path, tmp_path / "bzImage"):
        found = find_kernel(path)
        assert found.release == "7.3.4" and found.modules is None


def test_build_tree_image_is_found(tmp_path: Path) -> None:
    boot = tmp_path / "arch/x86/boot"
    boot.mkdir(parents=True)
    (boot / "bzImage").write_bytes(fake_bzimage())
    assert find_kernel(tmp_path).image == (boot / "bzImage").resolve()
    assert find_kernel(tmp_path).tree == tmp_path.resolve()


def test_header_beside_the_image(tmp_path: Path) -> None:
    """The uapi header of each layout: debian-kernel's and build-kernel's include/linux,
    a built tree's usr/include (`make headers`) before its source include/uapi."""
    (tmp_path / "bzImage").write_bytes(fake_bzimage())
    assert find_kernel(tmp_path).header is None and find_kernel(tmp_path).tree is None
    tree = tmp_path / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    (tree / "arch/x86/boot/bzImage").write_bytes(fake_bzimage())
    source = tree / "include/uapi/linux/kvm.h"
    source.parent.mkdir(parents=True)
    source.write_text("/* source */\n")
    assert find_kernel(tree).header == source.resolve()
    made = tree / "usr/include/linux/kvm.h"
    made.parent.mkdir(parents=True)
    made.write_text("/* make headers */\n")
    assert find_kernel(tree).header == made.resolve()
    installed = tmp_path / "include/linux/kvm.h"
    installed.parent.mkdir(parents=True)
    installed.write_text("/* headers_install */\n")
    assert find_kernel(tmp_path).header == installed.resolve()


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    """Opening a FIFO to read its boot header would wait for a writer forever."""
    fifo = tmp_path / "bzImage"
    os.mkfifo(fifo)
    with pytest.raises(NotBootableKernelError, match="not a regular file"):
        find_kernel(fifo)
    with pytest.raises(NotBootableKernelError, match="no vmlinuz"):
        find_kernel(tmp_path)  # a folder whose only image is a FIFO has none
