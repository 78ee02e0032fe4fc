"""Module selection and load order, on synthetic module trees."""

from __future__ import annotations

import gzip
import lzma
import struct
from pathlib import Path

import pytest

from harness.qemu.modules import (
    ModuleTree,
    load_order,
    modinfo_depends,
    module_name,
    parse_modules_dep,
    read_module,
)


def fake_module(depends: str) -> bytes:
    """A minimal ELF64 LE object with a .modinfo section, as depmod would read it."""
    modinfo = b"license=GPL\0" + f"depends={depends}\0".encode() + b"intree=Y\0"
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    body_at = 64
    modinfo_at = body_at
    shstrtab_at = modinfo_at + len(modinfo)
    shoff = shstrtab_at + len(shstrtab)
    shoff += -shoff % 8
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)
    sections = [
        struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, modinfo_at, len(modinfo), 0, 0, 1, 0),
        struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, shstrtab_at, len(shstrtab), 0, 0, 1, 0),
    ]
    blob = bytes(header) + modinfo + shstrtab
    return blob + b"\0" * (shoff - len(blob)) + b"".join(sections)


@pytest.mark.parametrize(
    ("filename", "name"),
    [("kvm-amd.ko.xz", "kvm_amd"), ("kernel/fs/9p/9p.ko", "9p"), ("9pnet_virtio.ko.gz",
                                                                    "9pnet_virtio")],
)
def test_module_name(filename: str, name: str) -> None:
    assert module_name(filename) == name


def test_parse_modules_dep() -> None:
    text = (
        "kernel/arch/x86/kvm/kvm-amd.ko.xz: kernel/arch/x86/kvm/kvm.ko.xz "
        "kernel/virt/lib/irqbypass.ko.xz kernel/drivers/crypto/ccp/ccp.ko.xz\n"
        "kernel/virt/lib/irqbypass.ko.xz:\n"
        "\n"
    )
    table = parse_modules_dep(text)
    assert table["kvm_amd"] == ("kernel/arch/x86/kvm/kvm-amd.ko.xz", ("kvm", "irqbypass", "ccp"))
    assert table["irqbypass"] == ("kernel/virt/lib/irqbypass.ko.xz", ())


def test_load_order_puts_dependencies_first_once() -> None:
    deps = {"9p": ["9pnet", "netfs"], "9pnet": ["netfs"], "netfs": [], "9pnet_virtio": ["9pnet"],
            "kvm_amd": ["kvm", "ccp"], "kvm": ["irqbypass"], "ccp": [], "irqbypass": []}
    order = load_order(["9pnet_virtio", "9p", "kvm_amd"], deps.__getitem__)
    assert order == ["netfs", "9pnet", "9pnet_virtio", "9p", "irqbypass", "kvm", "ccp", "kvm_amd"]


def test_load_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        load_order(["a"], {"a": ["b"], "b": ["a"]}.__getitem__)


def test_modinfo_depends() -> None:
    assert modinfo_depends(fake_module("kvm,ccp")) == ("kvm", "ccp")
    assert modinfo_depends(fake_module("")) == ()
    with pytest.raises(ValueError, match="ELF64"):
        modinfo_depends(b"not an elf")


def test_read_module_decompresses(tmp_path: Path) -> None:
    elf = fake_module("")
    (tmp_path / "a.ko.xz").write_bytes(lzma.compress(elf))
    (tmp_path / "b.ko.gz").write_bytes(gzip.compress(elf))
    (tmp_path / "c.ko").write_bytes(elf)
    assert {read_module(tmp_path / n) for n in ("a.ko.xz", "b.ko.gz", "c.ko")} == {elf}


def make_tree(root: Path, modules: dict[str, str], builtin: list[str]) -> None:
    for path, depends in modules.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(lzma.compress(fake_module(depends)))
    (root / "modules.builtin").write_text("".join(f"{b}\n" for b in builtin))


TREE = {
    "kernel/fs/netfs/netfs.ko.xz": "",
    "kernel/net/9p/9pnet.ko.xz": "netfs",
    "kernel/net/9p/9pnet_virtio.ko.xz": "9pnet",
    "kernel/fs/9p/9p.ko.xz": "9pnet,netfs",
    "kernel/virt/lib/irqbypass.ko.xz": "",
    "kernel/drivers/crypto/ccp/ccp.ko.xz": "",
    "kernel/arch/x86/kvm/kvm.ko.xz": "irqbypass",
    "kernel/arch/x86/kvm/kvm-amd.ko.xz": "kvm,ccp",
    "kernel/arch/x86/kvm/kvm-intel.ko.xz": "kvm",
}


def test_tree_without_modules_dep_reads_modinfo(tmp_path: Path) -> None:
    make_tree(tmp_path, TREE, ["kernel/drivers/virtio/virtio_pci.ko"])
    chosen = ModuleTree(tmp_path).guest_modules()
    assert [m.name for m in chosen] == ["netfs", "9pnet", "9pnet_virtio", "9p", "irqbypass",
                                        "kvm", "ccp", "kvm_amd", "kvm_intel"]
    flags = {m.name: m.cpu_flag for m in chosen}
    assert flags["kvm_amd"] == "svm" and flags["kvm_intel"] == "vmx" and flags["kvm"] == ""
    assert chosen[-1].path == tmp_path / "kernel/arch/x86/kvm/kvm-intel.ko.xz"


def test_builtin_and_absent_modules_are_left_out(tmp_path: Path) -> None:
    tree = {p: d for p, d in TREE.items() if "9p" not in p and "netfs" not in p}
    make_tree(tmp_path, tree, ["kernel/fs/9p/9p.ko", "kernel/net/9p/9pnet_virtio.ko"])
    names = [m.name for m in ModuleTree(tmp_path).guest_modules()]
    assert names == ["irqbypass", "kvm", "ccp", "kvm_amd", "kvm_intel"]


def test_modules_dep_wins_over_modinfo(tmp_path: Path) -> None:
    make_tree(tmp_path, TREE, [])
    (tmp_path / "modules.dep").write_text(
        "kernel/arch/x86/kvm/kvm-amd.ko.xz: kernel/arch/x86/kvm/kvm.ko.xz\n"
        "kernel/arch/x86/kvm/kvm.ko.xz:\n"
    )
    names = [m.name for m in ModuleTree(tmp_path).guest_modules([("kvm_amd", "svm")])]
    assert names == ["kvm", "kvm_amd"]
