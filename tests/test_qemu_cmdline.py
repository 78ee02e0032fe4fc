"""The QEMU argv as data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.qemu.cmdline import KERNEL_ARGS, Port, QemuParams, Share, qemu_argv

BASE = QemuParams(
    kernel=Path("/k/vmlinuz"), initrd=Path("/t/initrd"), accel="tcg",
    shares=(Share("kvmroot", Path("/"), True), Share("kvmout", Path("/o,ut"), False)),
)


def params(**changes: Any) -> QemuParams:
    return dataclasses.replace(BASE, **changes)


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def test_tcg_uses_cpu_max_and_kvm_uses_cpu_host() -> None:
    """TCG in one thread: multi-threaded TCG ran stale kernel text after patching (an
    int3 Oops in __schedule during the suite)."""
    assert option(qemu_argv(params()), "-cpu") == ["max"]
    assert option(qemu_argv(params()), "-accel") == ["tcg,thread=single"]
    kvm = qemu_argv(params(accel="kvm"))
    assert option(kvm, "-cpu") == ["host"] and option(kvm, "-accel") == ["kvm"]


def test_size_kernel_and_console() -> None:
    argv = qemu_argv(params(memory_mib=1024, cpus=4, binary="/usr/bin/qemu"))
    assert argv[0] == "/usr/bin/qemu"
    assert option(argv, "-m") == ["1024"] and option(argv, "-smp") == ["4"]
    assert option(argv, "-kernel") == ["/k/vmlinuz"] and option(argv, "-initrd") == ["/t/initrd"]
    assert option(argv, "-append") == [KERNEL_ARGS]
    assert "-no-reboot" in argv and "-nodefaults" in argv
    assert option(argv, "-serial") == ["chardev:console"]


def test_shares_are_9p_devices_readonly_where_asked_with_commas_escaped() -> None:
    fsdevs = option(qemu_argv(params()), "-fsdev")
    devices = option(qemu_argv(params()), "-device")
    assert fsdevs[0].startswith("local,id=fs0,path=/,") and fsdevs[0].endswith(",readonly=on")
    assert "path=/o,,ut," in fsdevs[1] and "readonly" not in fsdevs[1]
    assert devices == ["virtio-9p-pci,fsdev=fs0,mount_tag=kvmroot",
                       "virtio-9p-pci,fsdev=fs1,mount_tag=kvmout"]


def test_kernel_args_keep_noise_off_and_end_qemu_on_panic() -> None:
    args = KERNEL_ARGS.split()
    assert "console=ttyS0" in args and "quiet" in args and "printk.time=1" in args
    assert "panic=1" in args and "rdinit=/init" in args


def test_ports_are_virtserialports_on_listening_sockets() -> None:
    """QEMU listens without waiting for the host (server=on,wait=off); the guest finds the port by name."""
    argv = qemu_argv(params(ports=(Port("kvmconf.executor", Path("/t/ex,ec.sock")),)))
    assert option(argv, "-chardev")[1] == "socket,id=port0,path=/t/ex,,ec.sock,server=on,wait=off"
    assert option(argv, "-device")[-2:] == ["virtio-serial-pci,id=vser",
                                            "virtserialport,bus=vser.0,chardev=port0,name=kvmconf.executor"]
    assert "virtio-serial-pci,id=vser" not in option(qemu_argv(params()), "-device")
