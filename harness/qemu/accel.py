"""Choose between hardware virtualisation and TCG for the guest.

The guest itself runs KVM, so the host must give it virtualisation extensions. With
`-accel kvm` that needs the host's kvm_intel/kvm_amd to allow nesting (`nested=Y`/`1`);
any other /dev/kvm (here the paravirtual `kvm_pvm`, which QEMU cannot use at all) means
TCG with `-cpu max`, which emulates SVM so the guest's kvm_amd loads with nested paging.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

Accel = Literal["kvm", "tcg"]

NESTED_PARAMS = (
    "/sys/module/kvm_intel/parameters/nested",
    "/sys/module/kvm_amd/parameters/nested",
)


def choose_accel(nested: Mapping[str, str], dev_kvm_usable: bool) -> Accel:
    """`kvm` when /dev/kvm is usable and a vendor module allows nesting, else `tcg`.

    `nested` maps a NESTED_PARAMS path to that file's contents (absent files left out).
    """
    allows = any(value.strip() in ("Y", "1") for value in nested.values())
    return "kvm" if dev_kvm_usable and allows else "tcg"


def parse_accel(value: str) -> Accel:
    """An accel override as given by a user; anything but kvm/tcg is a usage error."""
    if value == "kvm":
        return "kvm"
    if value == "tcg":
        return "tcg"
    raise ValueError(f"accel must be 'kvm' or 'tcg', not {value!r}")


def host_accel() -> Accel:
    """The accel for this host, read from sysfs and /dev/kvm."""
    nested = {p: Path(p).read_text() for p in NESTED_PARAMS if Path(p).exists()}
    return choose_accel(nested, os.access("/dev/kvm", os.R_OK | os.W_OK))
