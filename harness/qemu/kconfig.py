"""The minimal kernel config `tools/build-kernel` builds: what it asks Kconfig for on top
of `make tinyconfig`, each option with why, and the check that Kconfig granted all of it.

The kernel only has to boot an initramfs under QEMU and run the executor
(harness/remote/executor.c) on a virtio-serial port, with KVM built in; tinyconfig
leaves out everything else, so the build takes minutes, not the half hour of a
distribution-like config. The check matters because `make olddefconfig` silently drops
an option whose dependencies are unmet (PROC_SYSCTL, say, which 7.3 renamed SYSCTL):
the kernel would boot and every vm1 case would skip for a missing KVM_SW_PROTECTED_VM.

Stdlib only, run as a script by the tool: `kconfig.py base | fragment | key | check CONFIG`.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass

BASE = "tinyconfig"  # the make target the fragment is added to


@dataclass(frozen=True)
class Option:
    """One Kconfig symbol (without CONFIG_), the value wanted ("y", "n" or a quoted string), and why."""

    name: str
    value: str
    why: str


MINIMAL: tuple[Option, ...] = (
    Option("64BIT", "y", "an x86_64 kernel"),
    Option("LOCALVERSION", '"-kvmconf-min"', "`uname -r` tells this build from Debian's own 7.3 kernel in reports"),
    Option("SMP", "y", "QEMU gives the guest 2 CPUs, as for Debian's kernel"),
    Option("CC_OPTIMIZE_FOR_PERFORMANCE", "y", "tinyconfig optimises for size; TCG runs every instruction slowly"),
    Option("KERNEL_GZIP", "y", "tinyconfig's xz image is slower to inflate under TCG"),
    # what the init and the executor call
    Option("BLK_DEV_INITRD", "y", "the init, its script and the executor come in the initramfs"),
    Option("BINFMT_ELF", "y", "the init and the executor are static ELF programs"),
    Option("MULTIUSER", "y", "uids, gids and fchmod as the suite's file cases use them"),
    Option("FUTEX", "y", "static glibc's locks"),
    Option("POSIX_TIMERS", "y", "the init's nanosleep while it waits for /dev/kvm"),
    Option("EVENTFD", "y", "the executor's eventfd for KVM_IOEVENTFD and KVM_IRQFD"),
    Option("SHMEM", "y", "memfd_create and shared anonymous mappings as guest memory"),
    Option("MEMFD_CREATE", "y", "memfd-backed memslots"),
    Option("ADVISE_SYSCALLS", "y", "madvise and fadvise on guest memory"),
    Option("TRANSPARENT_HUGEPAGE", "y", "huge pages behind memslots, as Debian's kernel has them"),
    Option("PROC_FS", "y", "/proc/self/fd and /proc/self/maps, which the executor lists"),
    Option("SYSCTL", "y", "/proc/sys/kernel/tainted, read after every batch"),
    Option("SYSFS", "y", "/sys/class/virtio-ports, where the executor finds its port by name"),
    Option("DEVTMPFS", "y", "/dev/kvm, /dev/kmsg and the port's node without a udev"),
    Option("PRINTK", "y", "kernel messages on /dev/kmsg and the console (a WARN a case provoked)"),
    Option("PRINTK_TIME", "y", "the console's `[ seconds]` stamps that tell kernel lines from the init's"),
    Option("BUG", "y", "WARN_ON and BUG print and taint instead of passing unseen"),
    # the devices of harness/qemu/cmdline.py
    Option("TTY", "y", "the console and the virtio-serial port are ttys"),
    Option("SERIAL_8250", "y", "console=ttyS0"),
    Option("SERIAL_8250_CONSOLE", "y", "console=ttyS0"),
    Option("ACPI", "y", "q35's interrupt routing and power-off"),
    Option("PCI", "y", "virtio-serial-pci"),
    Option("PCI_MSI", "y", "virtio-pci's interrupts"),
    Option("VIRTIO_MENU", "y", "virtio-serial-pci"),
    Option("VIRTIO_PCI", "y", "virtio-serial-pci"),
    Option("VIRTIO_CONSOLE", "y", "the executor's virtio-serial port"),
    # KVM as the suite tests it, built in (no modules to load)
    Option("CPU_SUP_AMD", "y", "kvm_amd's dependency: -cpu max under TCG is an AMD CPU with SVM"),
    Option("CPU_SUP_INTEL", "y", "kvm_intel's dependency, for -accel kvm on an Intel host"),
    Option("HIGH_RES_TIMERS", "y", "KVM_X86's dependency"),
    Option("VIRTUALIZATION", "y", "the KVM menu"),
    Option("KVM", "y", "/dev/kvm"),
    Option("KVM_AMD", "y", "nested SVM under TCG"),
    Option("KVM_INTEL", "y", "nested VMX under -accel kvm on Intel"),
    Option("EXPERT", "y", "KVM_SW_PROTECTED_VM's dependency"),
    Option("KVM_SW_PROTECTED_VM", "y", "VM type 1, whose memory attributes include PRIVATE: the point of this kernel"),
    Option("KVM_IOAPIC", "y", "as Debian's kernel has it: KVM_CREATE_IRQCHIP and the irqfd cases"),
    Option("KVM_SMM", "y", "as Debian's kernel has it: the caps it announces"),
    Option("KVM_HYPERV", "y", "as Debian's kernel has it: the caps it announces"),
    Option("KVM_XEN", "y", "as Debian's kernel has it: the caps it announces"),
)

_SET = re.compile(r"^CONFIG_(\w+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_(\w+) is not set$")


def fragment(options: tuple[Option, ...] = MINIMAL) -> str:
    """The options as .config lines, which Kconfig takes over what the base set."""
    return "".join(f"# CONFIG_{o.name} is not set\n" if o.value == "n" else f"CONFIG_{o.name}={o.value}\n"
                   for o in options)


def parse_config(text: str) -> dict[str, str]:
    """A .config as {symbol: value}, "n" for `# CONFIG_X is not set`; the last line for a symbol wins, as in Kconfig."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if m := _SET.match(line):
            values[m[1]] = m[2]
        elif m := _UNSET.match(line):
            values[m[1]] = "n"
    return values


def unmet(config_text: str, options: tuple[Option, ...] = MINIMAL) -> list[str]:
    """Each option the resolved .config does not have as wanted, with what it has instead."""
    have = parse_config(config_text)
    return [f"CONFIG_{o.name}: wanted {o.value}, got {have.get(o.name, 'n (absent: a dependency is missing)')}"
            for o in options if have.get(o.name, "n") != o.value]


def config_key(options: tuple[Option, ...] = MINIMAL) -> str:
    """A short digest of the base and the fragment: the cache folder's name changes with the config."""
    return hashlib.sha256(f"{BASE}\n{fragment(options)}".encode()).hexdigest()[:12]


def main(argv: list[str]) -> int:
    """The tool's commands: `base` (the make target), `fragment`, `key`, `check CONFIG` (exit 1 naming what is unmet)."""
    if argv == ["fragment"]:
        sys.stdout.write(fragment())
        return 0
    if argv == ["base"]:
        print(BASE)
        return 0
    if argv == ["key"]:
        print(config_key())
        return 0
    if len(argv) == 2 and argv[0] == "check":
        with open(argv[1]) as fh:
            missing = unmet(fh.read())
        for line in missing:
            print(f"build-kernel: Kconfig did not grant {line}", file=sys.stderr)
        return 1 if missing else 0
    print("usage: kconfig.py base | fragment | key | check CONFIG", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
