"""The QEMU command line, built from a frozen set of parameters so it can be tested as data.

Choices, each for a reason:
- `-nodefaults -display none`, serial on stdio: the console is the only device the
  host reads, and it is read as a pipe, line by line.
- `-no-reboot` with the guest's `panic=1`: a panic or a triple fault ends QEMU instead
  of rebooting into the same failure until the timeout. (`panic=-1`, reboot at once,
  was seen to hang the TCG guest after the panic message; one second costs nothing.)
- virtio-9p shares: the host root read-only (`multidevs=remap`, since / spans several
  host filesystems and their inode numbers would collide) and the run's output folder
  writable. `security_model=none` makes files the guest writes belong to whoever runs
  QEMU, and needs no privileges.
- virtio-serial ports, each a UNIX socket QEMU listens on (`server=on,wait=off`: QEMU
  starts without a client, and the host connects as soon as the socket exists): the
  executor's channel. A port is a stream with flow control, unlike the console, and
  is built into distribution kernels (CONFIG_VIRTIO_CONSOLE).
- `quiet loglevel=5 printk.time=1`: routine kernel messages stay off the console, while
  warnings (a KVM `WARN_ON` a test provoked), oopses and panics still show, each with a
  `[ seconds]` stamp that tells them apart from the command's own output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.qemu.accel import Accel

KERNEL_ARGS = "console=ttyS0 quiet loglevel=5 printk.time=1 panic=1 rdinit=/init"


@dataclass(frozen=True)
class Share:
    """A host folder exported to the guest over virtio-9p under `tag`."""

    tag: str
    path: Path
    readonly: bool


@dataclass(frozen=True)
class Port:
    """A virtio-serial port named `name` in the guest, a UNIX socket at `socket` on the host."""

    name: str
    socket: Path


@dataclass(frozen=True)
class QemuParams:
    """Everything that varies between QEMU runs."""

    kernel: Path
    initrd: Path
    accel: Accel
    shares: tuple[Share, ...]
    ports: tuple[Port, ...] = ()
    memory_mib: int = 2048
    cpus: int = 2
    append: str = KERNEL_ARGS
    binary: str = "qemu-system-x86_64"


def qemu_argv(params: QemuParams) -> list[str]:
    """The argv that boots `params.kernel` with the console on QEMU's stdout."""
    cpu = "host" if params.accel == "kvm" else "max"
    argv = [
        params.binary,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-machine", "q35",
        # TCG's multi-threaded mode can run stale code across vCPUs after the kernel
        # patches its text (an int3 Oops in __schedule was seen here): one thread for all
        "-accel", "tcg,thread=single" if params.accel == "tcg" else params.accel,
        "-cpu", cpu,
        "-smp", str(params.cpus),
        "-m", str(params.memory_mib),
        "-kernel", str(params.kernel),
        "-initrd", str(params.initrd),
        "-append", params.append,
        "-chardev", "stdio,id=console,signal=off",
        "-serial", "chardev:console",
    ]
    for index, share in enumerate(params.shares):
        path = str(share.path).replace(",", ",,")  # QEMU's option syntax doubles commas
        fsdev = f"local,id=fs{index},path={path},security_model=none,multidevs=remap"
        if share.readonly:
            fsdev += ",readonly=on"
        argv += ["-fsdev", fsdev,
                 "-device", f"virtio-9p-pci,fsdev=fs{index},mount_tag={share.tag}"]
    if params.ports:
        argv += ["-device", "virtio-serial-pci,id=vser"]
    for index, port in enumerate(params.ports):
        path = str(port.socket).replace(",", ",,")
        argv += ["-chardev", f"socket,id=port{index},path={path},server=on,wait=off",
                 "-device", f"virtserialport,bus=vser.0,chardev=port{index},name={port.name}"]
    return argv
